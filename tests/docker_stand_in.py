"""A stand-in `docker` command line for tests on machines without a Docker engine: it answers `version`
and `image inspect` (for the images it is given), runs a container's command as a host process with only
the variables `--env` names (`--init` and `--volume` change nothing for a host process), and stops it on
`docker stop` (SIGTERM, SIGKILL after `--time`) or `docker kill` (SIGKILL). A container is a process
group of its own, which ends with its main process, as a container's processes do (its PID namespace
goes with its PID 1); `run` forwards SIGTERM and SIGINT to it and exits with its status, as the `docker
run` client does. Every call is logged, so a test can read what the local executor asked the engine
to do."""

from __future__ import annotations

import json
import sys
from pathlib import Path

SCRIPT = """#!{python}
import json, os, signal, subprocess, sys, time
from pathlib import Path

here = Path(__file__).resolve().parent
args = sys.argv[1:]


def end_container(pid):
    # What is left of the container's processes goes with its main process.
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


with (here / "calls.jsonl").open("a") as calls:
    calls.write(json.dumps(args) + "\\n")
if args[:1] == ["version"]:
    print("0.0-stand-in")
    sys.exit(0)
if args[:2] == ["image", "inspect"]:
    known = args[-1] in (here / "images").read_text().split()
    print("sha256:0" if known else "Error: No such image: " + args[-1])
    sys.exit(0 if known else 1)
if args[:1] == ["run"]:
    rest, name, env, entry = args[1:], "", {{"PATH": os.environ["PATH"]}}, []
    while rest[0].startswith("--"):
        flag = rest.pop(0)
        if flag in ("--rm", "--init"):
            continue
        value = rest.pop(0)
        if flag == "--name":
            name = value
        elif flag == "--env":
            env[value] = os.environ[value]
        elif flag == "--entrypoint":
            entry = [value]
    started = []

    def forward(number, frame):
        # As `docker run` does (--sig-proxy): a signal to the client goes to the container.
        try:
            os.kill(started[0].pid, number)
        except (IndexError, ProcessLookupError):
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    child = subprocess.Popen([*entry, *rest[1:]], env=env, start_new_session=True)
    started.append(child)
    (here / (name + ".pid")).write_text(str(child.pid))
    code = child.wait()
    end_container(child.pid)
    sys.exit(128 - code if code < 0 else code)
if args[:1] == ["stop"]:
    pid = int((here / (args[-1] + ".pid")).read_text())
    deadline = time.monotonic() + float(args[args.index("--time") + 1])
    try:
        os.kill(pid, signal.SIGTERM)
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    end_container(pid)
    print(args[-1])
    sys.exit(0)
if args[:1] == ["kill"]:
    end_container(int((here / (args[-1] + ".pid")).read_text()))
    print(args[-1])
    sys.exit(0)
print("stand-in docker: unsupported call " + " ".join(args), file=sys.stderr)
sys.exit(2)
"""


def install_docker_stand_in(directory: Path, images: list[str]) -> Path:
    """Writes `docker` into `directory` (put it first on PATH); returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "images").write_text("\n".join(images) + "\n")
    docker = directory / "docker"
    docker.write_text(SCRIPT.format(python=sys.executable))
    docker.chmod(0o755)
    return docker


def docker_calls(directory: Path) -> list[list[str]]:
    """Every call the stand-in received, in order."""
    log = directory / "calls.jsonl"
    if not log.is_file():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]
