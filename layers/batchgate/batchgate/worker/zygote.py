"""The preload run mode's zygote: a parent process that imports a batch's modules once per pool task
and forks one child per job, which runs its module as `python -m module arguments...` would.

Why a separate process: the worker runs threads (slots, heartbeats), and forking a multi-threaded
process copies locks held by threads that do not exist in the child. The zygote stays
single-threaded: it imports the `preload` modules (`python -m batchgate.worker.zygote FD MODULE...`),
freezes its heap (`gc.disable()` before the imports, `gc.freeze()` before each fork, `gc.enable()` in
the child, as the gc documentation advises) so the children share its pages copy-on-write, then
serves the worker over a Unix socket pair (SOCK_SEQPACKET: one JSON message per datagram):

- zygote -> worker, once: `{"event": "ready"}`, or `{"event": "failed", "module", "error"}` and exit 1
  (a module that failed at import, or that started a thread: forking would copy the thread's locks
  but not the thread);
- worker -> zygote: `{"event": "spawn", "request", "module", "arguments", "environment",
  "memory_limit_bytes"}` with the job's output file descriptor attached (SCM_RIGHTS, `send_fds`);
- zygote -> worker: `{"event": "spawned", "request", "pid"}` (or `spawn-failed` with the error) once
  the child leads its own session and process group (pid == pgid, so `os.killpg(pid, ...)` from the
  worker reaches it and whatever it started), then `{"event": "exited", "pid", "returncode"}` when
  the zygote reaps it (waitpid on SIGCHLD; the worker cannot wait for a grandchild). `returncode`
  reads as `Popen.returncode`: -N when a signal N ended the child.
- The worker closing its end (or dying) stops the zygote: it SIGKILLs the process groups of
  children still running, reaps them and exits. The zygote ignores SIGINT and SIGTERM: its life is
  the worker's, and the worker lets running jobs finish on a stop.

A child: `os.setsid()`, default signal handlers, stdin from /dev/null, stdout and stderr on the
output descriptor the worker passed (raw bytes: the worker decides how to decode them), the job's
environment values added to the zygote's, `RLIMIT_AS` set to its memory limit (an allocation beyond
it raises MemoryError in the child, never in the zygote), then `sys.argv = ["-m", *arguments]` and
`runpy.run_module(module, run_name="__main__", alter_sys=True)`. It exits through the interpreter's
normal shutdown, as `python -m` does: 0 on return, the `SystemExit` code, 1 with the traceback on an
uncaught exception; non-daemon threads are joined and atexit handlers run. `random` reseeds itself
at fork (the standard library registers it); a `PYTHONUNBUFFERED` job value makes stdout unbuffered.

What a child cannot get fresh, because the zygote imported it before the job existed: a per-job
environment value the application reads at import time; connections or sockets opened at import
(every child would share them: the zygote warns on stderr when a preload module opens a socket);
interpreter settings read at start (PYTHONPATH, PYTHONHASHSEED, PYTHONWARNINGS, -X options): the
zygote's apply, and children share its hash seed. `RLIMIT_AS` counts the address space the child
inherits, the preloaded modules included, so a limit must leave room for them.

If the zygote dies, `spawn` raises ZygoteError and the worker SIGKILLs the process groups of the
children it still had running, whose `poll()` then reports `LOST_RETURNCODE` (-9).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import json
import os
import re
import resource
import runpy
import selectors
import signal
import socket
import subprocess
import sys
import threading
import traceback
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

ZYGOTE_MODULE = "batchgate.worker.zygote"
# The largest message either side reads. A spawn carries the job's arguments and environment (ECS
# caps a task's overrides at 8 KiB); the socket's send buffer (about 200 KiB) is the real limit.
MESSAGE_BYTES = 1 << 20
# How long spawn waits for the zygote's answer: a fork takes milliseconds, so only a hung zygote
# takes this long.
SPAWN_ANSWER_SECONDS = 10.0
CLOSE_SECONDS = 5.0
# What poll() reports for a child whose zygote died: the worker SIGKILLed its process group.
LOST_RETURNCODE = -signal.SIGKILL
# A child that fails before its module runs (its setup raised): as a shell's "command not found".
SETUP_FAILED = 127


class ZygoteError(RuntimeError):
    """The zygote did not start (a preload module failed), or cannot take a job (closed, died)."""


class ZygoteChild:
    """A job the zygote forked: its own session and process group (pid == pgid)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._returncode: int | None = None
        self._exited = threading.Event()

    def poll(self) -> int | None:
        """The exit code as Popen.returncode reads (-N: ended by signal N), None while running."""
        return self._returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code once the child has exited, None when `timeout` seconds pass first."""
        self._exited.wait(timeout)
        return self._returncode

    def _record_exit(self, returncode: int) -> None:
        if not self._exited.is_set():
            self._returncode = returncode
            self._exited.set()


class _PendingSpawn:
    """A spawn request waiting for the zygote's answer (the reader thread resolves it)."""

    def __init__(self) -> None:
        self._answered = threading.Event()
        self._child: ZygoteChild | None = None
        self._error = ""

    def resolve(self, child: ZygoteChild) -> None:
        self._child = child
        self._answered.set()

    def fail(self, error: str) -> None:
        self._error = error
        self._answered.set()

    def result(self, timeout: float) -> ZygoteChild:
        if not self._answered.wait(timeout):
            raise ZygoteError(f"the zygote did not answer a spawn within {timeout:g} s")
        if self._child is None:
            raise ZygoteError(self._error)
        return self._child


class Zygote:
    """The worker's handle on a zygote process: start it, spawn jobs from it, close it.

    Thread-safe: the worker's slots spawn and wait concurrently. A reader thread receives the
    zygote's answers and exit reports."""

    def __init__(self, process: subprocess.Popen[bytes], control: socket.socket) -> None:
        self._process = process
        self._control = control
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._pending: dict[int, _PendingSpawn] = {}
        self._children: dict[int, ZygoteChild] = {}
        self._last_request = 0
        # Why spawn no longer works (closed, or the zygote died); None while it does.
        self._ended: str | None = None
        self._reader = threading.Thread(target=self._read, name="zygote-reader", daemon=True)

    @classmethod
    def start(cls, preload: Sequence[str]) -> Zygote:
        """Spawn the zygote and wait until it has imported `preload`, in order (as long as the
        imports take: the application's boot).

        Raises ZygoteError naming the module that failed, with its error."""
        worker_end, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        command = [sys.executable, "-m", ZYGOTE_MODULE, str(zygote_end.fileno()), *preload]
        try:
            process = subprocess.Popen(command, pass_fds=(zygote_end.fileno(),), stdin=subprocess.DEVNULL)
        except OSError as error:
            worker_end.close()
            raise ZygoteError(f"the zygote did not start: {error}") from error
        finally:
            zygote_end.close()
        try:
            first = worker_end.recv(MESSAGE_BYTES)
        except OSError:
            first = b""
        message: dict[str, Any] = json.loads(first) if first else {}
        if message.get("event") != "ready":
            worker_end.close()
            code = process.wait()
            if message.get("event") == "failed":
                raise ZygoteError(f"preload module {message['module']!r} failed: {message['error']}")
            raise ZygoteError(f"the zygote exited before its preload was imported (exit code {code})")
        zygote = cls(process, worker_end)
        zygote._reader.start()
        return zygote

    @property
    def pid(self) -> int:
        """The zygote process's pid."""
        return self._process.pid

    def spawn(
        self,
        module: str,
        arguments: Sequence[str],
        environment: Mapping[str, str],
        output_fd: int,
        memory_limit_bytes: int | None,
    ) -> ZygoteChild:
        """Fork a child running `module` as __main__ with `arguments`, writing to `output_fd`.

        The zygote gets its own copy of `output_fd`: the caller closes its copy when it no longer
        needs it (with a pipe, the reader then sees end of file once the child and everything it
        started have exited)."""
        pending = _PendingSpawn()
        with self._lock:
            if self._ended is not None:
                raise ZygoteError(self._ended)
            self._last_request += 1
            request = self._last_request
            self._pending[request] = pending
        payload = {
            "event": "spawn",
            "request": request,
            "module": module,
            "arguments": list(arguments),
            "environment": dict(environment),
            "memory_limit_bytes": memory_limit_bytes,
        }
        try:
            with self._send_lock:
                socket.send_fds(self._control, [json.dumps(payload).encode()], [output_fd])
            return pending.result(SPAWN_ANSWER_SECONDS)
        except OSError as error:
            raise ZygoteError(f"the zygote cannot take the job: {error}") from error
        finally:
            with self._lock:
                self._pending.pop(request, None)

    def close(self) -> None:
        """Stop the zygote. Running children are the caller's to stop first: the zygote SIGKILLs
        the ones left."""
        with self._lock:
            if self._ended is None:
                self._ended = "the zygote is closed"
        with contextlib.suppress(OSError):  # already closed, or the zygote is gone
            self._control.shutdown(socket.SHUT_WR)
        try:
            self._process.wait(CLOSE_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._reader.is_alive():
            self._reader.join(CLOSE_SECONDS)
        self._control.close()

    def __enter__(self) -> Zygote:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _read(self) -> None:
        while True:
            try:
                data = self._control.recv(MESSAGE_BYTES)
            except OSError:
                data = b""
            if not data:
                break
            self._handle(json.loads(data))
        self._lose()

    def _handle(self, message: dict[str, Any]) -> None:
        with self._lock:
            event = message["event"]
            if event == "spawned":
                child = ZygoteChild(message["pid"])
                self._children[child.pid] = child
                pending = self._pending.get(message["request"])
                if pending is None:
                    # spawn gave up waiting: nobody owns this child.
                    _kill_group(child.pid)
                else:
                    pending.resolve(child)
            elif event == "spawn-failed":
                pending = self._pending.get(message["request"])
                if pending is not None:
                    pending.fail(f"the zygote could not fork the job: {message['error']}")
            elif event == "exited":
                exited = self._children.pop(message["pid"], None)
                if exited is not None:
                    exited._record_exit(message["returncode"])

    def _lose(self) -> None:
        """The zygote closed its end: it has exited (closed, or died)."""
        code = self._process.wait()
        with self._lock:
            if self._ended is None:
                self._ended = f"the zygote exited unexpectedly (exit code {code})"
            for pending in self._pending.values():
                pending.fail(self._ended)
            # Nobody reaps or reports these any more: stop them rather than report what is not known.
            for child in self._children.values():
                _kill_group(child.pid)
                child._record_exit(LOST_RETURNCODE)
            self._children.clear()


def _kill_group(pid: int) -> None:
    """SIGKILL a child's process group, and the child itself should it have left its group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


# What follows runs in the zygote process (and, up to the module's run, in its forked children).


@dataclass(frozen=True)
class _Job:
    """What a forked child runs, once it has left the zygote's loop."""

    module: str
    arguments: list[str]

    def run(self) -> None:
        # python -m sets sys.argv[0] to "-m" while it finds the module; runpy then sets its path.
        sys.argv = ["-m", *self.arguments]
        # The module itself is usually preloaded: runpy would warn, in every job's output, that it
        # is already in sys.modules. Running it again as __main__ is what python -m does anyway.
        warnings.filterwarnings(
            "ignore",
            message=re.escape(f"{self.module!r} found in sys.modules after import of package"),
            category=RuntimeWarning,
        )
        runpy.run_module(self.module, run_name="__main__", alter_sys=True)


def _open_sockets() -> set[str]:
    """The process's open sockets, by descriptor (Linux's /proc; empty where there is none)."""
    try:
        descriptors = os.listdir("/proc/self/fd")
    except OSError:
        return set()
    found: set[str] = set()
    for descriptor in descriptors:
        try:
            target = os.readlink(f"/proc/self/fd/{descriptor}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(f"{descriptor}:{target}")
    return found


def _preload(modules: Sequence[str]) -> dict[str, str] | None:
    """Import `modules` in order; the failure message for the worker, None when all imported."""
    for module in modules:
        sockets_before = _open_sockets()
        try:
            importlib.import_module(module)
        except BaseException as error:  # a SystemExit at import fails the preload too
            traceback.print_exc()
            return {"event": "failed", "module": module, "error": f"{type(error).__name__}: {error}"}
        if threading.active_count() > 1:
            reason = "it started a thread at import, and forking copies a thread's locks but not the thread"
            return {"event": "failed", "module": module, "error": reason}
        if opened := len(_open_sockets() - sockets_before):
            print(
                f"batchgate zygote: {module} opened {opened} socket(s) at import: every job forked"
                " from this zygote shares them; open connections in the job instead",
                file=sys.stderr,
                flush=True,
            )
    return None


def _wake(signum: int, frame: FrameType | None) -> None:
    """SIGCHLD's handler: the wakeup descriptor wakes the loop, which reaps. (SIG_IGN would make
    the kernel reap children itself, and their exit codes would be lost.)"""


class _ZygoteLoop:
    """The zygote's single-threaded loop: fork on request, reap on SIGCHLD, stop on end of file."""

    def __init__(self, control: socket.socket) -> None:
        self._control = control
        self._children: set[int] = set()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._control, selectors.EVENT_READ)
        self._selector.register(self._wake_read, selectors.EVENT_READ)

    def serve(self) -> _Job | None:
        """Serve until the worker closes its end (None); in a forked child, the job to run."""
        signal.set_wakeup_fd(self._wake_write)
        signal.signal(signal.SIGCHLD, _wake)
        while True:
            for key, _ in self._selector.select():
                if key.fileobj == self._wake_read:
                    self._drain_wakeups()
                    self._reap(block=False)
                    continue
                message, descriptors, _, _ = socket.recv_fds(self._control, MESSAGE_BYTES, 1)
                if not message:
                    for descriptor in descriptors:
                        os.close(descriptor)
                    self._stop_children()
                    return None
                job = self._spawn(json.loads(message), descriptors[0])
                if job is not None:
                    return job

    def _spawn(self, request: dict[str, Any], output_fd: int) -> _Job | None:
        # Nothing buffered may be written twice, by the zygote and by the child.
        sys.stdout.flush()
        sys.stderr.flush()
        gc.freeze()
        ready_read, ready_write = os.pipe()
        try:
            pid = os.fork()
        except OSError as error:
            for descriptor in (ready_read, ready_write, output_fd):
                os.close(descriptor)
            self._send({"event": "spawn-failed", "request": request["request"], "error": str(error)})
            return None
        if pid == 0:
            return self._become_child(request, output_fd, ready_read, ready_write)
        os.close(ready_write)
        # The child closes its end once it leads its process group: only then may the worker signal it.
        os.read(ready_read, 1)
        os.close(ready_read)
        os.close(output_fd)
        self._children.add(pid)
        self._send({"event": "spawned", "request": request["request"], "pid": pid})
        return None

    def _become_child(
        self, request: dict[str, Any], output_fd: int, ready_read: int, ready_write: int
    ) -> _Job:
        try:
            os.setsid()
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.close(ready_read)
            os.close(ready_write)
            self._selector.close()
            self._control.close()
            os.close(self._wake_read)
            os.close(self._wake_write)
            stdin = os.open(os.devnull, os.O_RDONLY)
            os.dup2(stdin, 0)
            os.close(stdin)
            os.dup2(output_fd, 1)
            os.dup2(output_fd, 2)
            if output_fd > 2:
                os.close(output_fd)
            os.environ.update(request["environment"])
            if os.environ.get("PYTHONUNBUFFERED"):
                sys.stdout = io.TextIOWrapper(
                    io.FileIO(1, "w", closefd=False),
                    encoding=sys.stdout.encoding,
                    errors=sys.stdout.errors,
                    write_through=True,
                )
            limit = request["memory_limit_bytes"]
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            gc.enable()
            return _Job(module=request["module"], arguments=list(request["arguments"]))
        except BaseException:
            # Never back into the zygote's loop: this process is a child.
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(SETUP_FAILED)

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_read, 512):
                pass
        except BlockingIOError:
            pass

    def _reap(self, *, block: bool) -> None:
        while self._children:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                self._children.clear()
                return
            if pid == 0:
                return
            self._children.discard(pid)
            self._send({"event": "exited", "pid": pid, "returncode": os.waitstatus_to_exitcode(status)})

    def _stop_children(self) -> None:
        for pid in self._children:
            _kill_group(pid)
        self._reap(block=True)

    def _send(self, message: dict[str, Any]) -> None:
        # When the worker is gone, the loop sees end of file next.
        with contextlib.suppress(OSError):
            self._control.send(json.dumps(message).encode())


def main(arguments: Sequence[str]) -> int:
    """`python -m batchgate.worker.zygote CONTROL_FD MODULE...` (started by Zygote.start)."""
    control = socket.socket(fileno=int(arguments[0]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    gc.disable()
    failure = _preload(arguments[1:])
    if failure is not None:
        control.send(json.dumps(failure).encode())
        return 1
    gc.freeze()
    control.send(json.dumps({"event": "ready"}).encode())
    job = _ZygoteLoop(control).serve()
    if job is not None:
        # A forked child: run the module; its SystemExit or exception ends the interpreter as
        # python -m's would.
        job.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
