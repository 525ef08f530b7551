"""LocalStack: the whole product on this machine. Starts the endpoint, creates the resources from
template.yaml, starts the function hosts, the executor and the timeout watchdog, and writes the state
file the CLI reads (`batchgate --local ...`). Stops everything in the reverse order."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchgate.adapters.job_table import JobTable
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.domain.catalog import Catalog, load_catalog
from batchgate.ops.local.cluster import LocalCluster, create_cluster, families
from batchgate.ops.local.docker import DockerEngine, DockerUnavailable
from batchgate.ops.local.endpoint import LocalAws, MotoEndpoint, sdk_environment
from batchgate.ops.local.errors import StackFailure
from batchgate.ops.local.executor import LocalExecutor, StartDelays, TaskEnvironment
from batchgate.ops.local.functions import WaitingRuntimes
from batchgate.ops.local.hosts import FunctionHosts, HostOptions, waiting_runtimes
from batchgate.ops.local.notifications import TOPIC_PARAMETER, LocalTopic, create_topic, event_parameters
from batchgate.ops.local.pools import LocalPools, pool_settings_from
from batchgate.ops.local.resources import (
    ResourceBuilder,
    StackResources,
    parameter_values,
    preload_translator,
    translate,
)
from batchgate.ops.local.scheduler import LocalScheduler
from batchgate.ops.local.watchdog import TimeoutWatchdog
from batchgate.ops.stack_outputs import OUTPUTS, local_state_path
from batchgate.ops.template import load_template

TEMPLATE = "template.yaml"
SAMPLES = "samples"


def read_template(path: Path) -> dict[str, Any]:
    """template.yaml, read once, with the SAM translator imported for what follows."""
    preload_translator()
    return load_template(path)


def find_root(start: Path | None = None) -> Path:
    """The repository: the nearest folder holding template.yaml, from the current directory up, else
    the one this package was installed from (editable install)."""
    here = (start or Path.cwd()).resolve()
    package_root = Path(__file__).resolve().parents[4]
    for candidate in (here, *here.parents, package_root):
        if (candidate / TEMPLATE).is_file() and (candidate / "functions").is_dir():
            return candidate
    raise StackFailure(f"no {TEMPLATE} with a functions/ folder in {here} or its parents")


@dataclass(frozen=True)
class StackOptions:
    root: Path
    stack_name: str = "batchgate-local"
    region: str = "us-east-1"
    catalog_path: Path | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    delays: StartDelays = field(default_factory=StartDelays)
    concurrency: int = 1  # execution environments per function
    # The timeout stand-in; None: only when the template schedules no function (no sweep yet).
    watchdog: bool | None = None
    schedule_seconds: float | None = None  # run scheduled functions this often instead of their rate
    stop_grace_seconds: float = 2.0
    state_path: Path | None = None
    log_level: str | None = None
    echo: Callable[[str], None] | None = None  # functions' output, for --verbose
    docker: bool = True  # run a task in Docker when an engine answers and has its image
    images: Mapping[str, str] = field(default_factory=dict)  # task definition family -> image
    # The endpoint written into the `sam local invoke` env-vars file (None: the local endpoint's URL).
    sam_endpoint_url: str | None = None
    # Workers per warm pool (None: each pool's first schedule window's count; 0: every pool closed).
    pool_tasks: int | None = None
    # The catalog's schedules fired locally (batchgate.ops.local.scheduler), their clock this many times
    # faster than the wall clock; 0: not fired.
    schedule_speed: float = 1.0


class LocalStack:
    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self._workdir = Path(tempfile.mkdtemp(prefix="batchgate-local-"))
        self.endpoint = MotoEndpoint(log_path=self._workdir / "endpoint.log")
        self.catalog: Catalog = load_catalog(options.catalog_path)
        self._hosts: FunctionHosts | None = None
        self._waiting: WaitingRuntimes | None = None
        self._executor: LocalExecutor | None = None
        self._watchdog: TimeoutWatchdog | None = None
        self.pools: LocalPools | None = None
        self._state_written: Path | None = None
        self.aws: LocalAws | None = None
        self.cluster: LocalCluster | None = None
        self.resources: StackResources | None = None
        self.docker: DockerEngine | None = None
        self.scheduler: LocalScheduler | None = None
        self.topic: LocalTopic | None = None  # the notification topic the stack made (none given)

    # --- what other parts read -------------------------------------------------------------------------

    @property
    def outputs(self) -> dict[str, str]:
        """The template's outputs by the CLI's resource names (table_name, queue_url, ...)."""
        outputs = self.resources.outputs if self.resources else {}
        return {OUTPUTS[key]: value for key, value in outputs.items() if key in OUTPUTS}

    def client_aws(self) -> LocalAws:
        if self.aws is None:
            raise StackFailure("the local stack is not started")
        return self.aws

    def table(self) -> JobTable:
        return JobTable(self._resource("table_name"), self.client_aws().dynamodb())

    def state(self) -> dict[str, Any]:
        """The state file's document (batchgate.ops.stack_outputs.LocalState reads it)."""
        outputs = self.outputs
        warm = self.warm_environment() or {}
        return {
            "endpoint_url": self.endpoint.url,
            "region": self.options.region,
            "stack_name": self.options.stack_name,
            "table_name": outputs.get("table_name"),
            "queue_url": outputs.get("queue_url"),
            "dlq_urls": {
                "jobs": outputs.get("jobs_dlq_url"),
                "track": outputs.get("track_dlq_url"),
                "history": outputs.get("history_dlq_url"),
            },
            "cluster": self.cluster.arn if self.cluster else outputs.get("cluster"),
            # The warm lane's names as the functions resolved them (`batchgate pools`, `show`).
            "pool_table_name": warm.get("POOL_TABLE_NAME") or None,
            "pool_queue_urls": warm.get("POOL_QUEUE_URLS") or None,
            "pool_dlq_urls": outputs.get("pool_dlq_urls"),
            # Where the track function's host reads its events (EventBridge's target here): `dlq
            # redrive` sends the track DLQ's events there, as the stack serves no Lambda Invoke.
            "event_queues": {"track": self._event_queue_of(outputs.get("track_function"))},
            # Job events and notifications (`batchgate --local events [--notifications]`).
            "events_queue_url": outputs.get("events_queue_url"),
            "notification_topic_arn": self.topic.topic_arn if self.topic else None,
            "notification_queue_url": self.topic.queue_url if self.topic else None,
            "pid": os.getpid(),
            "sam_env_file": str(self.sam_env_path) if self._state_written else None,
        }

    def _event_queue_of(self, function_name: str | None) -> str | None:
        """The local queue the host of the function named `function_name` reads its events from."""
        if not function_name or self._hosts is None or self.resources is None:
            return None
        for logical_id, url in self._hosts.event_queue_urls.items():
            if self.resources.functions[logical_id].name == function_name:
                return url
        return None

    @property
    def sam_env_path(self) -> Path:
        """Beside the state file: `sam local invoke --env-vars` for this running stack."""
        state = self.options.state_path or local_state_path()
        return state.with_name(f"{state.stem}-sam-env.json")

    def sam_environment(self, endpoint_url: str | None = None) -> dict[str, dict[str, str]]:
        """Every function's variables as this stack resolved them (real queue, table, cluster,
        subnets), pointed at `endpoint_url` (default: the local endpoint; how a container reaches it
        depends on the Docker set-up: `--docker-network host` reaches 127.0.0.1)."""
        endpoint = endpoint_url or self.endpoint.url or ""
        return {
            logical_id: {
                **function.environment,
                **sdk_environment(endpoint, self.options.region),
                "POWERTOOLS_TRACE_DISABLED": "true",
            }
            for logical_id, function in sorted((self.resources.functions if self.resources else {}).items())
        }

    @property
    def runs_schedules(self) -> bool:
        """True when the template schedules a function (the sweep, which enforces timeouts)."""
        return bool(self.resources and self.resources.schedule_targets)

    @property
    def runs_watchdog(self) -> bool:
        return self.options.watchdog if self.options.watchdog is not None else not self.runs_schedules

    def check(self) -> None:
        """Raise StackFailure if a function host has exited."""
        if self._hosts is not None:
            self._hosts.check()

    def diagnose(self, job_id: str) -> str:
        """What the stack knows about a job that is stuck: its item, its tasks, the parts' last words."""
        aws = self.client_aws()
        job = self.table().get(job_id)
        tasks = aws.ecs().list_tasks(cluster=self.state()["cluster"], startedBy=job_id)["taskArns"]
        lines = [f"job: {job.to_item() if job else None}", f"tasks started by it: {tasks}"]
        lines += [f"executor: {error}" for error in (self._executor.errors if self._executor else [])]
        for host in self._hosts.processes if self._hosts else []:
            lines.append(
                f"{host.name} ({'running' if host.running else 'exited'}): "
                + " | ".join(list(host.tail)[-8:])
            )
        return "\n".join(lines)

    @property
    def skipped(self) -> list[str]:
        return [
            f"{item.logical_id} ({item.resource_type}): {item.reason}"
            for item in (self.resources.skipped if self.resources else [])
        ]

    # --- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        options = self.options
        self.docker = self._docker_engine()
        # The SAM translator takes most of a second to import: meanwhile the endpoint starts (its server
        # imports moto in a process of its own).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-template") as reading:
            read = reading.submit(read_template, options.root / TEMPLATE)
            self.aws = aws = LocalAws(self.endpoint.start(), options.region)
            template = read.result()
        # The function hosts' runtimes import the SDK while the resources are created (which waits on the
        # endpoint more than it computes): their handlers' imports are all that is left when they start.
        # Started from the stack's own thread: a parent-death signal follows the thread that started it.
        self._waiting = waiting_runtimes(template)
        self.cluster = create_cluster(aws, options.stack_name, self.catalog, options.images)
        if TOPIC_PARAMETER not in options.parameters:
            self.topic = create_topic(aws, options.stack_name)
        given = {
            **self.cluster.template_parameters(),
            **event_parameters(options.parameters, self.topic),
            **options.parameters,
        }
        parameters = parameter_values(template, given)
        translated = translate(template, parameters, options.region)
        self.resources = resources = ResourceBuilder(aws, options.root, options.stack_name).build(
            translated, parameters
        )
        self._executor = LocalExecutor(
            self.cluster.arn,
            TaskEnvironment(
                workdir=options.root / SAMPLES,
                aws=aws,
                delays=options.delays,
                stop_grace_seconds=options.stop_grace_seconds,
                docker=self.docker,
            ),
        )
        self._executor.start()
        self._hosts = FunctionHosts(
            resources,
            aws,
            HostOptions(
                stack_name=options.stack_name,
                concurrency=options.concurrency,
                schedule_seconds=options.schedule_seconds,
                catalog_path=options.catalog_path,
                log_level=options.log_level,
                echo=options.echo,
            ),
            self._waiting,
        )
        self._hosts.start()
        self._waiting.close()  # what no host took
        # The pools' workers start while the function hosts import their handlers.
        self.pools = self._start_pools(aws)
        self._hosts.wait_ready()
        if self.catalog.schedules and options.schedule_speed > 0:
            queue = JobsQueue(self._resource("queue_url"), aws.sqs())
            self.scheduler = LocalScheduler(self.catalog, queue, speed=options.schedule_speed)
            self.scheduler.start()
        if self.runs_watchdog:
            self._watchdog = TimeoutWatchdog(self.table(), self.catalog, aws.ecs(), self.cluster.arn)
            self._watchdog.start()
        self._write_state()

    def warm_environment(self) -> Mapping[str, str] | None:
        """A function's resolved environment naming the pool table (the dispatch function's names every
        pool queue); None when the template deploys no warm lane."""
        functions = self.resources.functions.values() if self.resources else ()
        named = [function.environment for function in functions if "POOL_TABLE_NAME" in function.environment]
        return max(named, key=lambda environment: len(environment.get("POOL_QUEUE_URLS", "")), default=None)

    def _start_pools(self, aws: LocalAws) -> LocalPools | None:
        """The catalog's warm pools as worker processes (in Docker for a family with `--image`), when the
        template deploys the warm lane."""
        options = self.options
        environment = self.warm_environment()
        if not self.catalog.pools or environment is None or self.cluster is None:
            return None
        settings = pool_settings_from(
            environment,
            stack_name=options.stack_name,
            region=options.region,
            cluster_arn=self.cluster.arn,
            samples=options.root / SAMPLES,
            catalog_path=options.catalog_path,
            stop_grace_seconds=options.stop_grace_seconds,
            tasks=options.pool_tasks,
            images=options.images,
        )
        if settings is None:
            return None
        pools = LocalPools(self.catalog, settings, aws, echo=options.echo, docker=self.docker)
        pools.start()
        return pools

    def _docker_engine(self) -> DockerEngine | None:
        """The engine that runs tasks whose image it has; None: every task runs as a local process.
        An image named with `--image` must be there: the local stack never pulls."""
        options = self.options
        known = families(self.catalog)
        unknown = sorted(set(options.images) - set(known))
        if unknown:
            raise StackFailure(
                f"--image {', '.join(unknown)}: not a task definition family of the catalog "
                f"(families: {', '.join(known)})"
            )
        if not options.docker:
            if options.images:
                raise StackFailure("--image runs the task in Docker, which --no-docker turns off")
            return None
        if not options.images:
            return DockerEngine.detect()
        engine = DockerEngine()
        try:
            engine.check()
        except DockerUnavailable as error:
            raise StackFailure(f"--image needs a Docker engine: {error}") from error
        missing = [
            f"{family}={image}" for family, image in options.images.items() if not engine.has_image(image)
        ]
        if missing:
            raise StackFailure(
                f"the Docker engine has no image {', '.join(missing)}: build or pull it first "
                "(the local stack never pulls)"
            )
        return engine

    def _write_state(self) -> None:
        path = self.options.state_path or local_state_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.sam_env_path.write_text(
            json.dumps(self.sam_environment(self.options.sam_endpoint_url), indent=2) + "\n"
        )
        self._state_written = path
        path.write_text(json.dumps(self.state(), indent=2) + "\n")

    def _resource(self, name: str) -> str:
        value = self.outputs.get(name)
        if not value:
            raise StackFailure(
                f"the template has no output for {name} (see batchgate.ops.stack_outputs.OUTPUTS)"
            )
        return value

    def stop(self) -> None:
        """Reverse order: no new stops, tasks end (their last events still flow), functions, endpoint."""
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        if self.pools is not None:
            self.pools.stop()  # before the functions: a draining worker still reports its jobs' ends
            self.pools = None
        if self._executor is not None:
            self._executor.stop()
            self._executor = None
        if self._hosts is not None:
            self._hosts.stop()
            self._hosts = None
        if self._waiting is not None:
            self._waiting.close()
            self._waiting = None
        self.endpoint.stop()
        self._remove_state()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def _remove_state(self) -> None:
        """Remove the state file if it still describes this stack (another one may have replaced it)."""
        path, self._state_written = self._state_written, None
        if path is None:
            return
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
                self.sam_env_path.unlink(missing_ok=True)
        except (OSError, ValueError):
            pass

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
