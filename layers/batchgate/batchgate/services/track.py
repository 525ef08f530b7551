"""Track: an ECS task state change event in, the job's new state in the job table out.

One conditional write of the job per event that changes it, and nothing else: the history table
learns of a finished attempt from the job table's stream (batchgate.services.history_feed).

A warm pool's task (its group "service:" + POOL_SERVICE_PREFIX + the pool's name; batchgate did not
start it) runs many jobs: its STOPPED event fails, at once, every attempt its last heartbeat lists that
still runs on it (`pool_task_lost`, stop code WarmTaskStopped), and the retry policy retries them. Its
other events change nothing: the worker reports its attempts itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from batchgate.adapters.aws_clients import dynamodb_client
from batchgate.adapters.ecs import EcsTasks, LogPointer
from batchgate.adapters.job_table import JobTable
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.adapters.pool_table import PoolTable
from batchgate.adapters.telemetry import count, logger, record_start_latency
from batchgate.domain.catalog import BatchSpec, Catalog, load_catalog
from batchgate.domain.jobs import Job, JobStatus, iso, parse_iso, utc_now
from batchgate.domain.relaunch import next_attempt_relaunch
from batchgate.domain.task_events import TaskStateChange, apply_task_event
from batchgate.services.settings import Settings


class TrackResult(StrEnum):
    APPLIED = "APPLIED"
    UNCHANGED = "UNCHANGED"
    NOT_OURS = "NOT_OURS"


class JobNotFound(LookupError):
    """A task we started names a job the table does not have: raised so the event lands in the
    track dead-letter queue instead of vanishing."""


# Wiring, made once per container: neither frozen, compared nor printed, so that making the class
# generates one method (__init__), not six (docs/contracts-internal.md, Cold start).
@dataclass(eq=False, repr=False)
class Tracker:
    """Applies ECS task state change events to the jobs they belong to."""

    catalog: Catalog
    table: JobTable
    ecs: EcsTasks
    # Where a failed attempt's retry is sent (JOBS_QUEUE_URL); without it, the sweep sends it.
    jobs_queue: JobsQueue | None = None
    # The warm lane: the pools' heartbeats and the prefix of the pools' service names. Without both,
    # a pool task's events are not ours (the sweep then notices its stale heartbeats).
    pools: PoolTable | None = None
    pool_service_prefix: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Tracker:
        # One DynamoDB client for both tables: a second one costs milliseconds of every cold start.
        dynamodb = dynamodb_client()
        return cls(
            catalog=load_catalog(settings.catalog_path, schedules=False),
            table=JobTable(settings.table_name, dynamodb),
            ecs=EcsTasks(settings.cluster),
            jobs_queue=JobsQueue(settings.jobs_queue_url) if settings.jobs_queue_url else None,
            pools=PoolTable(settings.pool_table_name, dynamodb) if settings.pool_table_name else None,
            pool_service_prefix=settings.pool_service_prefix,
        )

    def track(self, event: Mapping[str, Any]) -> TrackResult:
        change = TaskStateChange.from_event(event)
        job_id = change.job_id
        if job_id is None:
            pool = self._pool_of(change)
            return self._pool_task_event(pool, change) if pool is not None else TrackResult.NOT_OURS
        logger.append_keys(job_id=job_id, task_arn=change.task_arn)
        before = self.table.get(job_id)
        if before is None:
            raise JobNotFound(f"no job {job_id} for task {change.task_arn}")
        spec = self.catalog.get(before.batch)
        container = spec.container if spec else None
        pointer = self._log_pointer(change, container)
        write = self.table.apply(
            job_id, lambda job: apply_task_event(job, change, container, pointer, spec), read=before
        )
        if write is not None and spec is not None:
            # Also for a duplicate event: if sending failed the first time, the retried event sends it.
            # Only the write that made the job RETRYING counts the retry.
            self._send_retry(write.after, change, spec, first=write.before.status is not JobStatus.RETRYING)
        if write is None or not write.written:
            logger.debug("event changed nothing", extra={"version": change.version})
            return TrackResult.UNCHANGED
        # From the job this write changed, not from `before`: a concurrent delivery of the same event
        # may have written between the two reads.
        self._emit_metrics(write.before, write.after, change)
        logger.info(
            "task state applied",
            extra={
                "last_status": change.last_status,
                "version": change.version,
                "status": write.after.status,
            },
        )
        return TrackResult.APPLIED

    def _pool_of(self, change: TaskStateChange) -> str | None:
        """The pool whose task this is, from the task's group ("service:<prefix><pool>")."""
        if self.pools is None or not self.pool_service_prefix or change.group is None:
            return None
        prefix = f"service:{self.pool_service_prefix}"
        pool = change.group.removeprefix(prefix)
        return pool if change.group.startswith(prefix) and pool else None

    def _pool_task_event(self, pool: str, change: TaskStateChange) -> TrackResult:
        """A pool task stopped: each attempt its heartbeat lists, still running on it, fails at once.
        Every listed job is tried; an error is raised afterwards, so the event is retried (what was
        applied already changes nothing the second time)."""
        if not change.is_stopped or self.pools is None:
            return TrackResult.UNCHANGED
        logger.append_keys(pool=pool, task_arn=change.task_arn)
        heartbeat = self.pools.get(pool, change.task_arn)
        if heartbeat is None:
            logger.info("pool task stopped without a heartbeat item: no job to fail")
            return TrackResult.UNCHANGED
        stop_code, stopped_reason = change.stop_code or "unknown", change.stopped_reason or "no reason given"
        reason = f"pool task stopped: {stop_code}: {stopped_reason}"
        at = change.timestamps.get("stopped") or change.time or iso(utc_now())
        applied, errors = 0, []
        for running in heartbeat.running:
            try:
                applied += self._fail_on_pool_task(running.job_id, running.attempt, change, reason, at)
            except Exception as error:  # the other jobs of the task still fail now
                logger.exception(
                    "could not fail an attempt of the stopped pool task", extra={"job": running.job_id}
                )
                errors.append(error)
        if errors:
            raise errors[0]
        logger.info("pool task stopped", extra={"failed_attempts": applied, "reason": reason})
        return TrackResult.APPLIED if applied else TrackResult.UNCHANGED

    def _fail_on_pool_task(
        self, job_id: str, number: int, change: TaskStateChange, reason: str, at: str
    ) -> int:
        before = self.table.get(job_id)
        if before is None:
            return 0
        # A warm pool's task stopped under a job: rare, so the warm lane's rules are not loaded at init.
        from batchgate.domain.warm import pool_task_lost

        spec = self.catalog.get(before.batch)
        task_arn = change.task_arn
        write = self.table.apply(
            job_id,
            lambda job: pool_task_lost(job, number, task_arn, reason=reason, at=at, spec=spec),
            read=before,
        )
        if write is None:
            return 0
        attempt_change = change._replace(started_by=job_id, attempt=number)
        if spec is not None:
            self._send_retry(
                write.after, attempt_change, spec, first=write.before.status is not JobStatus.RETRYING
            )
        if not write.written:
            return 0
        self._emit_metrics(write.before, write.after, attempt_change)
        count("WarmTaskStopped")
        return 1

    def _send_retry(self, job: Job, change: TaskStateChange, spec: BatchSpec, *, first: bool) -> None:
        """Send the retry message of a job the retry policy gave another attempt (batchgate.domain.relaunch).
        An error is raised, so the event is retried and the message sent then; dispatch ignores
        duplicates."""
        retry = next_attempt_relaunch(job, spec.retry_policy)
        if retry is None:
            return
        relaunch, delay = retry
        if change.attempt is not None and change.attempt != relaunch.attempt - 1:
            return  # an event of an earlier attempt
        if self.jobs_queue is None:
            logger.warning("no jobs queue configured: the sweep will send the retry")
            return
        self.jobs_queue.send_relaunch(relaunch, delay)
        if first:
            count("JobsRetried")
            logger.info("attempt failed; next attempt queued", extra={"delay": delay, "reason": job.reason})

    def _log_pointer(self, change: TaskStateChange, container: str | None) -> LogPointer | None:
        if not change.task_definition_arn or not container:
            return None
        try:
            return self.ecs.log_pointer(change.task_definition_arn, container, change.task_arn)
        except (ClientError, BotoCoreError) as error:
            # The job's state matters more than its log pointer: record the state without it.
            logger.warning(
                "could not read the task definition's log configuration", extra={"error": str(error)}
            )
            return None

    @staticmethod
    def _emit_metrics(before: Job, after: Job, change: TaskStateChange) -> None:
        if after.status != before.status and after.status.is_terminal:
            count(f"Jobs{after.status.value.title().replace('_', '')}")
        attempt = after.attempt
        earlier = before.attempt_by_number(attempt.number) if attempt else None
        if attempt is None or "started" not in attempt.timeline or "created" not in attempt.timeline:
            return
        if earlier is not None and "started" in earlier.timeline:
            return  # latency already reported for this attempt
        latency = parse_iso(attempt.timeline["started"]) - parse_iso(attempt.timeline["created"])
        record_start_latency(change.strategy, latency.total_seconds())
