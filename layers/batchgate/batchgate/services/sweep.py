"""The sweep: a scheduled pass over the jobs that have not ended, so that no job runs forever, waits
forever or is silently lost.

It reads candidates from the `jobs-by-status` index (never a scan), each active status oldest first
(the likeliest past their timeout) and at most `max_jobs_per_status` of them, then those jobs by key.
Only jobs created long enough ago to need anything are read (`quiet_seconds`: every moment the sweep
measures from, a job's last change, its attempt's dispatch or its task's start, comes after its
creation), so a sweep reads by key the jobs that have been around for a while, not every young one.

A run goes in passes: the timeouts first (every job past its timeout, before anything is reconciled),
then the rest. Each pass handles its jobs `concurrency` at a time on a thread pool sharing the clients
(a job from read to write on one thread), and starts work only before the run's deadline (`run_seconds`,
or the invocation's remaining time less `deadline_margin_seconds`): the jobs not reached are left for
the next run and counted (`deferred`, SweepDeferred). README, "How a sweep run is bounded".

For each job:
- timeout: a task running longer than its batch's `timeout_seconds` (or never started long after that)
  is first compared with ECS (DescribeTasks, 100 tasks a call, in the first pass): a task ECS reports
  stopped ends the job by its own result. One still running, unknown to ECS, or whose DescribeTasks
  failed is stopped with the reason "batchgate: exceeded timeout of N s"; the job ends TIMED_OUT unless
  the batch's retry policy retries timeouts. An attempt whose container has already stopped
  (`execution_stopped` in its timeline: the task is deprovisioning) is never timed out: its STOPPED
  decides;
- missed events: a job whose state has not moved for a while is compared with ECS (DescribeTasks, 100
  tasks a call); what ECS knows and the job does not is applied through the same `apply_task_event` as
  the events (a STOPPED it missed ends the job or gives it its next attempt);
- lost launches: a job SUBMITTED or DISPATCHING without a task for too long, or RETRYING long after its
  back-off, gets a relaunch message (dispatch resumes the same attempt with the same clientToken, after
  looking for its task by startedBy). A job whose next launch has a due time (`relaunch_due_at`: a
  retry's back-off, a launch put back on the queue by the governor, throttling or `max_running`) has
  its relaunch message on the way: it is left alone until that time is well past (the grace after it),
  so a long deferral never gets a second chain of relaunch messages;
- stuck jobs: a task PROVISIONING or PENDING far beyond the expected start gets a note ops can read
  ("PENDING for 6 min: image pull not finished") and counts in the StuckJobs metric.

WARM attempts (docs/warm-lane.md) run on a pool task that runs other jobs too: they are never compared
with ECS (DescribeTasks of the pool task says nothing of one job) and their task is never stopped. An
offer that no worker claimed and whose check never came is expired after the pool's `offer_seconds` and
a grace, and the next attempt relaunched; a claimed attempt whose pool task's heartbeat is missing,
stale or no longer lists it fails `WarmTaskStopped` (retried); a WARM attempt past its timeout ends the
job TIMED_OUT, and the worker stops the job's process when it sees that.

Every change goes through `JobTable.mutate`, so the sweep and track never overwrite each other. Its ECS
calls (DescribeTasks, StopTask) go through its share of the launch-rate governor's ECS call rate
(batchgate.services.launch_governor), with dispatch's.
"""

import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from batchgate.adapters.aws_clients import dynamodb_client, ecs_client
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
from batchgate.domain.relaunch import Relaunch, awaited_attempt, next_attempt_relaunch, pending_relaunch_due
from batchgate.domain.retry_policy import Retry, decide
from batchgate.domain.strategy_settings import StrategySettings
from batchgate.domain.task_events import InvalidTaskEvent, apply_task_event
from batchgate.domain.timeouts import TRACKED_STATUSES, time_out_attempt, timeout_reason
from batchgate.domain.timeouts import may_time_out as _may_time_out
from batchgate.domain.warm import OFFERED, WARM, expire_warm_offer, heartbeat_loss, is_warm, pool_task_lost
from batchgate.services.launch_governor import LaunchGovernor
from batchgate.services.run_budget import Deadline, each_before
from batchgate.services.schedule_watch import ScheduleWatch
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


class SweepSettings(NamedTuple):
    """When the sweep takes a job for lost, stuck or past its time, and how long a run lasts."""

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
    # The longest a run starts work for: what is not reached by then waits for the next run (counted in
    # SweepDeferred). Under the template's schedule (1 minute), so that runs do not overlap; the
    # invocation's own remaining time, less the margin, bounds it too.
    run_seconds: float = 50.0
    # Kept back from the invocation's remaining time: work started before the deadline finishes in it.
    deadline_margin_seconds: float = 10.0
    # Jobs (and DescribeTasks calls) handled at once: threads sharing the sweep's clients, each client
    # with as many connections (batchgate.adapters.aws_clients). Each job waits on AWS ~20-40 ms per
    # call for ~2-3 ms of CPU: 16 keep a vCPU busy (bench/sweep_scale.py).
    concurrency: int = 16


DEFAULT_SWEEP_SETTINGS = SweepSettings()


class SweepReport:
    """What one sweep run did, counted."""

    def __init__(self) -> None:
        self.examined = 0
        self.timed_out = 0
        self.reconciled = 0
        self.relaunched = 0
        self.stuck = 0
        self.errors = 0
        # Statuses holding more jobs than the sweep reads per status.
        self.capped = 0
        # Jobs not reached before the run's deadline: left for the next run.
        self.deferred = 0
        self.notes: list[str] = []
        # Metrics counted while handling jobs, published once the run is done (from one thread).
        self.counted: Counter[str] = Counter()

    def count(self, metric: str) -> None:
        self.counted[metric] += 1

    def add(self, other: "SweepReport") -> None:
        """Another report's counts (one job's, handled on its own thread) added to this one."""
        self.examined += other.examined
        self.timed_out += other.timed_out
        self.reconciled += other.reconciled
        self.relaunched += other.relaunched
        self.stuck += other.stuck
        self.errors += other.errors
        self.capped += other.capped
        self.deferred += other.deferred
        self.notes.extend(other.notes)
        self.counted.update(other.counted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "examined": self.examined,
            "timed_out": self.timed_out,
            "reconciled": self.reconciled,
            "relaunched": self.relaunched,
            "stuck": self.stuck,
            "errors": self.errors,
            "capped": self.capped,
            "deferred": self.deferred,
        }


class Described:
    """What one pass's DescribeTasks calls said: the tasks ECS knows, by ARN; the ARNs asked about
    (a call made before the deadline); those whose call failed."""

    def __init__(self) -> None:
        self.tasks: dict[str, Mapping[str, Any]] = {}
        self.asked: set[str] = set()
        self.failed: set[str] = set()


# Wiring, made once per container: neither frozen, compared nor printed, so that making the class
# generates one method (__init__), not six (docs/contracts-internal.md, Cold start).
@dataclass(eq=False, repr=False)
class Sweeper:
    """Enforces timeouts and recovers what events and messages missed."""

    catalog: Catalog
    table: JobTable
    ecs: EcsTasks
    jobs_queue: JobsQueue | None
    settings: SweepSettings = DEFAULT_SWEEP_SETTINGS
    clock: Callable[[], datetime] = utc_now
    # The pools' heartbeats (POOL_TABLE_NAME); without them claimed WARM attempts are only timed out.
    pools: PoolTable | None = None
    # The run's deadline is measured on this clock (`clock` is the jobs' time).
    monotonic: Callable[[], float] = time.monotonic
    # Missed and late scheduled runs (batchgate.services.schedule_watch); None without schedules.
    schedule_watch: ScheduleWatch | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "Sweeper":
        threads = DEFAULT_SWEEP_SETTINGS.concurrency
        # One DynamoDB client for all its tables (jobs, the pools' heartbeats, schedules): a second
        # one costs milliseconds of every cold start.
        dynamodb = dynamodb_client(threads)
        governor = LaunchGovernor.for_settings(
            StrategySettings.from_environment(), settings.dispatch_max_concurrency
        )
        catalog = load_catalog(settings.catalog_path)
        table = JobTable(settings.table_name, dynamodb)
        return cls(
            catalog=catalog,
            table=table,
            ecs=EcsTasks(settings.cluster, ecs_client(threads), pace=governor.pace),
            jobs_queue=JobsQueue(settings.jobs_queue_url) if settings.jobs_queue_url else None,
            pools=PoolTable(settings.pool_table_name, dynamodb) if settings.pool_table_name else None,
            schedule_watch=ScheduleWatch.from_settings(settings, catalog, table, dynamodb),
        )

    def sweep(self, remaining_seconds: float | None = None) -> SweepReport:
        """One run: read the candidates, then the timeouts pass, then the rest (reconciliation, lost
        launches, the warm lane), until the run's deadline (`remaining_seconds`: what the invocation
        has left, Lambda's context says). What is not reached by then is left for the next run and
        counted (`deferred`)."""
        now = self.clock()
        deadline = Deadline.within(self.budget_seconds(remaining_seconds), self.monotonic)
        report = SweepReport()
        with ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="sweep") as pool:
            candidates = self._read_candidates(pool, now, report)
            report.examined = len(candidates)
            overdue = self._overdue_jobs(candidates, now, report)
            self._timeouts_pass(pool, overdue, now, deadline, report)
            ended_first = {job.job_id for job in overdue}
            rest = [job for job in candidates if job.job_id not in ended_first]
            self._reconcile_pass(pool, rest, now, deadline, report)
        # After the jobs: a few reads per schedule, and never ahead of a timeout.
        if self.schedule_watch is not None and not deadline.passed():
            self.schedule_watch.check(now)  # counts and logs its own findings and errors
        if report.deferred:
            logger.warning(
                "the sweep's time ran out: the jobs not reached wait for the next run",
                extra={"deferred": report.deferred},
            )
        for name, value in report.counted.items():
            count(name, value)
        count("StuckJobs", report.stuck)
        count("SweepTimedOut", report.timed_out)
        count("SweepReconciled", report.reconciled)
        count("SweepRelaunched", report.relaunched)
        count("SweepCapped", report.capped)
        count("SweepDeferred", report.deferred)
        if report.errors:
            count("SweepErrors", report.errors)
        logger.info("sweep done", extra=report.to_dict())
        return report

    def budget_seconds(self, remaining_seconds: float | None) -> float:
        """How long this run starts work for: `run_seconds`, less when the invocation has less left
        than that and the margin."""
        budget = self.settings.run_seconds
        if remaining_seconds is not None:
            budget = min(budget, remaining_seconds - self.settings.deadline_margin_seconds)
        return max(budget, 0.0)

    # The passes.

    def _read_candidates(self, pool: Executor, now: datetime, report: SweepReport) -> list[Job]:
        """The jobs old enough to need anything, each status oldest first, the statuses read at once;
        bounded by `max_jobs_per_status`, not by the deadline."""
        candidates: list[Job] = []
        read = pool.map(lambda status: self._read_status(status, now), ACTIVE_STATUSES)
        for status, (jobs, capped) in zip(ACTIVE_STATUSES, read, strict=True):
            candidates.extend(jobs)
            if capped:
                report.capped += 1
                logger.warning(
                    "more jobs in a status than the sweep reads: newer ones wait for later runs",
                    extra={"status": status.value, "read": self.settings.max_jobs_per_status},
                )
        return candidates

    def _read_status(self, status: JobStatus, now: datetime) -> tuple[list[Job], bool]:
        """Up to `max_jobs_per_status` jobs of `status`, oldest first; whether it holds more."""
        created_by = iso(now - timedelta(seconds=self.quiet_seconds(status)))
        jobs: list[Job] = []
        for job in self.table.iterate(status=status.value, until=created_by, limit=100, oldest_first=True):
            if len(jobs) >= self.settings.max_jobs_per_status:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _overdue_jobs(self, candidates: list[Job], now: datetime, report: SweepReport) -> list[Job]:
        overdue = []
        for job in candidates:
            try:
                if self._past_its_timeout(job, now):
                    overdue.append(job)
            except Exception as error:  # one bad job must not stop the sweep of the others
                report.errors += 1
                logger.exception("sweep of a job failed", extra={"job_id": job.job_id, "error": str(error)})
        return overdue

    def _timeouts_pass(
        self, pool: Executor, overdue: list[Job], now: datetime, deadline: Deadline, report: SweepReport
    ) -> None:
        """First: every job past its timeout, before anything else is reconciled. An ECS task is
        described first (a task that stopped in time ends the job by its own result), 100 a call."""
        compared = [job for job in overdue if _compared_with_ecs(job)]
        described = self._describe(pool, compared, deadline, report)
        reached = [job for job in overdue if not _compared_with_ecs(job) or _task_arn(job) in described.asked]
        report.deferred += len(overdue) - len(reached)

        def enforce(job: Job, report: SweepReport) -> None:
            spec, attempt = self.catalog.get(job.batch), job.attempt
            if spec is None or attempt is None:
                return
            if _compared_with_ecs(job):
                self._overdue(job, described.tasks.get(_task_arn(job)), now, report)
            else:
                self._time_out(job, spec, attempt, now, report)

        self._each_job(pool, reached, enforce, deadline, report)

    def _reconcile_pass(
        self, pool: Executor, jobs: list[Job], now: datetime, deadline: Deadline, report: SweepReport
    ) -> None:
        """Then the rest: what needs no ECS call (lost launches and retries, the warm lane), then the
        jobs whose state has not moved for a while, compared with ECS."""
        examined = self._each_job(
            pool, jobs, lambda job, report: self._examine(job, now, report), deadline, report
        )
        stale = [job for job, comparison in examined if comparison is Comparison.STALE]
        described = self._describe(pool, stale, deadline, report)
        answered = [job for job in stale if _task_arn(job) in described.asked]
        report.deferred += len(stale) - len(answered)
        reconciled = [job for job in answered if _task_arn(job) not in described.failed]

        def reconcile(job: Job, report: SweepReport) -> None:
            self._reconcile_job(job, described.tasks.get(_task_arn(job)), now, report)

        self._each_job(pool, reconciled, reconcile, deadline, report)

    def _each_job[ResultT](
        self,
        pool: Executor,
        jobs: list[Job],
        work: Callable[[Job, SweepReport], ResultT],
        deadline: Deadline,
        report: SweepReport,
    ) -> list[tuple[Job, ResultT | None]]:
        """`work` for each job at once (bounded by the pool), each with its own report, added to
        `report` here, on one thread; a job not started before the deadline is counted deferred."""

        def guarded(job: Job) -> tuple[ResultT | None, SweepReport]:
            own = SweepReport()
            try:
                return work(job, own), own
            except Exception as error:  # one bad job must not stop the sweep of the others
                own.errors += 1
                logger.exception("sweep of a job failed", extra={"job_id": job.job_id, "error": str(error)})
                return None, own

        done = each_before(pool, jobs, guarded, deadline)
        report.deferred += len(done.not_started)
        for _, (_, own) in done.ran:
            report.add(own)
        return [(job, result) for job, (result, _) in done.ran]

    def _describe(
        self, pool: Executor, jobs: list[Job], deadline: Deadline, report: SweepReport
    ) -> Described:
        """DescribeTasks of the jobs' tasks, 100 a call, the calls at once, each before the deadline."""
        arns = list(dict.fromkeys(_task_arn(job) for job in jobs))
        chunks = [arns[start : start + DESCRIBE_BATCH] for start in range(0, len(arns), DESCRIBE_BATCH)]

        def describe(chunk: list[str]) -> list[dict[str, Any]] | None:
            try:
                return self.ecs.describe_tasks(chunk)
            except (ClientError, BotoCoreError) as error:
                logger.warning("DescribeTasks failed; next sweep tries again", extra={"error": str(error)})
                return None

        described = Described()
        for chunk, tasks in each_before(pool, chunks, describe, deadline).ran:
            described.asked.update(chunk)
            if tasks is None:
                # Jobs past their timeout end all the same: no job runs forever because ECS could
                # not be read.
                report.errors += 1
                described.failed.update(chunk)
            else:
                described.tasks.update((task["taskArn"], task) for task in tasks)
        return described

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
            grace = self.settings.launch_grace_seconds
            if (
                awaited_attempt(job) is not None
                and idle > grace
                and not self._relaunch_pending(job, now, grace)
            ):
                self._relaunch(
                    job, now, report, f"{job.status.value} for {_minutes(idle)}: launch did not finish"
                )
            return None
        if job.status is JobStatus.RETRYING:
            grace = self.settings.retry_grace_seconds
            # Without a recorded due time (items written before it was kept): the longest back-off.
            lost = (
                not self._relaunch_pending(job, now, grace)
                if pending_relaunch_due(job) is not None
                else idle > MAX_DELAY_SECONDS + grace
            )
            if lost:
                self._relaunch(job, now, report, f"RETRYING for {_minutes(idle)}: retry message lost")
            return None
        attempt = job.attempt
        if spec is None or attempt is None or job.status not in TRACKED_STATUSES:
            return None
        if is_warm(job):
            self._examine_warm(job, spec, attempt, now, report)
            return None
        if idle > self.settings.event_grace_seconds and attempt.task_arn is not None:
            return Comparison.STALE
        return None

    @staticmethod
    def _relaunch_pending(job: Job, now: datetime, grace: float) -> bool:
        """The launch `job` waits for has a relaunch message on the way: its due time (plus `grace`
        for a busy queue) is not past."""
        due = pending_relaunch_due(job)
        return due is not None and (now - due).total_seconds() <= grace

    def _past_its_timeout(self, job: Job, now: datetime) -> bool:
        """The job's attempt may be timed out and is past its batch's timeout: the first pass ends it.
        A warm offer no worker claimed is not: the warm lane expires it (`_expire_lost_offer`)."""
        spec, attempt = self.catalog.get(job.batch), job.attempt
        if spec is None or attempt is None or job.status not in TRACKED_STATUSES:
            return False
        if is_warm(job) and attempt.task_arn is None:
            return False
        return _may_time_out(job, attempt.number) and self._past_timeout(job, spec, attempt, now)

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
        # `job` was just read (by key, or as written): a stale one only costs a failed conditional write.
        write = self.table.apply(
            job.job_id, lambda current: time_out_attempt(current, number, reason, at, spec), read=job
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
            report.count("JobsTimedOut")

    # WARM attempts.

    def _examine_warm(
        self, job: Job, spec: BatchSpec, attempt: Attempt, now: datetime, report: SweepReport
    ) -> None:
        # Past its timeout, a claimed attempt was ended by the first pass.
        if attempt.task_arn is None:
            self._expire_lost_offer(job, spec, attempt, now, report)
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
            job.job_id, lambda current: expire_warm_offer(current, number, iso(now), reason), read=job
        )
        if write is None or not write.written:
            return
        report.count("WarmNotPickedUp")
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
            read=job,
        )
        if write is None or not write.written:
            return
        report.count("WarmTaskStopped")
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
            job.job_id,
            lambda current: apply_task_event(current, change, spec.container, None, spec),
            read=job,
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
            noted = current.with_attempt(attempt._replace(note=reason))
            return noted.moved_to(JobStatus.FAILED, iso(now), reason)

        write = self.table.apply(job.job_id, change, read=job)
        if write is not None and write.written:
            report.reconciled += 1
            report.notes.append(f"{job.job_id}: {reason}")
            report.count("JobsFailed")

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
            return current.with_attempt(latest._replace(note=note))

        self.table.mutate(job.job_id, change, read=job)

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


def _compared_with_ecs(job: Job) -> bool:
    """A job whose task ECS describes: an ECS attempt with a task (a pool task says nothing of one
    WARM attempt)."""
    return job.attempt is not None and job.attempt.task_arn is not None and not is_warm(job)


def _task_arn(job: Job) -> str:
    return job.attempt.task_arn or "" if job.attempt is not None else ""
