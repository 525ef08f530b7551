"""A Docker engine for the local executor: when the engine answers and has a task's image, the task's
container runs in Docker instead of as a process in samples/.

Only the `docker` command line is used (no SDK to install): `version` to see that an engine answers,
`image inspect` to see that an image is there (never pulled: the local stack needs no registry),
`run` for the container and `stop` to end it as StopTask would.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PROBE_SECONDS = 10.0
# The engine answers within `docker stop`'s grace period plus this, or the client is killed.
STOP_SLACK_SECONDS = 10.0


class DockerUnavailable(RuntimeError):
    """No Docker engine answers the `docker` command."""


@dataclass
class DockerEngine:
    """The engine behind one `docker` command line (`binary`)."""

    binary: str = "docker"
    _images: dict[str, bool] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def detect(cls, binary: str = "docker") -> DockerEngine | None:
        """The engine, or None when there is no `docker` command or no engine answers it."""
        engine = cls(binary)
        try:
            engine.check()
        except DockerUnavailable:
            return None
        return engine

    def check(self) -> str:
        """The engine's version; DockerUnavailable with the client's words when it does not answer."""
        try:
            done = self._docker("version", "--format", "{{.Server.Version}}")
        except (OSError, subprocess.TimeoutExpired) as error:
            raise DockerUnavailable(f"{self.binary}: {error}") from error
        if done.returncode != 0 or not done.stdout.strip():
            words = (done.stderr or done.stdout).strip().splitlines()
            raise DockerUnavailable(f"{self.binary} version: {words[-1] if words else 'no engine answers'}")
        return done.stdout.strip()

    def has_image(self, image: str) -> bool:
        """Whether the engine has `image` already (asked once per image)."""
        if not image:
            return False
        with self._lock:
            if image not in self._images:
                try:
                    found = self._docker("image", "inspect", "--format", "{{.Id}}", image).returncode == 0
                except (OSError, subprocess.TimeoutExpired):
                    found = False
                self._images[image] = found
            return self._images[image]

    def run_argv(
        self,
        *,
        name: str,
        image: str,
        entry_point: Sequence[str],
        command: Sequence[str],
        environment: Iterable[str],
        labels: dict[str, str] | None = None,
    ) -> list[str]:
        """`docker run` for one task's container. ECS semantics: the task definition's entry point, when
        it has one, replaces the image's; the command (the override's, else the definition's) replaces
        the image's CMD. Variables are passed by name only, so their values stay out of the process
        list: the client process must have them in its environment. Host networking, so that the
        container reaches the local endpoint on 127.0.0.1 as the task role's stand-in."""
        argv = [self.binary, "run", "--rm", "--name", name, "--network", "host"]
        for key, value in sorted((labels or {}).items()):
            argv += ["--label", f"{key}={value}"]
        for variable in sorted(environment):
            argv += ["--env", variable]
        if entry_point:
            argv += ["--entrypoint", entry_point[0], image, *entry_point[1:], *command]
        else:
            argv += [image, *command]
        return argv

    def stop(self, name: str, grace_seconds: float) -> None:
        """SIGTERM to the container, SIGKILL after `grace_seconds` (as ECS's StopTask does)."""
        try:
            seconds = str(max(0, round(grace_seconds)))
            self._docker("stop", "--time", seconds, name, timeout=grace_seconds + STOP_SLACK_SECONDS)
        except (OSError, subprocess.TimeoutExpired):
            pass  # the caller kills the client process; `--rm` cleans up once the engine answers

    def _docker(self, *arguments: str, timeout: float = PROBE_SECONDS) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *arguments],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
