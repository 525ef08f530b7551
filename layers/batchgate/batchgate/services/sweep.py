"""The sweep: a scheduled pass over the jobs that have not ended, so that no job runs forever, waits
forever or is silently lost.

It reads candidates from the `jobs-by-status` index (never a scan), each active status oldest first
(the likeliest past their timeout) and at most `max_jobs_per_status` of them, then those jobs by key.
Only jobs created long enough ago to need anything are read (`quiet_seconds`: every moment the sweep
measures from, a job's last change, its attempt's dispatch or its task's start, comes after its
creation), so a sweep reads by key the jobs that have been around for a while, not every young one.
For each:
- timeout: a task running longer than its batch's `timeout_seconds` (or never started long after that)
  is first compared with ECS (with the stale jobs below): a task ECS reports stopped ends the job by its
  own result. One still running, unknown to ECS, or whose DescribeTasks failed is stopped with the
  reason "batchgate: exceeded timeout of N s"; the job ends TIMED_OUT unless the batch's retry policy
  retries timeouts. An attempt whose container has already stopped (`execution_stopped` in its
  timeline: the task is deprovisioning) is never timed out: its STOPPED decides;
- missed events: a job whose state has not moved for a while is compared with ECS (DescribeTasks, 100
  tasks a call); what ECS knows and the job does not is applied through the same `apply_task_event` as
  the events (a STOPPED it missed ends the job or gives it its next attempt);
- lost launches: a job SUBMITTED or DISPATCHING without a task for too long, or RETRYING long after its
  back-off, gets a relaunch message (dispatch resumes the same attempt with the same clientToken, after
  looking for its task by startedBy);
- stuck jobs: a task PROVISIONING or PENDING far beyond the expected start gets a note ops can read
  ("PENDING for 6 min: image pull not finished") and counts in the StuckJobs metric.

WARM attempts (docs/warm-lane.md) run on a pool task that runs other jobs too: they are never compared
with ECS (DescribeTasks of the pool task says nothing of one job) and their task is never stopped. An
offer that no worker claimed and whose check never came is expired after the pool's `offer_seconds` and
a grace, and the next attempt relaunched; a claimed attempt whose pool task's heartbeat is missing,
stale or no longer lists it fails `WarmTaskStopped` (retried); a WARM attempt past its timeout ends the
job TIMED_OUT, and the worker stops the job's process when it sees that.

Every change goes through `JobTable.mutate`, so the sweep and track never overwrite each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from batchgate.adapters.ecs import EcsTasks, is_transient
from batchgate.adapters.job_table import JobTable, JobWrite
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.adapters.pool_table import PoolTable
from batchgate.adapters.telemetry import count, logger
from batchgate.domain.backoff import MAX_DELAY_SECONDS
from batchgate.domain.catalog import BatchSpec, Catalog, load_catalog
from batchgate.domain.described_tasks import change_from_task
from batchgate.domain.jobs import Attempt, Job, JobStatus, iso, parse_iso, utc_now
from batchgate.domain.pools import STALE_AFTER_SECONDS
from batchgate.domain.relaunch import Relaunch, awaited_attempt, next_attempt_relaunch
from batchgate.domain.retry_policy import Retry, decide
from batchgate.domain.task_events import InvalidTaskEvent, apply_task_event
from batchgate.domain.timeouts import TRACKED_STATUSES, time_out_attempt, timeout_reason
from batchgate.domain.timeouts import may_time_out as _may_time_out
from batchgate.domain.warm import OFFERED, WARM, expire_warm_offer, heartbeat_loss, is_warm, pool_task_lost
from batchgate.services.settings import Settings

# The statuses of jobs that have not ended, in the order the sweep reads them.
ACTIVE_STATUSES = (
    JobStatus.RUNNING,
    JobStatus.STOPPING,
    JobStatus.PENDING,
    JobStatus.PROVISIONING,
    JobStatus.DISPATCHED,
    JobStatus.DISPATCHING,
    JobStatus.SUBMITTED,
    JobStatus.RETRYING,
)
NOT_STARTED_STATUSES = frozenset({JobStatus.DISPATCHED, JobStatus.PROVISIONING, JobStatus.PENDING})
DESCRIBE_BATCH = 100  # DescribeTasks takes at most 100 tasks


class Comparison(Enum):
    """Why a job is compared with ECS."""

    STALE = "stale"  # its state has not moved for a while: an event may have been missed
    OVERDUE = "overdue"  # past its timeout: timed out unless ECS reports its task stopped


@dataclass(frozen=True)
class SweepSettings:
    # SUBMITTED or DISPATCHING without a task this long: the launch was lost (longer than the jobs
    # queue's visibility timeout, so that SQS's own redelivery goes first).
    launch_grace_seconds: int = 600
    # A tracked job whose state has not moved this long is compared with ECS.
    event_grace_seconds: int = 300
    # A task not RUNNING this long after dispatch is stuck: explained and counted.
    expected_start_seconds: int = 300
    # RETRYING this long past the longest back-off: the retry message was lost; sent again.
    retry_grace_seconds: int = 300
    # A task that never started is stopped this long after its batch's timeout would have ended it.
    start_limit_seconds: int = 1800
    # ECS forgets a stopped task after about an hour: a tracked job whose task ECS no longer knows, and
    # which has not moved for this long, ends FAILED with the explanation.
    vanished_after_seconds: int = 3600
    # Most jobs read per status and sweep, oldest first: newer ones are read once older ones have
    # ended. A status holding more is logged and counted (SweepCapped), as they may wait a long time.
    max_jobs_per_status: int = 1000
    # A warm offer neither claimed nor checked this long after its pool's offer_seconds: its check
    # message was lost; the sweep expires it and relaunches the next attempt.
    warm_offer_grace_seconds: int = 30


@dataclass
class SweepReport:
    examined: int = 0
    timed_out: int = 0
    reconciled: int = 0
    relaunched: int = 0
    stuck: int = 0
    errors: int = 0
    # Statuses holding more jobs than the sweep reads per status.
    capped: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "examined": self.examined,
            "timed_out": self.timed_out,
            "reconciled": self.reconciled,
            "relaunched": self.relaunched,
            "stuck": self.stuck,
            "errors": self.errors,
            "capped": self.capped,
        }


@dataclass(frozen=True)
class Sweeper:
    catalog: Catalog
    table: JobTable
    ecs: EcsTasks
    jobs_queue: JobsQueue | None
    settings: SweepSettings = SweepSettings()
    clock: Callable[[], datetime] = utc_now
    # The pools' heartbeats (POOL_TABLE_NAME); without them claimed WARM attempts are only timed out.
    pools: PoolTable | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Sweeper:
        return cls(
            catalog=load_catalog(settings.catalog_path),
            table=JobTable(settings.table_name),
            ecs=EcsTasks(settings.cluster),
            jobs_queue=JobsQueue(settings.jobs_queue_url) if settings.jobs_queue_url else None,
            pools=PoolTable(settings.pool_table_name) if settings.pool_table_name else None,
        )

    def sweep(self) -> SweepReport:
        now = self.clock()
        report = SweepReport()
        to_compare: list[tuple[Job, Comparison]] = []
        limit = self.settings.max_jobs_per_status
        for status in ACTIVE_STATUSES:
            created_by = iso(now - timedelta(seconds=self.quiet_seconds(status)))
            for index, job in enumerate(
                self.table.iterate(status=status.value, until=created_by, limit=100, oldest_first=True)
            ):
                if index >= limit:
                    report.capped += 1
                    logger.warning(
                        "more jobs in a status than the sweep reads: newer ones wait for later runs",
                        extra={"status": status.value, "read": limit},
                    )
                    break
                report.examined += 1
                try:
                    comparison = self._examine(job, now, report)
                    if comparison is not None:
                        to_compare.append((job, comparison))
                except Exception as error:  # one bad job must not stop the sweep of the others
                    report.errors += 1
                    logger.exception(
                        "sweep of a job failed", extra={"job_id": job.job_id, "error": str(error)}
                    )
        self._reconcile(to_compare, now, report)
        count("StuckJobs", report.stuck)
        count("SweepTimedOut", report.timed_out)
        count("SweepReconciled", report.reconciled)
        count("SweepRelaunched", report.relaunched)
        count("SweepCapped", report.capped)
        if report.errors:
            count("SweepErrors", report.errors)
        logger.info("sweep done", extra=report.to_dict())
        return report

    def quiet_seconds(self, status: JobStatus) -> int:
        """How long after its creation a job in `status` surely needs nothing from the sweep: the
        shortest wait before any of its checks could act (a lost launch, a lost retry, a missed event,
        the shortest timeout of the catalog)."""
        if status in (JobStatus.SUBMITTED, JobStatus.DISPATCHING):
            return self.settings.launch_grace_seconds
        if status is JobStatus.RETRYING:
            return MAX_DELAY_SECONDS + self.settings.retry_grace_seconds
        timeouts = [spec.timeout_seconds for spec in self.catalog.batches.values()]
        # The warm lane acts sooner: a lost offer's check, a claimed attempt's stale heartbeat.
        warm = [
            *(
                pool.offer_seconds + self.settings.warm_offer_grace_seconds
                for pool in self.catalog.pools.values()
            ),
            *([int(STALE_AFTER_SECONDS)] if self.catalog.pools else []),
        ]
        return min([self.settings.event_grace_seconds, *timeouts, *warm])

    # One job.

    def _examine(self, job: Job, now: datetime, report: SweepReport) -> Comparison | None:
        """Handle what needs no ECS call; say why when the job should be compared with ECS."""
        spec = self.catalog.get(job.batch)
        idle = _seconds(now, job.updated_at)
        if job.status in (JobStatus.SUBMITTED, JobStatus.DISPATCHING):
            if awaited_attempt(job) is not None and idle > self.settings.launch_grace_seconds:
                self._relaunch(
                    job, now, report, f"{job.status.value} for {_minutes(idle)}: launch did not finish"
                )
            return None
        if job.status is JobStatus.RETRYING:
            overdue = MAX_DELAY_SECONDS + self.settings.retry_grace_seconds
            if idle > overdue:
                self._relaunch(job, now, report, f"RETRYING for {_minutes(idle)}: retry message lost")
            return None
        attempt = job.attempt
        if spec is None or attempt is None or job.status not in TRACKED_STATUSES:
            return None
        if is_warm(job):
            self._examine_warm(job, spec, attempt, now, report)
            return None
        if _may_time_out(job, attempt.number) and self._past_timeout(job, spec, attempt, now):
            if attempt.task_arn is None:
                self._time_out(job, spec, attempt, now, report)
                return None
            return Comparison.OVERDUE
        if idle > self.settings.event_grace_seconds and attempt.task_arn is not None:
            return Comparison.STALE
        return None

    def _past_timeout(self, job: Job, spec: BatchSpec, attempt: Attempt, now: datetime) -> bool:
        started = attempt.timeline.get("started")
        if started is not None:
            return _seconds(now, started) > spec.timeout_seconds
        if job.status is JobStatus.RUNNING:  # RUNNING but its start time was never reported
            return _seconds(now, attempt.dispatched_at) > spec.timeout_seconds
        return _seconds(now, attempt.dispatched_at) > spec.timeout_seconds + self.settings.start_limit_seconds

    def _time_out(
        self, job: Job, spec: BatchSpec, attempt: Attempt, now: datetime, report: SweepReport
    ) -> None:
        """Stop the attempt's task and end the job, unless `job` (as last read) no longer lets it."""
        number = attempt.number
        if not _may_time_out(job, number):
            return
        reason = timeout_reason(spec.timeout_seconds)
        if "started" not in attempt.timeline:
            reason += f" (not started {_minutes(_seconds(now, attempt.dispatched_at))} after dispatch)"
        if attempt.task_arn is not None and attempt.strategy != WARM:  # a pool task runs other jobs
            try:
                self.ecs.stop_task(attempt.task_arn, reason)
            except Exception as error:  # the task may be gone already; the job must still end
                if is_transient(error):
                    # Throttled or unavailable: the task still runs. The job is left as it is, so that
                    # the next sweep stops the task (ended now, nothing would ever stop it).
                    logger.warning(
                        "StopTask failed; the next sweep tries again",
                        extra={"task_arn": attempt.task_arn, "error": str(error)},
                    )
                    report.errors += 1
                    return
                logger.warning("StopTask failed", extra={"task_arn": attempt.task_arn, "error": str(error)})
        decision = decide(attempt, spec, job_id=job.job_id, failure=reason, timed_out=True)
        status = JobStatus.RETRYING if isinstance(decision, Retry) else JobStatus.TIMED_OUT
        at = iso(now)

        # None when it moved on meanwhile (container stopped, ended, cancelled, next attempt).
        write = self.table.apply(
            job.job_id, lambda current: time_out_attempt(current, number, reason, at, spec)
        )
        if write is None or not write.written or write.after.status is not status:
            return  # moved on, or another sweep timed it out: counted there
        report.timed_out += 1
        report.notes.append(f"{job.job_id}: {decision.reason}")
        logger.warning(
            "job timed out", extra={"job_id": job.job_id, "status": status, "reason": decision.reason}
        )
        if isinstance(decision, Retry):
            self._send(Relaunch(job.job_id, decision.number), decision.delay_seconds)
        else:
            count("JobsTimedOut")

    # WARM attempts.

    def _examine_warm(
        self, job: Job, spec: BatchSpec, attempt: Attempt, now: datetime, report: SweepReport
    ) -> None:
        if attempt.task_arn is None:
            self._expire_lost_offer(job, spec, attempt, now, report)
        elif _may_time_out(job, attempt.number) and self._past_timeout(job, spec, attempt, now):
            self._time_out(job, spec, attempt, now, report)
        else:
            self._check_heartbeat(job, spec, attempt, now, report)

    def _expire_lost_offer(
        self, job: Job, spec: BatchSpec, attempt: Attempt, now: datetime, report: SweepReport
    ) -> None:
        """An offer neither claimed nor checked (its check message lost): expired, next attempt sent."""
        pool = self.catalog.pool_of(spec)
        waited = _seconds(now, attempt.timeline.get(OFFERED, attempt.dispatched_at))
        if waited <= (pool.offer_seconds if pool else 0) + self.settings.warm_offer_grace_seconds:
            return
        reason = (
            f"not picked up by warm pool {attempt.capacity_provider} within {_minutes(waited)} "
            "(its check never came)"
        )
        number = attempt.number
        write = self.table.apply(
            job.job_id, lambda current: expire_warm_offer(current, number, iso(now), reason)
        )
        if write is None or not write.written:
            return
        count("WarmNotPickedUp")
        report.relaunched += 1
        report.notes.append(f"{job.job_id}: {reason}")
        logger.warning("warm offer never checked: expired", extra={"job_id": job.job_id, "reason": reason})
        self._send(Relaunch(job.job_id, number + 1), 0)

    def _check_heartbeat(
        self, job: Job, spec: BatchSpec, attempt: Attempt, now: datetime, report: SweepReport
    ) -> None:
        """A claimed attempt whose pool task no longer answers for it fails WarmTaskStopped (retried)."""
        task_arn = attempt.task_arn
        if self.pools is None or task_arn is None:
            return
        heartbeat = self.pools.get(attempt.capacity_provider, task_arn)
        reason = heartbeat_loss(heartbeat, job.job_id, attempt, now)
        if reason is None:
            return
        number = attempt.number
        write = self.table.apply(
            job.job_id,
            lambda current: pool_task_lost(current, number, task_arn, reason=reason, at=iso(now), spec=spec),
        )
        if write is None or not write.written:
            return
        count("WarmTaskStopped")
        report.reconciled += 1
        report.notes.append(f"{job.job_id}: {reason}")
        logger.warning("warm attempt lost its pool task", extra={"job_id": job.job_id, "reason": reason})
        retry = next_attempt_relaunch(write.after, spec.retry_policy)
        if retry is not None:
            self._send(*retry)

    def _relaunch(self, job: Job, now: datetime, report: SweepReport, why: str) -> None:
        number = awaited_attempt(job)
        if number is None:
            return
        report.stuck += 1
        report.relaunched += 1
        note = f"{why}; relaunch of attempt {number} sent at {iso(now)}"
        report.notes.append(f"{job.job_id}: {note}")
        self._note(job, note)
        self._send(Relaunch(job.job_id, number), 0)

    # Comparing with ECS.

    def _reconcile(self, jobs: list[tuple[Job, Comparison]], now: datetime, report: SweepReport) -> None:
        by_arn = {
            job.attempt.task_arn: (job, comparison)
            for job, comparison in jobs
            if job.attempt and job.attempt.task_arn
        }
        arns = list(by_arn)
        for start in range(0, len(arns), DESCRIBE_BATCH):
            chunk = arns[start : start + DESCRIBE_BATCH]
            described: dict[str, Mapping[str, Any]] | None
            try:
                described = {task["taskArn"]: task for task in self.ecs.describe_tasks(chunk)}
            except (ClientError, BotoCoreError) as error:
                # Jobs past their timeout end now all the same: no job runs forever because ECS
                # could not be read.
                report.errors += 1
                logger.warning("DescribeTasks failed; next sweep tries again", extra={"error": str(error)})
                described = None
            for arn in chunk:
                job, comparison = by_arn[arn]
                task = described.get(arn) if described is not None else None
                try:
                    if comparison is Comparison.OVERDUE:
                        self._overdue(job, task, now, report)
                    elif described is not None:
                        self._reconcile_job(job, task, now, report)
                except Exception as error:
                    report.errors += 1
                    logger.exception("reconcile failed", extra={"job_id": job.job_id, "error": str(error)})

    def _overdue(self, job: Job, task: Mapping[str, Any] | None, now: datetime, report: SweepReport) -> None:
        """A job past its timeout: what ECS says of its task first, so that a task that stopped in
        time (its event missed or not there yet) ends the job by its own result; then the timeout."""
        spec = self.catalog.get(job.batch)
        attempt = job.attempt
        if spec is None or attempt is None:
            return
        if task is not None:
            job = self._apply(job, spec, attempt, task, report)
        self._time_out(job, spec, attempt, now, report)

    def _reconcile_job(
        self, job: Job, task: Mapping[str, Any] | None, now: datetime, report: SweepReport
    ) -> None:
        spec = self.catalog.get(job.batch)
        attempt = job.attempt
        if spec is None or attempt is None:
            return
        idle = _seconds(now, job.updated_at)
        if task is None:
            if idle > self.settings.vanished_after_seconds:
                self._vanished(job, attempt, now, report)
            elif job.status in NOT_STARTED_STATUSES and idle > self.settings.expected_start_seconds:
                report.stuck += 1
                self._note(job, f"{job.status.value} for {_minutes(idle)}: ECS does not know the task (yet)")
            return
        job = self._apply(job, spec, attempt, task, report)
        if job.status in NOT_STARTED_STATUSES:
            since_dispatch = _seconds(now, attempt.dispatched_at)
            if since_dispatch > self.settings.expected_start_seconds:
                report.stuck += 1
                self._note(job, explain_not_started(job.status, task, since_dispatch))

    def _apply(
        self, job: Job, spec: BatchSpec, attempt: Attempt, task: Mapping[str, Any], report: SweepReport
    ) -> Job:
        """Apply what DescribeTasks says of the job's task; the job as stored afterwards (`job` when
        there was nothing to apply)."""
        write = self._apply_described(job, spec, attempt, task)
        if write is None:
            return job
        # Counted and relaunched only by the write that applied it: when track applied the event
        # meanwhile (the job changed since this sweep read it), it counted and sent the retry itself.
        if write.written:
            applied = write.after
            report.reconciled += 1
            report.notes.append(f"{job.job_id}: applied missed {task.get('lastStatus')} from DescribeTasks")
            logger.warning(
                "applied a missed task state", extra={"job_id": job.job_id, "status": applied.status}
            )
            retry = next_attempt_relaunch(applied, spec.retry_policy)
            if retry is not None:
                self._send(*retry)
        return write.after

    def _apply_described(
        self, job: Job, spec: BatchSpec, attempt: Attempt, task: Mapping[str, Any]
    ) -> JobWrite | None:
        described = dict(task)
        if described.get("version") is None:
            # ECS always reports the task's version; without one (an emulator), only a stop is applied.
            if described.get("lastStatus") != "STOPPED":
                return None
            described["version"] = attempt.event_version + 1
        try:
            change = change_from_task(described)
        except InvalidTaskEvent as error:
            logger.warning("unreadable DescribeTasks output", extra={"error": str(error)})
            return None
        return self.table.apply(
            job.job_id, lambda current: apply_task_event(current, change, spec.container, None, spec)
        )

    def _vanished(self, job: Job, attempt: Attempt, now: datetime, report: SweepReport) -> None:
        last_seen = attempt.last_status or job.status.value
        ago = _minutes(_seconds(now, job.updated_at))
        reason = (
            f"task {attempt.task_arn} is no longer known to ECS and its end was never reported "
            f"(last seen {last_seen}, {ago} ago)"
        )

        def change(current: Job) -> Job | None:
            if current.revision != job.revision:
                return None  # an event arrived meanwhile
            noted = current.with_attempt(replace(attempt, note=reason))
            return noted.moved_to(JobStatus.FAILED, iso(now), reason)

        write = self.table.apply(job.job_id, change)
        if write is not None and write.written:
            report.reconciled += 1
            report.notes.append(f"{job.job_id}: {reason}")
            count("JobsFailed")

    # Writes.

    def _note(self, job: Job, note: str) -> None:
        attempt = job.attempt
        if attempt is None:
            return
        number = attempt.number

        def change(current: Job) -> Job | None:
            latest = current.attempt
            if latest is None or latest.number != number or latest.note == note or current.status.is_terminal:
                return None
            return current.with_attempt(replace(latest, note=note))

        self.table.mutate(job.job_id, change)

    def _send(self, relaunch: Relaunch, delay: int) -> None:
        if self.jobs_queue is None:
            logger.error("no jobs queue configured: cannot relaunch", extra={"job_id": relaunch.job_id})
            return
        self.jobs_queue.send_relaunch(relaunch, delay)


def explain_not_started(status: JobStatus, task: Mapping[str, Any], seconds: float) -> str:
    """Why a task is not running yet, from the phases ECS reports for it."""
    last = str(task.get("lastStatus") or status.value)
    if task.get("pullStartedAt") and not task.get("pullStoppedAt"):
        why = "image pull not finished"
    elif task.get("pullStoppedAt"):
        why = "image pulled, container not started yet"
    elif last == "PROVISIONING" or not task.get("connectivityAt"):
        why = "waiting for capacity and the network interface"
    else:
        why = "waiting for the image pull to start"
    if task.get("stoppedReason"):
        why += f" ({task['stoppedReason']})"
    return f"{last} for {_minutes(seconds)}: {why}"


def _seconds(now: datetime, moment: str) -> float:
    try:
        return (now - parse_iso(moment)).total_seconds()
    except ValueError:
        return 0.0


def _minutes(seconds: float) -> str:
    if seconds < 120:
        return f"{int(seconds)} s"
    return f"{int(seconds // 60)} min"
