"""What a fresh interpreter loads when it runs a statement, asked of one interpreter that forks a child per
statement instead of starting a new interpreter each time.

The interpreter imports boto3 once (besides json, os and sys, which the probes' statements load anyway),
then forks a child per statement; the child takes the statement's working directory, environment and
import path, and runs it. Every statement these probes run imports boto3 itself (a handler through its
adapters, the cold-start benchmark's baselines and floors first thing), so a child ends with the
`sys.modules` a fresh interpreter would have, as long as boto3's import saw the same environment:
the interpreter records the variables that import reads (HOME, botocore's switches) and a statement
whose environment differs in one of them is refused. A child pays for the statement's own imports
only, not for an interpreter's start and boto3's import.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

# Runs as `python -c`, so that the import path starts with the working directory, as it does for
# `python -c STATEMENT`. It imports nothing but boto3 and what the statements load anyway: whatever it
# imported would be in every child's sys.modules. Its first line out: the variables boto3's import read.
FORKING_INTERPRETER = """
import json, os, sys

read = set()
environ_class = type(os.environ)
read_variable = environ_class.__getitem__

def recorded(environ, name):
    read.add(name)
    return read_variable(environ, name)

environ_class.__getitem__ = recorded
import boto3
environ_class.__getitem__ = read_variable
print(json.dumps(sorted(read)), flush=True)

for line in sys.stdin:
    request = json.loads(line)
    child = os.fork()
    if child == 0:
        code = 0
        try:
            for stream, path in ((1, request["stdout"]), (2, request["stderr"])):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), stream)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["environment"])
            # What an interpreter's start does with the two start-up variables a statement may set.
            paths = request["environment"].get("PYTHONPATH", "").split(os.pathsep)
            sys.path[1:1] = [path for path in paths if path]
            sys.dont_write_bytecode = bool(request["environment"].get("PYTHONDONTWRITEBYTECODE"))
            exec(compile(request["statement"], "<string>", "exec"), {"__name__": "__main__"})
        except SystemExit as stopped:
            code = 0 if stopped.code is None else stopped.code if isinstance(stopped.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(child, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""
# Interpreter start-up variables a child applies itself; the interpreter's start reads any other.
APPLIED_BY_THE_CHILD = frozenset({"PYTHONPATH", "PYTHONDONTWRITEBYTECODE"})
# Not start-up variables: read by a module when it is imported (zoneinfo's search path), in the child's
# environment (were boto3's import to read one, a statement that changes it would be refused, as above).
READ_AT_IMPORT = frozenset({"PYTHONTZPATH"})


class ProbeFailed(Exception):
    """A statement exited with a non-zero code; the message holds its standard error."""


class ImportProbe:
    """One interpreter (`python`: the command that starts it, e.g. `[sys.executable]`) that imports boto3
    in the first statement's environment, then runs each statement in a forked child; a context manager
    that stops it."""

    def __init__(self, python: Sequence[str]) -> None:
        self._python = list(python)
        self._outputs = tempfile.TemporaryDirectory(prefix="import-probe-")
        self._process: subprocess.Popen[str] | None = None
        # The interpreter's environment, and the names of those variables boto3's import read.
        self._started_with: dict[str, str] = {}
        self._read_by_boto3: list[str] = []
        self._runs = 0

    def run(self, statement: str, cwd: Path, environment: Mapping[str, str]) -> str:
        """What `statement` prints in a child in `cwd` with exactly `environment`, as `python -c
        statement` would there; ProbeFailed when it fails."""
        start_up = sorted(
            name
            for name in environment
            if name.startswith("PYTHON") and name not in APPLIED_BY_THE_CHILD | READ_AT_IMPORT
        )
        if start_up:
            raise ValueError(f"read by an interpreter's start, not by a forked child: {', '.join(start_up)}")
        process = self._process or self._start(
            {name: value for name, value in environment.items() if name not in APPLIED_BY_THE_CHILD}
        )
        changed = [
            name for name in self._read_by_boto3 if environment.get(name) != self._started_with.get(name)
        ]
        if changed:
            raise ValueError(f"boto3 was imported with other values of {', '.join(changed)}")
        assert process.stdin is not None and process.stdout is not None
        self._runs += 1
        stdout = Path(self._outputs.name) / f"{self._runs}.out"
        stderr = stdout.with_suffix(".err")
        request = {
            "statement": statement,
            "cwd": str(cwd),
            "environment": dict(environment),
            "stdout": str(stdout),
            "stderr": str(stderr),
        }
        process.stdin.write(json.dumps(request) + "\n")
        process.stdin.flush()
        answer = process.stdout.readline()
        if not answer:
            raise ProbeFailed(f"the forking interpreter stopped (exit code {process.wait()})")
        if int(answer) != 0:
            raise ProbeFailed(f"exit code {int(answer)}: {stderr.read_text()}")
        return stdout.read_text()

    def _start(self, environment: dict[str, str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [*self._python, "-c", FORKING_INTERPRETER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
            text=True,
        )
        assert process.stdout is not None
        self._process, self._started_with = process, environment
        read = process.stdout.readline()
        if not read:
            raise ProbeFailed(f"the forking interpreter did not start (exit code {process.wait()})")
        self._read_by_boto3 = json.loads(read)
        return process

    def close(self) -> None:
        if self._process is not None:
            if self._process.stdin is not None:
                self._process.stdin.close()
            self._process.wait(timeout=30)
            if self._process.stdout is not None:
                self._process.stdout.close()
        self._outputs.cleanup()

    def __enter__(self) -> ImportProbe:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
