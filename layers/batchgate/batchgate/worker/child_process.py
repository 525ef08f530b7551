"""A job's child process in a slot: started (run mode `command` or `preload`) and stopped.

Every child leads its own session and process group (pid == pgid): the task's SIGTERM reaches the
worker only, which decides what each job does with it, and a stop reaches everything the job started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from batchgate.domain.catalog import BatchSpec

log = logging.getLogger("batchgate.worker")

# A container runtime reports a process killed by signal N as exit code 128 + N (137 for SIGKILL).
SIGNAL_EXIT_BASE = 128


class ChildProcess(Protocol):
    """What the worker needs of a child: subprocess.Popen and the zygote's ZygoteChild both are."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...


class Zygote(Protocol):
    """The preload parent (batchgate.worker.zygote.Zygote)."""

    def spawn(
        self,
        module: str,
        arguments: Sequence[str],
        environment: Mapping[str, str],
        output_fd: int,
        memory_limit_bytes: int | None,
    ) -> ChildProcess: ...

    def close(self) -> None: ...


class ChildStartError(RuntimeError):
    """The job's child could not be started (no such executable, the zygote refused)."""


def exit_code_of(returncode: int) -> int:
    """Popen's returncode (-N: killed by signal N) as a container runtime reports it."""
    return SIGNAL_EXIT_BASE - returncode if returncode < 0 else returncode


@dataclass(frozen=True)
class ChildLauncher:
    """Starts a job's child with its output on `output_fd` (stdout and stderr merged).

    Memory: each child may use the pool task's memory divided by its slots (`memory_limit_bytes`), as
    RLIMIT_DATA (private writable memory: heap and anonymous mappings, not address space merely
    reserved, which runtimes such as the JVM or Go reserve in bulk). A child over it fails to allocate
    instead of the kernel killing the whole task, and its neighbours, when the task runs out."""

    memory_limit_bytes: int | None
    zygote: Zygote | None = None

    def start(
        self, spec: BatchSpec, arguments: Sequence[str], environment: Mapping[str, str], output_fd: int
    ) -> ChildProcess:
        if spec.run_mode == "preload":
            return self._fork(spec, arguments, environment, output_fd)
        try:
            child = subprocess.Popen(  # no shell: the catalog command and the job's arguments, as on ECS
                [*spec.command, *arguments],
                stdin=subprocess.DEVNULL,
                stdout=output_fd,
                stderr=output_fd,
                env=dict(environment),
                start_new_session=True,
                close_fds=True,
            )
        except OSError as error:
            raise ChildStartError(f"cannot start {spec.command[0]}: {error.strerror or error}") from error
        if self.memory_limit_bytes is not None:
            limit = (self.memory_limit_bytes, self.memory_limit_bytes)
            # Set from outside (preexec_fn is unsafe in a threaded parent); the child may have exited.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                resource.prlimit(child.pid, resource.RLIMIT_DATA, limit)
        return child

    def _fork(
        self, spec: BatchSpec, arguments: Sequence[str], environment: Mapping[str, str], output_fd: int
    ) -> ChildProcess:
        module = spec.python_module
        if self.zygote is None or module is None:
            raise ChildStartError(f"batch {spec.name} runs in preload mode but the worker has no zygote")
        try:
            return self.zygote.spawn(module, arguments, environment, output_fd, self.memory_limit_bytes)
        except Exception as error:  # the zygote's own error or an OS error: the job must still end
            raise ChildStartError(f"the preload parent could not fork {module}: {error}") from error


@dataclass(frozen=True)
class ChildStopper:
    """Stops a child's process group: SIGTERM, then SIGKILL after `grace_seconds`."""

    grace_seconds: float
    tick_seconds: float = 0.05
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def stop(self, child: ChildProcess) -> int:
        """The child's returncode once it has exited."""
        if (code := child.poll()) is not None:
            return code
        self._signal(child.pid, signal.SIGTERM)
        deadline = self.monotonic() + self.grace_seconds
        while self.monotonic() < deadline:
            if (code := child.poll()) is not None:
                # Whatever it left behind in its group goes too.
                self._signal(child.pid, signal.SIGKILL)
                return code
            self.sleep(self.tick_seconds)
        log.warning("child ignored SIGTERM: killed", extra={"pid": child.pid, "grace": self.grace_seconds})
        self._signal(child.pid, signal.SIGKILL)
        while (code := child.poll()) is None:
            self.sleep(self.tick_seconds)
        return code

    def clean_up(self, child: ChildProcess) -> None:
        """After a child's own exit, what it left running in its group goes, as when an ECS task's
        essential container exits."""
        self._signal(child.pid, signal.SIGKILL)

    @staticmethod
    def _signal(group: int, number: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):  # the group has no process left
            os.killpg(group, number)
