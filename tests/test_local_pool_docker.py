"""A warm pool's workers in Docker on the local stack (`--image` naming the pool's task definition
family): the `docker` commands a pool task's worker is started, stopped and killed with, against the
stand-in `docker` command line (tests/docker_stand_in.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from batchgate.domain.catalog import PoolSpec, load_catalog
from batchgate.ops.local.docker import DockerEngine
from batchgate.ops.local.pools import PoolSettings, PoolWorker

from tests.docker_stand_in import docker_calls, install_docker_stand_in

POOL_IMAGE = "example/attendance-worker:1"
SECRET = "not-on-the-command-line"
# The stand-in image's `python`: a worker that drains on SIGTERM.
WORKER_STAND_IN = "#!/bin/sh\ntrap 'echo drained; exit 0' TERM\necho worker up\nsleep 30 & wait\n"


@pytest.fixture
def pool() -> PoolSpec:
    return load_catalog().pools["attendance"]


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "bin"
    install_docker_stand_in(directory, [POOL_IMAGE])
    python = directory / "python"
    python.write_text(WORKER_STAND_IN)
    python.chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory}:/usr/bin:/bin")
    return directory


def settings(tmp_path: Path, images: dict[str, str]) -> PoolSettings:
    catalog = tmp_path / "catalog.json"
    catalog.write_text("{}")
    return PoolSettings(
        stack_name="batchgate-local",
        region="eu-west-2",
        cluster_arn="arn:aws:ecs:eu-west-2:123456789012:cluster/batchgate-local",
        job_table="jobs",
        pool_table="pools",
        jobs_queue_url="http://127.0.0.1:5000/123456789012/jobs",
        queue_urls={"attendance": "http://127.0.0.1:5000/123456789012/pool-attendance"},
        service_prefix="batchgate-local-pool-",
        samples=tmp_path,
        catalog_path=catalog,
        stop_grace_seconds=2.0,
        images=images,
    )


def variables(catalog: Path) -> dict[str, str]:
    return {
        "BATCHGATE_POOL": "attendance",
        "POOL_QUEUE_URL": "http://127.0.0.1:5000/123456789012/pool-attendance",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "BATCHGATE_CATALOG": str(catalog),
    }


def docker_worker(tmp_path: Path, pool: PoolSpec, stand_in: Path) -> PoolWorker:
    pool_settings = settings(tmp_path, {pool.family: POOL_IMAGE})
    assert pool_settings.catalog_path is not None
    return PoolWorker(
        pool, pool_settings, variables(pool_settings.catalog_path), DockerEngine(str(stand_in / "docker"))
    )


def test_a_pool_with_an_image_runs_its_worker_in_docker(
    tmp_path: Path, pool: PoolSpec, stand_in: Path
) -> None:
    worker = docker_worker(tmp_path, pool, stand_in)
    argv = worker.argv
    task_id = worker.task_arn.rsplit("/", 1)[-1]
    catalog = str(tmp_path / "catalog.json")

    assert worker.container == f"batchgate-{task_id}"
    assert argv[:8] == [
        str(stand_in / "docker"),
        "run",
        "--rm",
        "--name",
        worker.container,
        "--network",
        "host",
        "--init",
    ]
    assert argv[argv.index("--volume") + 1] == f"{catalog}:{catalog}:ro"
    # The worker as entry point, in the pool's image: the image's own entry point and command never run.
    assert argv[argv.index("--entrypoint") :] == [
        "--entrypoint",
        "python",
        POOL_IMAGE,
        "-m",
        "batchgate.worker",
    ]
    passed = {argv[index + 1] for index, part in enumerate(argv) if part == "--env"}
    assert passed == {
        "BATCHGATE_POOL",
        "POOL_QUEUE_URL",
        "AWS_SECRET_ACCESS_KEY",
        "BATCHGATE_CATALOG",
        "BATCHGATE_WORKER_TASK_ARN",
    }
    assert SECRET not in argv and worker.task_arn not in argv  # values only in the client's environment
    assert worker.state.image == POOL_IMAGE


def test_a_pool_without_an_image_runs_its_worker_as_a_local_process(
    tmp_path: Path, pool: PoolSpec, stand_in: Path
) -> None:
    pool_settings = settings(tmp_path, {"batchgate-reports": POOL_IMAGE})
    worker = PoolWorker(pool, pool_settings, {}, DockerEngine(str(stand_in / "docker")))

    assert worker.argv == [sys.executable, "-m", "batchgate.worker"]
    assert worker.container is None


def test_a_stop_goes_through_the_engine_and_the_worker_drains(
    tmp_path: Path, pool: PoolSpec, stand_in: Path
) -> None:
    worker = docker_worker(tmp_path, pool, stand_in)
    worker.start(echo=None)
    wait_for_output(worker, "worker up")

    worker.stop(2.0)

    assert not worker.running
    assert worker.process is not None and worker.process.returncode == 0
    assert list(worker.tail)[-1] == "drained"
    assert ["stop", "--time", "2", worker.container] in docker_calls(stand_in)


def test_a_kill_sigkills_the_container(tmp_path: Path, pool: PoolSpec, stand_in: Path) -> None:
    worker = docker_worker(tmp_path, pool, stand_in)
    worker.start(echo=None)
    wait_for_output(worker, "worker up")

    worker.kill()

    assert not worker.running
    assert ["kill", "--signal", "KILL", worker.container] in docker_calls(stand_in)
    assert "drained" not in worker.tail
    worker.stop(0)


def wait_for_output(worker: PoolWorker, line: str) -> None:
    deadline = time.monotonic() + 10
    while line not in worker.tail:
        assert worker.running, list(worker.tail)
        assert time.monotonic() < deadline, list(worker.tail)
        time.sleep(0.02)
