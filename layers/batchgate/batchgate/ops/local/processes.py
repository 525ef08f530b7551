"""Child processes that never outlive the stack: started with a parent-death signal, stopped politely
then firmly."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    return getattr(ctypes.CDLL(ctypes.util.find_library("c")), "prctl", None)


# Looked up once, in the parent: between fork and exec the child must only make the call.
_PRCTL = _load_prctl()


def die_with_parent() -> None:
    """preexec_fn: the kernel sends SIGTERM to the child when the thread that started it ends, so a
    crashed or killed stack leaves no moto server, function host or task process behind (Linux only;
    elsewhere the normal shutdown path is the only cleanup)."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_child(
    argv: list[str],
    environment: Mapping[str, str],
    cwd: Path | None = None,
    stdin: int = subprocess.DEVNULL,
) -> subprocess.Popen[str]:
    """A child of the stack whose output (stdout and stderr as one text stream) the stack reads: in its
    own session, so that a Ctrl-C reaches only the stack, which stops its children in order, and ended
    with the stack (`die_with_parent`)."""
    return subprocess.Popen(
        argv,
        env=dict(environment),
        cwd=cwd,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - it only sets the parent-death signal
    )


def stop_process(process: subprocess.Popen[bytes] | subprocess.Popen[str], grace_seconds: float) -> int:
    """SIGTERM to the process group (a process started with start_new_session) or the process, then
    SIGKILL after `grace_seconds`. Returns the exit status as a shell reports it (128 + signal)."""
    if process.poll() is None:
        terminate(process)
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            _signal(process, signal.SIGKILL)
            process.wait(timeout=grace_seconds)
    return exit_status(process.returncode)


def kill_process(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> int:
    """SIGKILL to the process group (or the process) and wait: for a process with nothing to finish.
    Returns the exit status as a shell reports it."""
    if process.poll() is None:
        _signal(process, signal.SIGKILL)
    return exit_status(process.wait())


def end_group(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGKILL what is left of the process group that `process` led (started with start_new_session),
    once it has ended: a container ends with its main process, a shell's background job with it."""
    if process.poll() is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # nothing left in the group
            os.killpg(process.pid, signal.SIGKILL)


def terminate(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGTERM, without waiting: lets several processes wind down at once."""
    if process.poll() is None:
        _signal(process, signal.SIGTERM)


def exit_status(returncode: int) -> int:
    """Popen reports death by signal N as -N; containers report 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def _signal(process: subprocess.Popen[bytes] | subprocess.Popen[str], signum: int) -> None:
    try:
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
    except ProcessLookupError:
        pass


def inherited(names: tuple[str, ...]) -> dict[str, str]:
    """The host's values of `names` that are set: what a local process or a `docker` client inherits."""
    return {name: os.environ[name] for name in names if name in os.environ}
