"""Warm pools on the local stack: each catalog pool runs as worker processes of the real worker code
(`python -m batchgate.worker`), against the local queue, tables and logs.

What ECS and Application Auto Scaling do around a pool is emulated simply: the pool's service keeps
`tasks` workers (default: its first schedule window's count, i.e. the pool is open; `--pool-tasks` to
change it, 0 for a closed pool), each with a task ARN of its own; a worker that exits while the stack
runs is reported as its task's STOPPED event (the task state change rule matches the pools' service
groups, so track fails the jobs it had claimed) and replaced, as the service would. A stop sends SIGTERM
(the worker drains) and SIGKILL after the stack's stop grace, as ECS does after the task's stopTimeout.

A pool whose task definition family has an image (`--image FAMILY=IMAGE`) runs its workers in Docker:
`docker run --rm --network host --init` of that image with the worker as entry point (the pool's image
is the batch's image with the worker added), the worker's environment passed by name; stops and kills go
through the engine (`docker stop --time N`, `docker kill`). Other pools' workers are local processes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchgate.adapters.pool_table import PoolTable
from batchgate.domain.catalog import Catalog, PoolSpec
from batchgate.ops.local.docker import (
    DOCKER_CLIENT_VARIABLES,
    WORKER_COMMAND,
    DockerEngine,
    container_name,
)
from batchgate.ops.local.endpoint import LocalAws
from batchgate.ops.local.errors import StackFailure
from batchgate.ops.local.processes import inherited, start_child, stop_process
from batchgate.ops.local.task_state import ESSENTIAL_CONTAINER_EXITED, EXITED_REASON, TaskState

# What a worker inherits from the host (a local process), or its `docker` client.
INHERITED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
# The sample batches' boot time: the worker's jobs read it, in a container too.
PASSED_VARIABLES = ("BATCHGATE_SAMPLE_BOOT_SECONDS",)
READY_SECONDS = 30.0
WATCH_SECONDS = 0.5
TAIL_LINES = 40
WORKER_CONTAINER = "worker"


@dataclass(frozen=True)
class PoolSettings:
    """Where the pools' workers find the stack: the names the functions' environment resolved."""

    stack_name: str
    region: str
    cluster_arn: str
    job_table: str
    pool_table: str
    jobs_queue_url: str | None
    queue_urls: Mapping[str, str]
    service_prefix: str
    samples: Path
    catalog_path: Path | None
    stop_grace_seconds: float = 2.0
    tasks: int | None = None  # every pool's task count; None: its first window's
    images: Mapping[str, str] = field(default_factory=dict)  # task definition family -> image (Docker)

    def log_group(self, pool: str) -> str:
        """The pool's job output: one stream per attempt (`<batch>/<job id>/<attempt>`)."""
        return f"/batchgate/{self.stack_name}/pools/{pool}"

    def task_count(self, pool: PoolSpec) -> int:
        if self.tasks is not None:
            return self.tasks
        return pool.windows[0].tasks if pool.windows else max(pool.min_tasks, 1)


def pool_settings_from(environment: Mapping[str, str], **given: Any) -> PoolSettings | None:
    """From a function's resolved environment (the dispatch function's names every pool queue); None
    when the template deploys no warm lane."""
    pool_table = environment.get("POOL_TABLE_NAME")
    if not pool_table:
        return None
    queue_urls = dict(
        entry.split("=", 1) for entry in environment.get("POOL_QUEUE_URLS", "").split(",") if "=" in entry
    )
    return PoolSettings(
        job_table=environment["JOB_TABLE_NAME"],
        pool_table=pool_table,
        jobs_queue_url=environment.get("JOBS_QUEUE_URL") or None,
        queue_urls=queue_urls,
        service_prefix=environment.get("POOL_SERVICE_PREFIX", ""),
        **given,
    )


class PoolWorker:
    """One pool task: a worker (a local process, or a container when `docker` and the pool's family has
    an image) and the task ECS would report for it."""

    def __init__(
        self,
        pool: PoolSpec,
        settings: PoolSettings,
        variables: Mapping[str, str],
        docker: DockerEngine | None = None,
    ) -> None:
        """`variables`: the worker's own environment (what the pool's task definition would set)."""
        self.pool = pool
        task_id = uuid.uuid4().hex
        cluster = settings.cluster_arn.rsplit("/", 1)[-1]
        account = (
            settings.cluster_arn.split(":")[4] if settings.cluster_arn.count(":") >= 5 else "000000000000"
        )
        self.task_arn = f"arn:aws:ecs:{settings.region}:{account}:task/{cluster}/{task_id}"
        image = settings.images.get(pool.family) if docker is not None else None
        self._docker = docker if image else None
        # The container's name, by which a stop or a kill finds it; None for a local process.
        self.container = container_name(task_id) if image else None
        self.state = TaskState(
            task={
                "taskArn": self.task_arn,
                "clusterArn": settings.cluster_arn,
                "group": f"service:{settings.service_prefix}{pool.name}",
                "startedBy": f"ecs-svc/{task_id[:19]}",
                "capacityProviderName": pool.capacity_provider,
                "cpu": str(pool.cpu),
                "memory": str(pool.memory),
            },
            container=WORKER_CONTAINER,
            image=image or f"{pool.family}:local",
            region=settings.region,
        )
        variables = {**variables, "BATCHGATE_WORKER_TASK_ARN": self.task_arn}
        if self._docker is not None and image and self.container:
            self.argv = self._docker.worker_argv(
                name=self.container,
                image=image,
                environment=variables,
                labels={"batchgate.task-arn": self.task_arn},
                read_only_files=[variables["BATCHGATE_CATALOG"]] if "BATCHGATE_CATALOG" in variables else [],
            )
            # The client forwards the variables it is given by name; it finds its engine by its own.
            self._environment = {**inherited(INHERITED_VARIABLES + DOCKER_CLIENT_VARIABLES), **variables}
        else:
            self.argv = [sys.executable, *WORKER_COMMAND]
            # The samples stand in for the batch's image: the worker runs its jobs from there.
            python_path = os.pathsep.join(filter(None, (str(settings.samples), os.environ.get("PYTHONPATH"))))
            self._environment = {**inherited(INHERITED_VARIABLES), **variables, "PYTHONPATH": python_path}
        self._cwd = settings.samples
        self.process: subprocess.Popen[str] | None = None
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._reader: threading.Thread | None = None

    def start(self, echo: Callable[[str], None] | None) -> None:
        # Ctrl-C reaches the stack, which stops the workers in order.
        self.process = start_child(self.argv, self._environment, cwd=self._cwd)
        self._reader = threading.Thread(
            target=self._read, args=(echo,), name=f"pool-{self.pool.name}", daemon=True
        )
        self._reader.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a task killed out of memory or lost with its host: no drain, no report."""
        if self.process is not None and self.process.poll() is None:
            if self._docker is not None and self.container:
                self._docker.kill(self.container)  # the container, not only its client
            self.process.kill()
            self.process.wait()

    def stop(self, grace_seconds: float) -> None:
        """SIGTERM (the worker drains), SIGKILL after `grace_seconds`; in Docker through the engine, so
        that the container gets them and not only its client."""
        if self.process is not None:
            if self._docker is not None and self.container and self.process.poll() is None:
                self._docker.stop(self.container, grace_seconds)
            stop_process(self.process, grace_seconds)
        if self._reader is not None:
            self._reader.join(timeout=5)

    def _read(self, echo: Callable[[str], None] | None) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.tail.append(line.rstrip("\n"))
            if echo is not None:
                echo(f"[pool {self.pool.name}] {line.rstrip()}")


class LocalPools:
    """Every catalog pool's workers, kept at their count while the stack runs."""

    def __init__(
        self,
        catalog: Catalog,
        settings: PoolSettings,
        aws: LocalAws,
        echo: Callable[[str], None] | None = None,
        docker: DockerEngine | None = None,  # runs the pools whose family has an image (settings.images)
    ) -> None:
        self.catalog = catalog
        self._docker = docker
        self.settings = settings
        self._aws = aws
        self._echo = echo
        self.workers: list[PoolWorker] = []
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        logs = self._aws.logs()
        for pool in self.catalog.pools.values():
            if pool.name not in self.settings.queue_urls:
                raise StackFailure(
                    f"pool {pool.name}: the template has no work queue for it (POOL_QUEUE_URLS)"
                )
            group = self.settings.log_group(pool.name)
            with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
                logs.create_log_group(logGroupName=group)
            for _ in range(self.settings.task_count(pool)):
                self._launch(pool)
        self.wait_ready(READY_SECONDS)
        self._watcher = threading.Thread(target=self._watch, name="pool-service", daemon=True)
        self._watcher.start()

    def wait_ready(self, seconds: float) -> None:
        """Until every worker has written its first heartbeat: only then do its slots exist for dispatch."""
        table = PoolTable(self.settings.pool_table, self._aws.dynamodb())
        deadline = time.monotonic() + seconds
        expected = {worker.task_arn for worker in self.workers}
        while expected:
            seen = {task.task_arn for pool in self.catalog.pools for task in table.tasks(pool)}
            if expected <= seen:
                return
            for worker in self.workers:
                if not worker.running:
                    raise StackFailure(
                        f"pool {worker.pool.name}: a worker exited at start; its output:\n"
                        + "\n".join(worker.tail)
                    )
            if time.monotonic() > deadline:
                raise StackFailure(f"pool workers wrote no heartbeat within {seconds:.0f} s")
            time.sleep(0.1)

    def kill(self, task_arn: str) -> None:
        """SIGKILL one pool task's worker (tests): its STOPPED event follows and a replacement starts."""
        worker = next(worker for worker in self.workers if worker.task_arn == task_arn)
        worker.kill()

    def stop(self) -> None:
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        # All at once: each drains within the same grace.
        stopping = [
            threading.Thread(target=worker.stop, args=(self.settings.stop_grace_seconds,), daemon=True)
            for worker in self.workers
        ]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()
        self.workers = []

    def _launch(self, pool: PoolSpec) -> PoolWorker:
        worker = PoolWorker(pool, self.settings, self._variables(pool), self._docker)
        worker.start(self._echo)
        with self._lock:
            self.workers.append(worker)
        self._publish(
            worker.state.change("RUNNING", "createdAt", "pullStartedAt", "pullStoppedAt", "startedAt")
        )
        return worker

    def _watch(self) -> None:
        """A worker that exits while the stack runs: its task's STOPPED event, then a replacement."""
        while not self._stopping.wait(WATCH_SECONDS):
            with self._lock:
                ended = [worker for worker in self.workers if not worker.running]
                for worker in ended:
                    self.workers.remove(worker)
            for worker in ended:
                state = worker.state
                state.exit_code = worker.process.returncode if worker.process else None
                state.stop_code = ESSENTIAL_CONTAINER_EXITED
                state.stopped_reason = EXITED_REASON
                state.desired_status = "STOPPED"
                self._publish(state.change("STOPPED", "stoppingAt", "executionStoppedAt", "stoppedAt"))
                if not self._stopping.is_set():
                    self._launch(worker.pool)

    def _publish(self, entry: Any) -> None:
        self._aws.events().put_events(Entries=[entry])

    def _variables(self, pool: PoolSpec) -> dict[str, str]:
        """The worker's own environment: what the pool's task definition sets, and the local endpoint's
        settings (the task role's stand-in)."""
        settings = self.settings
        variables = {
            **inherited(PASSED_VARIABLES),
            **self._aws.environment(),
            "BATCHGATE_POOL": pool.name,
            "JOB_TABLE_NAME": settings.job_table,
            "POOL_TABLE_NAME": settings.pool_table,
            "POOL_QUEUE_URL": settings.queue_urls[pool.name],
            "POOL_LOG_GROUP": settings.log_group(pool.name),
            "PYTHONUNBUFFERED": "1",
        }
        if settings.jobs_queue_url:
            variables["JOBS_QUEUE_URL"] = settings.jobs_queue_url
        if settings.catalog_path is not None:
            variables["BATCHGATE_CATALOG"] = str(settings.catalog_path.resolve())
        return variables
