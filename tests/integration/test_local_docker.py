"""Tasks in Docker on the local stack: `batchgate local up --image FAMILY=IMAGE` runs that family's tasks
in the engine with that image, and the other families' as local processes, in one stack; with the stand-in,
the attendance pool's workers run in Docker too (`--image` of the pool's family).

Each test runs against two engines: the stand-in `docker` command line (tests/docker_stand_in.py),
always, and a real Docker engine where one answers and an image can be made without a registry (a
busybox root file system, imported: `docker import`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest
from batchgate.domain.jobs import JobStatus
from batchgate.domain.warm import WARM

from tests.docker_stand_in import docker_calls, install_docker_stand_in
from tests.integration.local_stack import BATCHGATE, Stack, running_stack

pytestmark = pytest.mark.integration

STAND_IN_IMAGE = "example/reports:1"
# The attendance batch's image with the worker added: its pool's workers run in it.
STAND_IN_POOL_IMAGE = "example/attendance-worker:1"
MISSING_COMMAND = "no-such-batch-program"
MISSING_BATCH = "missing-import"
REAL_IMAGE = "batchgate-test/busybox:local"
# report-export's command in these stacks: a shell script, so that it runs in a busybox image too.
EXPORT_SCRIPT = (
    "trap 'echo export stopped; exit 143' TERM; "
    'echo "exporting $0 in a container"; echo "endpoint $AWS_ENDPOINT_URL"; '
    'if [ "$0" = fail ]; then exit 4; fi; '
    'if [ "$0" = slow ]; then sleep 30 & wait; fi'
)


@dataclass
class DockerStack:
    stack: Stack
    engine: str
    calls_dir: Path | None  # the stand-in's call log, None for a real engine


def shell_export_catalog(directory: Path) -> Path:
    document = json.loads(resources.files("batchgate").joinpath("catalog.json").read_text())
    # The export script reads its arguments as positional parameters: a shell batch, marked as one.
    document["batches"]["report-export"] |= {"command": ["sh", "-c", EXPORT_SCRIPT], "shell": True}
    # A command that does not exist, once (no retry of the start failure), on ECS (off the warm pool),
    # where a command that cannot start fails its task to start.
    missing = {key: value for key, value in document["batches"]["attendance-import"].items()}
    for field in ("pool", "run_mode", "preload"):
        missing.pop(field, None)
    missing |= {"command": [MISSING_COMMAND], "max_attempts": 1, "task_definition": "batchgate-payroll"}
    document["batches"][MISSING_BATCH] = missing | {"container": "payroll"}
    path = directory / "catalog.json"
    path.write_text(json.dumps(document))
    return path


def real_engine_image() -> str | None:
    """Imports a busybox image into a real engine; None where there is no engine or no static busybox."""
    docker, busybox = shutil.which("docker"), shutil.which("busybox")
    if docker is None or busybox is None:
        return None
    if subprocess.run([docker, "version"], capture_output=True, timeout=20, check=False).returncode != 0:
        return None
    with tempfile.TemporaryDirectory() as root:
        (Path(root) / "bin").mkdir()
        shutil.copy(busybox, Path(root) / "bin" / "busybox")
        for applet in ("sh", "sleep", "echo"):
            (Path(root) / "bin" / applet).symlink_to("busybox")
        archive = Path(root).with_suffix(".tar")
        subprocess.run(["tar", "-C", root, "-cf", str(archive), "."], check=True)
        imported = subprocess.run(
            [docker, "import", str(archive), REAL_IMAGE], capture_output=True, timeout=60, check=False
        )
        archive.unlink()
    if imported.returncode != 0:
        return None
    probe = subprocess.run(
        [docker, "run", "--rm", REAL_IMAGE, "sh", "-c", "echo ok"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return REAL_IMAGE if probe.stdout.strip() == b"ok" else None  # a dynamic busybox does not run alone


@pytest.fixture(scope="module", params=["stand-in", "real"])
def docker_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DockerStack]:
    directory = tmp_path_factory.mktemp(f"docker-{request.param}")
    environment = dict(os.environ)
    calls_dir: Path | None = None
    if request.param == "stand-in":
        calls_dir = directory / "bin"
        install_docker_stand_in(calls_dir, [STAND_IN_IMAGE, STAND_IN_POOL_IMAGE])
        # The stand-in "images" have this environment's python, with batchgate and the samples.
        environment["PATH"] = os.pathsep.join(
            (str(calls_dir), str(Path(sys.executable).parent), environment["PATH"])
        )
        image = STAND_IN_IMAGE
        pool_images = ["--image", f"batchgate-attendance={STAND_IN_POOL_IMAGE}"]
    else:
        found = real_engine_image()
        if found is None:
            pytest.skip("no Docker engine with a static busybox to make an image from")
        image = found
        pool_images = []  # a busybox image has no python for the worker
    arguments = [
        "--catalog",
        str(shell_export_catalog(directory)),
        "--image",
        f"batchgate-reports={image}",
        *pool_images,
    ]
    with running_stack(directory, arguments, environment) as stack:
        yield DockerStack(stack=stack, engine=request.param, calls_dir=calls_dir)


def test_a_task_runs_in_docker_with_the_image(docker_stack: DockerStack) -> None:
    stack = docker_stack.stack
    job = stack.wait_for(stack.submit("report-export", ["headcount"], f"docker-ok-{docker_stack.engine}"))

    assert job.status is JobStatus.SUCCEEDED
    # The container reached the local endpoint, the task role's stand-in, through host networking.
    assert stack.log_lines(job) == ["exporting headcount in a container", f"endpoint {stack.endpoint}"]
    if docker_stack.calls_dir is not None:
        runs = [
            call
            for call in docker_calls(docker_stack.calls_dir)
            if call[0] == "run" and STAND_IN_IMAGE in call
        ]
        assert len(runs) == 1
        run = runs[0]
        assert run[run.index(STAND_IN_IMAGE) + 1 :] == ["sh", "-c", EXPORT_SCRIPT, "headcount"]
        assert run[run.index("--network") : run.index("--network") + 2] == ["--network", "host"]
        passed = {run[index + 1] for index, part in enumerate(run) if part == "--env"}
        assert {"AWS_ENDPOINT_URL", "AWS_SECRET_ACCESS_KEY", "BATCHGATE_JOB_ID"} <= passed
        assert "testing" not in run  # values never on the command line


def test_a_non_zero_exit_in_docker_fails_the_job(docker_stack: DockerStack) -> None:
    stack = docker_stack.stack
    job = stack.wait_for(stack.submit("report-export", ["fail"], f"docker-fail-{docker_stack.engine}"))

    assert job.status is JobStatus.FAILED
    assert job.attempt is not None
    assert (job.attempt.exit_code, job.attempt.stop_code) == (4, "EssentialContainerExited")


def test_cancel_stops_the_container(docker_stack: DockerStack) -> None:
    stack = docker_stack.stack
    job_id = stack.submit("report-export", ["slow"], f"docker-cancel-{docker_stack.engine}")
    running = stack.wait_for(job_id, {JobStatus.RUNNING})
    assert running.attempt is not None and running.attempt.task_arn
    task_id = running.attempt.task_arn.rsplit("/", 1)[-1]

    cancelled = subprocess.run(
        [BATCHGATE, "--local", "--local-state", str(stack.state_path), "cancel", job_id],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    job = stack.wait_until(
        job_id, lambda job: job.attempt is not None and job.attempt.last_status == "STOPPED"
    )

    assert job.status is JobStatus.CANCELLED
    assert job.attempt is not None
    assert (job.attempt.stop_code, job.attempt.exit_code) == ("UserInitiated", 143)
    assert stack.log_lines(job)[-1] == "export stopped"
    if docker_stack.calls_dir is not None:
        assert ["stop", "--time", "2", f"batchgate-{task_id}"] in docker_calls(docker_stack.calls_dir)
    else:
        listed = subprocess.run(
            ["docker", "ps", "--all", "--quiet", "--filter", f"name=batchgate-{task_id}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert listed.stdout.strip() == "", "the container is still there"


def test_a_family_without_an_image_still_runs_as_a_local_process(docker_stack: DockerStack) -> None:
    stack = docker_stack.stack
    job = stack.wait_for(
        stack.submit("payroll-calculation", ["2026-11", "acme"], f"docker-mix-{docker_stack.engine}")
    )

    assert job.status is JobStatus.SUCCEEDED
    assert stack.log_lines(job)[-1] == "payroll 2026-11: done"
    if docker_stack.calls_dir is not None:
        runs = [call for call in docker_calls(docker_stack.calls_dir) if call[0] == "run"]
        assert not any("payroll" in " ".join(call) for call in runs)


def test_a_command_that_cannot_start_fails_the_task_to_start(docker_stack: DockerStack) -> None:
    stack = docker_stack.stack
    job = stack.wait_for(stack.submit(MISSING_BATCH, ["uploads/a.csv"], f"no-start-{docker_stack.engine}"))

    assert job.status is JobStatus.FAILED
    assert job.attempt is not None and job.attempt.stop_code == "TaskFailedToStart"
    assert job.attempt.stopped_reason == (
        f"CannotStartContainerError: No such file or directory: {MISSING_COMMAND} uploads/a.csv"
    )


def test_a_warm_job_runs_on_a_pool_worker_in_docker(docker_stack: DockerStack) -> None:
    if docker_stack.calls_dir is None:
        pytest.skip("the real engine's test image has no python for the worker")
    stack = docker_stack.stack
    job_id = stack.submit("attendance-import", ["uploads/docker/acme.csv"], "docker-warm")
    job = stack.wait_for(job_id)

    assert job.status is JobStatus.SUCCEEDED, job.reason
    attempt = job.attempt
    assert attempt is not None and attempt.task_arn is not None
    assert (attempt.strategy, attempt.capacity_provider) == (WARM, "attendance")
    assert stack.log_lines(job)[-1] == "attendance: uploads/docker/acme.csv: 3 rows imported"
    # The pool task that claimed the job is a container of the pool's image, the worker its entry point.
    name = f"batchgate-{attempt.task_arn.rsplit('/', 1)[-1]}"
    [run] = [call for call in docker_calls(docker_stack.calls_dir) if call[:1] == ["run"] and name in call]
    assert run[run.index("--name") + 1] == name and "--init" in run
    assert run[run.index("--network") + 1] == "host"
    assert run[run.index("--entrypoint") :] == [
        "--entrypoint",
        "python",
        STAND_IN_POOL_IMAGE,
        "-m",
        "batchgate.worker",
    ]
    passed = {run[index + 1] for index, part in enumerate(run) if part == "--env"}
    assert {"BATCHGATE_POOL", "POOL_QUEUE_URL", "BATCHGATE_WORKER_TASK_ARN", "AWS_ENDPOINT_URL"} <= passed
    assert attempt.task_arn not in run  # values never on the command line
