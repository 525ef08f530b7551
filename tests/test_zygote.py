"""The preload zygote with real processes: a parent that imports once and forks a child per job."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from batchgate.worker.zygote import LOST_RETURNCODE, Zygote, ZygoteChild, ZygoteError

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
WAIT_SECONDS = 10.0
MIB = 1024 * 1024

APPLICATION = {
    # Appends the importing process's pid: one line per import.
    "app/__init__.py": """
        import os
        with open({imports!r}, "a") as log:
            log.write(f"{{os.getpid()}}\\n")
    """,
    "app/show.py": """
        import json, os, sys
        if __name__ == "__main__":
            print(json.dumps({{
                "name": __name__, "argv": sys.argv, "pid": os.getpid(), "pgid": os.getpgid(0),
                "sid": os.getsid(0), "base": os.environ.get("ZYGOTE_BASE"),
                "job": os.environ.get("JOB_VALUE"),
            }}))
    """,
    "app/exit3.py": "import sys\nsys.exit(3)\n",
    "app/boom.py": "raise ValueError('boom')\n",
    "app/raw.py": "import sys\nsys.stdout.buffer.write(b'caf\\xe9 \\xff\\n')\n",
    "app/hog.py": "hoard = bytearray(4 * 1024 ** 3)\n",
    "app/lucky.py": "import random\nprint(random.random())\n",
    "app/abrupt.py": "import os\nprint('written before _exit')\nos._exit(0)\n",
    "app/sleeper.py": "import time\nprint('ready', flush=True)\ntime.sleep(60)\n",
    "app/stubborn.py": """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(60)
    """,
    "threaded.py": """
        import threading, time
        threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
    """,
    "connected.py": "import socket\nheld = socket.socket()\n",
}


@pytest.fixture(scope="module")
def application(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An application in the working directory, where `python -m` finds it."""
    root = tmp_path_factory.mktemp("application")
    for name, source in APPLICATION.items():
        path = root / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(textwrap.dedent(source.format(imports=str(root / "imports.log"))))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("ZYGOTE_BASE", "from the zygote")
        # The zygote's interpreter would read it at start, making every child's stdout unbuffered.
        patch.delenv("PYTHONUNBUFFERED", raising=False)
        yield root


@pytest.fixture(scope="module")
def zygote(application: Path) -> Iterator[Zygote]:
    """One zygote for the module's tests (a start costs an interpreter's start)."""
    with Zygote.start(["app", "app.show"]) as started:
        yield started


def run(
    zygote: Zygote,
    module: str,
    output: Path,
    arguments: Sequence[str] = (),
    environment: Mapping[str, str] | None = None,
    memory_limit_bytes: int | None = None,
) -> tuple[int | None, bytes]:
    """Spawn a job writing to `output`, wait for it; its exit code and output."""
    with output.open("wb") as sink:
        child = zygote.spawn(module, arguments, environment or {}, sink.fileno(), memory_limit_bytes)
    return child.wait(WAIT_SECONDS), output.read_bytes()


def started(zygote: Zygote, module: str) -> tuple[ZygoteChild, int]:
    """Spawn a long job on a pipe and wait until it says it is ready; the child and the pipe's end."""
    reading, writing = os.pipe()
    try:
        child = zygote.spawn(module, [], {}, writing, None)
    finally:
        os.close(writing)
    said = b""
    while not said.endswith(b"\n"):
        said += os.read(reading, 64)
    assert said == b"ready\n"
    return child, reading


def gone_soon(pid: int) -> bool:
    """Whether the process is gone within WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return gone(pid)


def gone(pid: int) -> bool:
    """No such process, or only its zombie (an orphan whose new parent reaps it later)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


def test_preloaded_modules_are_imported_once_in_the_zygote_not_in_each_child(
    zygote: Zygote, application: Path, tmp_path: Path
) -> None:
    children = set()
    for name in ("first", "second"):
        code, output = run(zygote, "app.show", tmp_path / f"{name}.out")
        assert code == 0
        children.add(json.loads(output)["pid"])
    importers = [int(pid) for pid in (application / "imports.log").read_text().split()]
    assert importers.count(zygote.pid) == 1
    assert not children & set(importers)


def test_the_child_runs_the_module_as_main_with_python_m_argv_in_its_own_session(
    zygote: Zygote, application: Path, tmp_path: Path
) -> None:
    code, output = run(zygote, "app.show", tmp_path / "show.out", arguments=["a", "b c"])
    shown = json.loads(output)
    assert code == 0
    assert shown["name"] == "__main__"
    assert shown["argv"] == [str(application / "app" / "show.py"), "a", "b c"]
    assert shown["pid"] == shown["pgid"] == shown["sid"] != zygote.pid
    # The module is preloaded too: runpy's "found in sys.modules" warning stays out of the output.
    assert b"Warning" not in output


def test_the_job_environment_is_added_to_the_zygotes(zygote: Zygote, tmp_path: Path) -> None:
    _, output = run(zygote, "app.show", tmp_path / "show.out", environment={"JOB_VALUE": "job 7"})
    shown = json.loads(output)
    assert (shown["base"], shown["job"]) == ("from the zygote", "job 7")
    # The next child does not inherit the previous job's values.
    _, output = run(zygote, "app.show", tmp_path / "next.out")
    assert json.loads(output)["job"] is None


@pytest.mark.parametrize(("module", "expected"), [("app.show", 0), ("app.exit3", 3), ("app.boom", 1)])
def test_exit_codes_are_python_m_s(zygote: Zygote, tmp_path: Path, module: str, expected: int) -> None:
    code, _ = run(zygote, module, tmp_path / "job.out")
    assert code == expected


def test_an_uncaught_exception_writes_its_traceback_to_the_output(zygote: Zygote, tmp_path: Path) -> None:
    _, output = run(zygote, "app.boom", tmp_path / "boom.out")
    assert b"Traceback (most recent call last)" in output
    assert output.rstrip().endswith(b"ValueError: boom")


def test_output_bytes_arrive_intact_even_when_not_utf8(zygote: Zygote, tmp_path: Path) -> None:
    _, output = run(zygote, "app.raw", tmp_path / "raw.out")
    assert output == b"caf\xe9 \xff\n"


def test_a_pythonunbuffered_job_writes_through(zygote: Zygote, tmp_path: Path) -> None:
    _, buffered = run(zygote, "app.abrupt", tmp_path / "buffered.out")
    _, unbuffered = run(
        zygote, "app.abrupt", tmp_path / "unbuffered.out", environment={"PYTHONUNBUFFERED": "1"}
    )
    assert (buffered, unbuffered) == (b"", b"written before _exit\n")


def test_each_child_draws_its_own_random_numbers(zygote: Zygote, tmp_path: Path) -> None:
    draws = {run(zygote, "app.lucky", tmp_path / f"lucky{n}.out")[1] for n in range(2)}
    assert len(draws) == 2


def test_a_child_over_its_memory_limit_fails_alone(zygote: Zygote, tmp_path: Path) -> None:
    code, output = run(zygote, "app.hog", tmp_path / "hog.out", memory_limit_bytes=512 * MIB)
    assert code == 1
    assert b"MemoryError" in output
    # The zygote, and the next child, are unharmed.
    assert run(zygote, "app.show", tmp_path / "after.out")[0] == 0


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
def test_a_signal_to_the_childs_process_group_ends_it(zygote: Zygote, stop: signal.Signals) -> None:
    child, output = started(zygote, "app.sleeper")
    os.killpg(child.pid, stop)
    assert child.wait(WAIT_SECONDS) == -stop
    assert child.poll() == -stop
    os.close(output)


def test_a_child_that_ignores_sigterm_runs_until_sigkill(zygote: Zygote) -> None:
    child, output = started(zygote, "app.stubborn")
    os.killpg(child.pid, signal.SIGTERM)
    assert child.wait(0.3) is None
    assert child.poll() is None
    os.killpg(child.pid, signal.SIGKILL)
    assert child.wait(WAIT_SECONDS) == -signal.SIGKILL
    os.close(output)


def test_children_are_reaped_by_the_zygote(zygote: Zygote, tmp_path: Path) -> None:
    pids = []
    for n in range(3):
        with (tmp_path / f"job{n}.out").open("wb") as sink:
            child = zygote.spawn("app.exit3", [], {}, sink.fileno(), None)
        assert child.wait(WAIT_SECONDS) == 3
        pids.append(child.pid)
    # Reported exited only once reaped: no zombie is left behind.
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


def test_an_unknown_preload_module_fails_the_start_naming_it(application: Path) -> None:
    with pytest.raises(ZygoteError, match=r"preload module 'app.missing' failed: ModuleNotFoundError"):
        Zygote.start(["app", "app.missing"])


def test_a_preload_module_that_starts_a_thread_fails_the_start(application: Path) -> None:
    with pytest.raises(ZygoteError, match=r"'threaded' failed: it started a thread at import"):
        Zygote.start(["threaded"])


def test_a_preload_module_opening_a_socket_is_reported(
    application: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with Zygote.start(["connected"]):
        pass
    assert "connected opened 1 socket(s) at import" in capfd.readouterr().err


def test_spawn_after_close_raises(application: Path) -> None:
    zygote = Zygote.start(["app"])
    zygote.close()
    with pytest.raises(ZygoteError, match="closed"):
        zygote.spawn("app.show", [], {}, 1, None)
    assert gone(zygote.pid)


def test_close_stops_children_left_running(application: Path) -> None:
    zygote = Zygote.start(["app"])
    child, output = started(zygote, "app.sleeper")
    zygote.close()
    assert child.wait(WAIT_SECONDS) == -signal.SIGKILL
    assert gone(child.pid)
    os.close(output)


def test_a_dead_zygote_fails_spawn_and_its_running_children(application: Path) -> None:
    with Zygote.start(["app"]) as zygote:
        child, output = started(zygote, "app.sleeper")
        os.kill(zygote.pid, signal.SIGKILL)
        assert child.wait(WAIT_SECONDS) == LOST_RETURNCODE
        with pytest.raises(ZygoteError, match=r"exited unexpectedly \(exit code -9\)"):
            zygote.spawn("app.show", [], {}, 1, None)
        # Nothing is left running that the worker was told had ended.
        assert gone_soon(child.pid)
        os.close(output)


def test_a_sample_application_boots_once_per_zygote_not_once_per_job(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    boot_seconds = 0.5
    monkeypatch.chdir(SAMPLES)
    monkeypatch.setenv("BATCHGATE_SAMPLE_BOOT_SECONDS", str(boot_seconds))
    began = time.monotonic()
    with Zygote.start(["reports.export"]) as zygote:
        booted = time.monotonic()
        code, _ = run(zygote, "reports.export", tmp_path / "noop.out", arguments=["noop"])
        ran = time.monotonic()
    assert booted - began >= boot_seconds
    assert code == 0
    assert ran - booted < boot_seconds


def test_the_childs_process_group_exists_as_soon_as_spawn_returns(zygote: Zygote, tmp_path: Path) -> None:
    # A race probe: a zygote answering right after the fork loses it now and then within 30 spawns.
    for n in range(30):
        with (tmp_path / f"job{n}.out").open("wb") as sink:
            child = zygote.spawn("app.sleeper", [], {}, sink.fileno(), None)
        os.killpg(child.pid, signal.SIGKILL)  # ProcessLookupError if the child did not lead its group yet
        assert child.wait(WAIT_SECONDS) == -signal.SIGKILL


def test_slots_spawn_and_wait_concurrently(zygote: Zygote, tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=4) as slots:
        codes = list(slots.map(lambda n: run(zygote, "app.exit3", tmp_path / f"slot{n}.out")[0], range(8)))
    assert codes == [3] * 8
