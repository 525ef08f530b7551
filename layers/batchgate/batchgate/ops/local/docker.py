"""A Docker engine for the local executor: when the engine answers and has a task's image, the task's
container runs in Docker instead of as a process in samples/.

Only the `docker` command line is used (no SDK to install): `version` to see that an engine answers,
`image inspect` to see that an image is there (never pulled: the local stack needs no registry),
`run` for the container, `stop` to end it as StopTask would and `kill` to end it at once. A task's
container runs its task definition's command; a pool task's runs batchgate's worker in the batch's image
(the pool's image: the batch's image with the worker added, docs/warm-lane.md).
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PROBE_SECONDS = 10.0
# A pool task's container: the worker as entry point and command, as the pool's task definition sets
# them, so that the image's own entry point and command never reach it.
WORKER_ENTRY_POINT = ("python",)
WORKER_COMMAND = ("-m", "batchgate.worker")
# What the `docker` client needs to find its engine (never passed into the container).
DOCKER_CLIENT_VARIABLES = (
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
)
# The engine answers within `docker stop`'s grace period plus this, or the client is killed.
STOP_SLACK_SECONDS = 10.0


def container_name(task_id: str) -> str:
    """The container of one task (or pool task), by which `docker stop` and `docker kill` find it."""
    return f"batchgate-{task_id}"


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
        init: bool = False,
        read_only_files: Sequence[str] = (),
    ) -> list[str]:
        """`docker run` for one task's container. ECS semantics: the task definition's entry point, when
        it has one, replaces the image's; the command (the override's, else the definition's) replaces
        the image's CMD. Variables are passed by name only, so their values stay out of the process
        list: the client process must have them in its environment. Host networking, so that the
        container reaches the local endpoint on 127.0.0.1 as the task role's stand-in. `init`: an init
        process as PID 1 (the task definition's initProcessEnabled). `read_only_files` are mounted at
        the same path, so that a path in the environment means the same file inside."""
        argv = [self.binary, "run", "--rm", "--name", name, "--network", "host"]
        if init:
            argv.append("--init")
        for path in read_only_files:
            argv += ["--volume", f"{path}:{path}:ro"]
        for key, value in sorted((labels or {}).items()):
            argv += ["--label", f"{key}={value}"]
        for variable in sorted(environment):
            argv += ["--env", variable]
        if entry_point:
            argv += ["--entrypoint", entry_point[0], image, *entry_point[1:], *command]
        else:
            argv += [image, *command]
        return argv

    def worker_argv(
        self,
        *,
        name: str,
        image: str,
        environment: Iterable[str],
        labels: dict[str, str] | None = None,
        read_only_files: Sequence[str] = (),
    ) -> list[str]:
        """`docker run` for one pool task's container: batchgate's worker in the pool's image, with an
        init process that reaps the jobs' orphans and forwards SIGTERM to the worker (which drains)."""
        return self.run_argv(
            name=name,
            image=image,
            entry_point=WORKER_ENTRY_POINT,
            command=WORKER_COMMAND,
            environment=environment,
            labels=labels,
            init=True,
            read_only_files=read_only_files,
        )

    def stop(self, name: str, grace_seconds: float) -> None:
        """SIGTERM to the container, SIGKILL after `grace_seconds` (as ECS's StopTask does)."""
        try:
            seconds = str(max(0, round(grace_seconds)))
            self._docker("stop", "--time", seconds, name, timeout=grace_seconds + STOP_SLACK_SECONDS)
        except (OSError, subprocess.TimeoutExpired):
            pass  # the caller kills the client process; `--rm` cleans up once the engine answers

    def kill(self, name: str) -> None:
        """SIGKILL to the container: no drain (a task killed out of memory or lost with its host)."""
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):  # the caller kills the client
            self._docker("kill", "--signal", "KILL", name)

    def _docker(self, *arguments: str, timeout: float = PROBE_SECONDS) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *arguments],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
