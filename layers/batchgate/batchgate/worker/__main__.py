"""`python -m batchgate.worker`: a warm pool task's entry point (its settings come from the
environment: docs/warm-lane.md, "The worker")."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

import boto3

from batchgate.adapters.aws_clients import dynamodb_client, ecs_client, sqs_client
from batchgate.adapters.ecs_agent import TaskIdentity, read_task_identity
from batchgate.domain.catalog import Catalog, load_catalog
from batchgate.worker.child_process import Zygote
from batchgate.worker.settings import WorkerSettings
from batchgate.worker.worker import Worker, WorkerClients, preload_modules

log = logging.getLogger("batchgate.worker")
# LogRecord's own attributes: everything else on a record came from `extra`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonLines(logging.Formatter):
    """One JSON object per line (CloudWatch Logs Insights reads its fields)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "message": record.getMessage(),
        }
        entry.update({key: value for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def task_identity(settings: WorkerSettings) -> TaskIdentity:
    if settings.metadata_uri is None:
        assert settings.task_arn is not None  # WorkerSettings requires one of them
        return TaskIdentity(task_arn=settings.task_arn, availability_zone=None, image=None, image_digest=None)
    identity = read_task_identity(settings.metadata_uri)
    if settings.task_arn:
        return TaskIdentity(
            settings.task_arn, identity.availability_zone, identity.image, identity.image_digest
        )
    return identity


def start_zygote(catalog: Catalog, pool: str) -> Zygote | None:
    """The pool's preload parent, when one of its batches runs in preload mode. Imported only then:
    a command-only pool never loads it."""
    modules = preload_modules(catalog, pool)
    if not modules:
        return None
    from batchgate.worker.zygote import Zygote as PreloadZygote

    return PreloadZygote.start(modules)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m batchgate.worker",
        description=(
            "batchgate's warm pool worker: runs a pool's jobs in slots of this task. Configured by the "
            "environment: BATCHGATE_POOL, JOB_TABLE_NAME, POOL_TABLE_NAME, POOL_QUEUE_URL, JOBS_QUEUE_URL, "
            "POOL_LOG_GROUP, optional BATCHGATE_CATALOG; ECS_CONTAINER_METADATA_URI_V4 and ECS_AGENT_URI "
            "from ECS (BATCHGATE_WORKER_TASK_ARN without a metadata endpoint)."
        ),
    )
    parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLines())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        settings = WorkerSettings.from_environment()
        catalog = load_catalog(settings.catalog_path)
        identity = task_identity(settings)
        zygote = start_zygote(catalog, settings.pool)
    except Exception:
        # A task that cannot serve exits non-zero: ECS shows it failing (and a deployment stops).
        log.exception("the worker cannot start")
        return 1
    clients = WorkerClients(
        dynamodb=dynamodb_client(),
        sqs=sqs_client(),
        logs=boto3.client("logs"),
        ecs=ecs_client(),
        cloudwatch=boto3.client("cloudwatch"),
    )
    worker = Worker(settings, catalog, identity, clients, zygote=zygote)
    return serve_until_stopped(worker)


def serve_until_stopped(worker: Worker) -> int:
    """Run the worker in its own thread; the main thread only waits, so a signal handler (which
    Python runs in the main thread) never interrupts code holding one of the worker's locks."""
    status: list[int] = []

    def stop(number: int, frame: FrameType | None) -> None:
        worker.request_stop(signal.Signals(number).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    serving = threading.Thread(target=lambda: status.append(worker.run()), name="worker")
    serving.start()
    while serving.is_alive():
        serving.join(timeout=1.0)
    return status[0] if status else 1


if __name__ == "__main__":
    sys.exit(main())
