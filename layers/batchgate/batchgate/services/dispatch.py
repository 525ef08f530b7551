"""Dispatch: one submit message in, one job item and at most one ECS task per attempt out.

The order of writes is what makes redelivery safe: the job item is created conditionally, the attempt
(with its plan and clientToken) is written before RunTask, and RunTask itself is idempotent per
clientToken. A message delivered twice, or redelivered after a crash at any point, finds the job and
either does nothing or repeats the same RunTask, which returns the task already started.

A WARM attempt (docs/warm-lane.md) is offered instead of launched: its check message goes to the jobs
queue, delayed by the pool's `offer_seconds`, then the offer to the pool's work queue, then the offer is
recorded. A redelivery of an attempt whose offer was not recorded sends both again (a worker claims an
attempt once, whatever the number of offers). When the check finds the attempt unclaimed it expires it
(`check_warm`) and the next attempt is launched on ECS at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from batchgate.adapters.aws_clients import dynamodb_client, ecs_client
from batchgate.adapters.batch_slots import BatchSlotTable, SlotsChanged
from batchgate.adapters.ecs import EcsTasks, LaunchOutcome, PermanentLaunchError, RetryableLaunchError
from batchgate.adapters.history_table import HistoryTable
from batchgate.adapters.job_table import JobTable
from batchgate.adapters.jobs_queue import JobsQueue
from batchgate.adapters.pool_queues import PoolQueues, UnknownPoolQueue
from batchgate.adapters.telemetry import count, logger
from batchgate.adapters.write_conflicts import tries_after_conflicts
from batchgate.domain.batch_slots import waiting_note
from batchgate.domain.catalog import BatchSpec, Catalog, load_catalog
from batchgate.domain.corrections import corrected, is_message_of, replaces_rejection
from batchgate.domain.jobs import (
    Attempt,
    Job,
    JobStatus,
    LaunchPlan,
    attempt_environment,
    client_token,
    iso,
    iso_of_epoch_millis,
    job_id_for,
    parse_iso,
    stored_text,
    utc_now,
)
from batchgate.domain.latency_sketch import HistorySummary
from batchgate.domain.launch_chain import advance_try, has_next_try, note_try_failure
from batchgate.domain.masking import masked_message
from batchgate.domain.messages import RejectedMessage, SubmitMessage, parse_submit_message, printable
from batchgate.domain.pools import WarmSlots
from batchgate.domain.relaunch import Relaunch, awaited_attempt, early_relaunch_due
from batchgate.domain.strategy import plan_launch
from batchgate.domain.strategy_settings import DEFAULT_STRATEGY_SETTINGS, EC2, StrategySettings
from batchgate.domain.warm import (
    NOT_PICKED_UP,
    WARM,
    WorkOffer,
    expire_warm_offer,
    offer_warm,
)
from batchgate.services.launch_deferral import LaunchDeferral
from batchgate.services.launch_governor import LaunchGovernor
from batchgate.services.settings import Settings

if TYPE_CHECKING:
    # Made by from_settings only when configured: an EC2 capacity provider, a pool table.
    from batchgate.adapters.ec2_capacity import CapacitySnapshot, Ec2Capacity
    from batchgate.services.warm_advice import WarmAdvice

# What is kept of a rejected message for ops to read, environment values masked (domain.masking).
RAW_MESSAGE_LIMIT = 2048
BATCH_ATTRIBUTE_LIMIT = 64
# Reads and conditional writes of a batch's slots before the launch is put back on the queue instead.
SLOT_TRIES = 4
UNKNOWN_BATCH = "-"


class DispatchResult(StrEnum):
    DISPATCHED = "DISPATCHED"
    DUPLICATE = "DUPLICATE"
    REJECTED = "REJECTED"
    FAILED = "FAILED"
    # Throttled: put back on the queue as a delayed relaunch of the same attempt
    # (batchgate.services.launch_deferral).
    DEFERRED = "DEFERRED"


class RetryLater(Exception):
    """The record must go back to the queue: the job is safe and the same attempt is tried again.

    `resume`: ECS (or our own launch-rate governor) said "slow down" while launching this attempt; the
    dispatcher puts it back on the queue as this relaunch message instead, delayed by a back-off of at
    least `delay_seconds`, when it has a jobs queue (`Dispatcher.deferral`)."""

    def __init__(
        self,
        reason: str,
        *,
        resume: Relaunch | None = None,
        delay_seconds: float = 0.0,
        max_delay_seconds: float | None = None,
        note: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.resume = resume
        self.delay_seconds = delay_seconds
        # The back-off's cap when not the throttling one, and what the attempt shows ops meanwhile.
        self.max_delay_seconds = max_delay_seconds
        self.note = note

    @property
    def throttled(self) -> bool:
        return self.resume is not None


# RunTask errors that mean "too many requests": the record comes back later, with a back-off.
THROTTLING_MARKERS = ("Throttling", "TooManyRequests", "RequestLimitExceeded", "Rate exceeded")


def is_throttling(reason: str) -> bool:
    return any(marker in reason for marker in THROTTLING_MARKERS)


# Wiring, made once per container: neither frozen, compared nor printed, so that making the class
# generates one method (__init__), not six (docs/contracts-internal.md, Cold start).
@dataclass(eq=False, repr=False)
class Dispatcher:
    """Turns the jobs queue's messages into jobs and their launches."""

    catalog: Catalog
    table: JobTable
    ecs: EcsTasks
    settings: Settings
    clock: Callable[[], datetime] = utc_now
    # The launch strategy engine's inputs (docs/strategy.md); each is optional: without history the plan
    # uses cold-start defaults, without capacity EC2 is tried and falls back, without a governor RunTask
    # is not rate-limited here.
    history: HistoryTable | None = None
    capacity: Ec2Capacity | None = None
    governor: LaunchGovernor | None = None
    strategy_settings: StrategySettings = DEFAULT_STRATEGY_SETTINGS
    # Where a throttled launch is put back (the jobs queue); without it the record itself goes back.
    deferral: LaunchDeferral | None = None
    # The slots of batches with a `max_running`; without them no batch is limited here.
    slots: BatchSlotTable | None = None
    # The warm lane: the pools' free slots, their work queues, and the jobs queue for the offers'
    # checks. Without all three no job is planned WARM.
    warm_advice: WarmAdvice | None = None
    pool_queues: PoolQueues | None = None
    jobs_queue: JobsQueue | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Dispatcher:
        tuning = StrategySettings.from_environment()
        # One of each, shared by the adapters and by the dispatch threads.
        threads = settings.dispatch_concurrency
        dynamodb, ecs = dynamodb_client(threads), ecs_client(threads)
        governor = LaunchGovernor.for_settings(tuning, settings.dispatch_max_concurrency)
        jobs_queue = JobsQueue(queue) if (queue := settings.jobs_queue_url) else None
        capacity = warm_advice = None
        if settings.ec2_capacity_provider:
            from batchgate.adapters.ec2_capacity import Ec2Capacity

            capacity = Ec2Capacity(
                settings.cluster,
                settings.ec2_capacity_provider,
                ecs,
                ttl_seconds=tuning.capacity_cache_seconds,
            )
        if table := settings.pool_table_name:
            from batchgate.adapters.pool_table import PoolTable
            from batchgate.services.warm_advice import WarmAdvice

            warm_advice = WarmAdvice(PoolTable(table, dynamodb))
        return cls(
            catalog=load_catalog(settings.catalog_path, schedules=False),
            table=JobTable(settings.table_name, dynamodb),
            ecs=EcsTasks(settings.cluster, ecs, pace=governor.pace),
            settings=settings,
            history=(
                HistoryTable(
                    settings.history_table_name, dynamodb, cache_seconds=tuning.history_cache_seconds
                )
                if settings.history_table_name
                else None
            ),
            capacity=capacity,
            governor=governor,
            strategy_settings=tuning,
            deferral=LaunchDeferral(jobs_queue, tuning) if jobs_queue is not None else None,
            slots=BatchSlotTable(settings.table_name, dynamodb),
            warm_advice=warm_advice,
            pool_queues=PoolQueues(settings.pool_queue_urls) if settings.pool_queue_urls else None,
            jobs_queue=jobs_queue,
        )

    def dispatch(self, message_id: str, body: str, sent_timestamp: str | None = None) -> DispatchResult:
        """Handle one submit message; `sent_timestamp` is its SQS SentTimestamp (epoch milliseconds), kept
        as the job's submitted_at by the delivery that creates the job. Raises RetryLater when the record
        must be redelivered."""
        now = self.clock()
        submitted_at = iso_of_epoch_millis(sent_timestamp)
        try:
            message = parse_submit_message(body, self.catalog)
        except RejectedMessage as rejected:
            return self._reject(message_id, body, rejected, now, submitted_at)

        spec = self.catalog.get(message.batch)
        if spec is None:  # parse_submit_message already refuses unknown batches
            raise AssertionError(f"batch {message.batch} vanished from the catalog")
        job_id = job_id_for(message.batch, message.idempotency_key or message_id)
        logger.thread_safe_append_keys(job_id=job_id, batch=message.batch)

        submitted = self._new_job(job_id, message_id, message, now, submitted_at)
        job = self.table.create(submitted)
        if job is not None:
            count("JobsSubmitted")
        else:
            job = self.table.get(job_id)
            if job is not None and replaces_rejection(job, message_id):
                job = self._correct(job, submitted)
                if job is None:
                    return DispatchResult.DUPLICATE
            elif job is None or not _awaits_launch(job):
                logger.info("duplicate delivery: job already exists", extra={"message_id": message_id})
                return DispatchResult.DUPLICATE
            else:
                logger.info("resuming a launch that did not finish", extra={"status": job.status})

        if job.status is JobStatus.SUBMITTED and _deadline_passed(job, now):
            return self._reject_late(job, now)
        return self._launching(job, spec, now)

    def _correct(self, rejected: Job, submitted: Job) -> Job | None:
        """The REJECTED job made anew by a valid message with its key (batchgate.domain.corrections);
        None when another correction did it first: the write succeeds only while the job is REJECTED, so
        concurrent corrections launch once."""
        write = self.table.apply(rejected.job_id, lambda j: corrected(j, submitted), read=rejected)
        if write is None or not write.written:
            logger.info(
                "another message made the rejected job anew", extra={"message_id": submitted.message_id}
            )
            return None
        count("JobsSubmitted")
        count("RejectedJobsCorrected")
        logger.info("a valid message makes the rejected job anew", extra={"rejected": rejected.message_id})
        return write.after

    def relaunch(self, body: str) -> DispatchResult:
        """Handle an internal relaunch message (batchgate.domain.relaunch): start the job's next attempt
        after a retryable failure, or resume a launch that was lost or put back. Acts only while the job
        still waits for exactly that attempt and its launch is due (`relaunch_due_at`), so duplicates,
        late, early or forged messages change nothing; the deferral count is the attempt's, never the
        message's. Raises InvalidRelaunchMessage for a body batchgate did not write (the record ends in
        the DLQ)."""
        now = self.clock()
        relaunch = Relaunch.parse(body)
        logger.thread_safe_append_keys(job_id=relaunch.job_id, attempt=relaunch.attempt)
        job = self.table.get(relaunch.job_id)
        if job is None or awaited_attempt(job) != relaunch.attempt:
            status = job.status if job else None
            logger.info("relaunch not awaited: nothing to do", extra={"status": status})
            return DispatchResult.DUPLICATE
        due = early_relaunch_due(job, now)
        if due is not None:
            # A forged message, or a duplicate of one sent before the latest deferral: the relaunch
            # sent for this due time comes later.
            logger.warning(
                "relaunch before its launch is due: ignored",
                extra={"due": iso(due), "message_deferrals": relaunch.deferrals},
            )
            count("RelaunchesEarly")
            return DispatchResult.DUPLICATE
        return self._resume(job, now)

    def check_warm(self, body: str) -> DispatchResult:
        """Handle dispatch's own check of a warm offer (batchgate-kind=warm-check, body WorkOffer): an
        attempt still unclaimed ends "not picked up" and the next attempt is launched at once (planned
        on ECS: plan_launch never plans WARM after a WARM stop code). When the worker claimed it first,
        or the job moved on, nothing. A repeated check, after an expiry whose launch did not finish,
        launches it. Raises InvalidWorkOffer for a body batchgate did not write."""
        now = self.clock()
        offer = WorkOffer.parse(body)
        logger.thread_safe_append_keys(job_id=offer.job_id, attempt=offer.attempt)
        job = self.table.get(offer.job_id)
        if job is None:
            logger.warning("warm check for an unknown job")
            return DispatchResult.DUPLICATE
        reason = self._not_picked_up_reason(job, offer.attempt)
        write = self.table.apply(
            job.job_id, lambda j: expire_warm_offer(j, offer.attempt, iso(now), reason), read=job
        )
        if write is None:
            return DispatchResult.DUPLICATE
        if write.written:
            count("WarmNotPickedUp")
            logger.info("warm offer not picked up: next attempt on ECS", extra={"reason": reason})
        after = write.after
        expired = after.attempt_by_number(offer.attempt)
        expired_here = expired is not None and expired.stop_code == NOT_PICKED_UP
        if not expired_here or awaited_attempt(after) != offer.attempt + 1:
            logger.info(
                "warm offer claimed, or the job moved on: nothing to do", extra={"status": after.status}
            )
            return DispatchResult.DUPLICATE
        return self._resume(after, now)

    def _not_picked_up_reason(self, job: Job, number: int) -> str:
        attempt = job.attempt_by_number(number)
        spec = self.catalog.get(job.batch)
        pool = self.catalog.pool_of(spec) if spec is not None else None
        name = attempt.capacity_provider if attempt is not None else "?"
        within = f" within {pool.offer_seconds} s" if pool is not None else ""
        return f"not picked up by warm pool {name}{within}"

    def _resume(self, job: Job, now: datetime) -> DispatchResult:
        """Launch the attempt `job` awaits (checked by the caller)."""
        spec = self.catalog.get(job.batch)
        if spec is None:
            reason = f"batch {job.batch} is no longer in the catalog"
            self.table.mutate(job.job_id, lambda j: j.moved_to(JobStatus.FAILED, iso(now), reason))
            count("JobsFailed")
            return DispatchResult.FAILED
        return self._launching(job, spec, now)

    def _reject_late(self, job: Job, now: datetime) -> DispatchResult:
        """A SUBMITTED job whose deadline passed before its launch began ends REJECTED. Only while it is
        still SUBMITTED: a concurrent delivery may have begun the launch meanwhile, and a job with a
        task must never end without it."""
        reason = _deadline_reason(job)

        def reject(current: Job) -> Job | None:
            if current.status is not JobStatus.SUBMITTED:
                return None
            return current.moved_to(JobStatus.REJECTED, iso(now), reason)

        stored = self.table.mutate(job.job_id, reject, read=job)
        if stored is None or stored.status is not JobStatus.REJECTED:
            logger.info("another delivery began the launch", extra={"status": stored and stored.status})
            return DispatchResult.DUPLICATE
        count("JobsRejected")
        return DispatchResult.REJECTED

    def _launching(self, job: Job, spec: BatchSpec, now: datetime) -> DispatchResult:
        """`_launch`, with a launch that must wait put back on the queue, its deferral recorded on the
        attempt (counted from what `job` says of the attempt it awaits)."""
        awaited = awaited_attempt(job)
        current = job.attempt_by_number(awaited) if awaited is not None else None
        seen = current.deferrals if current is not None else 0
        try:
            return self._launch(job, spec, now)
        except RetryLater as retry:
            if retry.resume is None or self.deferral is None:
                raise  # the record itself goes back to the queue
            deferral = self.deferral.defer(
                self.table,
                retry.resume,
                seen,
                now,
                at_least=retry.delay_seconds,
                cap=retry.max_delay_seconds,
                note=retry.note,
            )
            if deferral is None:
                raise
            return DispatchResult.DEFERRED if deferral.sent else DispatchResult.DUPLICATE

    def _launch(self, job: Job, spec: BatchSpec, now: datetime) -> DispatchResult:
        attempt = job.attempt
        resumed = attempt is not None and job.status not in (JobStatus.SUBMITTED, JobStatus.RETRYING)
        if attempt is None or not resumed:
            # A retry is planned knowing the previous attempt (a Spot interruption moves it on-demand).
            plan = plan_launch(
                spec,
                preference=job.strategy_preference,
                ec2_capacity_provider=self.settings.ec2_capacity_provider,
                previous_stop_code=attempt.stop_code if attempt else None,
                priority=job.priority,
                history=self._history(spec),
                capacity=self._capacity(spec, job),
                settings=self.strategy_settings,
                warm=self._warm(spec),
                scheduled=job.scheduled_time is not None,
            )
            number = job.attempt_number + 1
            # The job was just created or read: no second read before the conditional write.
            stored = self.table.mutate(
                job.job_id, lambda j: begin_attempt(j, plan, iso(now), number), read=job
            )
            if stored is None:
                raise RetryLater(f"job {job.job_id} could not be read back")
            began = stored.attempt
            if began is None or began.number != number or stored.status is not JobStatus.DISPATCHING:
                logger.info("another delivery began this attempt", extra={"status": stored.status})
                return DispatchResult.DUPLICATE
            job, attempt = stored, began
        # Every attempt launched holds one of its batch's `max_running` slots, a WARM one too.
        self._hold_slot(job, spec, attempt)
        if resumed and attempt.strategy != WARM:  # a WARM attempt has no task of its own to look for
            # A resumed launch: an earlier delivery may have started the task and crashed before
            # recording it. Find it by startedBy (and its BATCHGATE_ATTEMPT) instead of relying on
            # RunTask's clientToken alone, which ECS only honours for a while. Admitted by the
            # governor first: a launch it puts back costs no ECS call.
            self._admit(attempt, Relaunch(job.job_id, attempt.number))
            found = self._started_task(job, attempt)
            if found is not None:
                logger.info("found the task of a resumed launch", extra={"task_arn": found})
                return self._record_outcome(job, attempt, LaunchOutcome(task_arn=found), now)
            return self._run_task(job, spec, attempt, now, admitted=True)
        # A resumed attempt reuses its stored plan: RunTask with the same clientToken and other
        # parameters would be refused as a conflict.
        if attempt.strategy == WARM:
            return self._offer(job, spec, attempt, now)
        return self._run_task(job, spec, attempt, now)

    def _warm(self, spec: BatchSpec) -> WarmSlots | None:
        """The free slots of the batch's pool; None (planned without the pool) when the batch has no
        pool, the warm lane is not configured here, or the heartbeats cannot be read."""
        pool = self.catalog.pool_of(spec)
        if pool is None or self.warm_advice is None or self.pool_queues is None or self.jobs_queue is None:
            return None
        try:
            return self.warm_advice.slots(pool, spec.name, self.clock())
        except (ClientError, BotoCoreError, KeyError, TypeError, ValueError) as error:
            logger.warning(
                "pool heartbeats unreadable: planned without the pool", extra={"error": str(error)}
            )
            count("WarmAdviceUnavailable")
            return None

    def _offer(self, job: Job, spec: BatchSpec, attempt: Attempt, now: datetime) -> DispatchResult:
        """Offer the WARM attempt to its pool: the check first (an offer that went out always has its
        check coming), then the offer, then its record (DISPATCHED). When either message cannot be
        sent, the attempt moves to the plan's next strategy in this dispatch."""
        pool = self.catalog.pool_of(spec)
        offer = WorkOffer(job.job_id, attempt.number)
        try:
            if pool is None or pool.name != attempt.capacity_provider:
                raise UnknownPoolQueue(f"batch {spec.name} no longer names pool {attempt.capacity_provider}")
            if self.pool_queues is None or self.jobs_queue is None:
                raise UnknownPoolQueue("the warm lane is not configured here")
            self.jobs_queue.send_warm_check(offer, pool.offer_seconds)
            self.pool_queues.send_offer(pool.name, offer)
        except (ClientError, BotoCoreError, UnknownPoolQueue) as error:
            return self._offer_not_sent(job, spec, attempt, str(error), now)
        if self.warm_advice is not None:
            self.warm_advice.offered(pool.name)
        number = attempt.number
        self.table.mutate(job.job_id, lambda j: offer_warm(j, number, iso(now)), read=job)
        count("WarmOffers")
        logger.info("offered to the warm pool", extra={"pool": pool.name, "check_in": pool.offer_seconds})
        return DispatchResult.DISPATCHED

    def _offer_not_sent(
        self, job: Job, spec: BatchSpec, attempt: Attempt, error: str, now: datetime
    ) -> DispatchResult:
        """The next strategy of the plan's chain for the same attempt, at once (never RunTask with the
        pool as capacity provider)."""
        failure = f"warm offer to pool {attempt.capacity_provider} not sent: {error}"
        pool_failure = {"arn": attempt.capacity_provider, "reason": failure}
        outcome = LaunchOutcome(task_arn=None, failures=(pool_failure,))
        number, from_try = attempt.number, attempt.launch_try
        provider = self.settings.ec2_capacity_provider
        logger.warning("warm offer not sent: falling back", extra={"error": error})
        count("WarmOfferFailures")
        stored = self.table.mutate(
            job.job_id, lambda j: advance_try(j, number, from_try, outcome, provider, failure=failure)
        )
        current = stored.attempt_by_number(number) if stored is not None else None
        if stored is None or current is None or current.launch_try <= from_try or current.strategy == WARM:
            raise RetryLater(failure)  # moved on meanwhile, or no next strategy: the record goes back
        if current.task_arn is not None:
            return DispatchResult.DUPLICATE
        count("LaunchFallbacks")
        return self._run_task(stored, spec, current, now)

    def _run_task(
        self, job: Job, spec: BatchSpec, attempt: Attempt, now: datetime, *, admitted: bool = False
    ) -> DispatchResult:
        """One RunTask try of the attempt (its current strategy and token), behind the governor (unless
        the caller was `admitted` already)."""
        if attempt.strategy == WARM:  # the pool's name is no capacity provider
            raise AssertionError(f"RunTask for the WARM try of {job.job_id} attempt {attempt.number}")
        resume = Relaunch(job.job_id, attempt.number)
        if not admitted:
            self._admit(attempt, resume)
        request = run_task_request(job, spec, attempt, self.settings)
        try:
            outcome = self.ecs.run_task(request)
        except RetryableLaunchError as error:
            retry_reason = error.reason
            self.table.mutate(job.job_id, lambda j: note_attempt_error(j, attempt.number, retry_reason))
            raise RetryLater(retry_reason, resume=resume if is_throttling(retry_reason) else None) from error
        except PermanentLaunchError as error:
            fail_reason = error.reason
            self.table.mutate(job.job_id, lambda j: fail_attempt(j, attempt.number, fail_reason, iso(now)))
            count("JobsFailed")
            return DispatchResult.FAILED
        return self._record_outcome(job, attempt, outcome, now)

    def _hold_slot(self, job: Job, spec: BatchSpec, attempt: Attempt) -> None:
        """Take a slot of the batch's `max_running` for the attempt (batchgate.domain.batch_slots), freeing
        those of jobs no longer running when it is full; raises RetryLater (the launch waits, put back on
        the queue) when every slot is held."""
        limit = spec.max_running
        if limit is None or self.slots is None:
            return
        resume = Relaunch(job.job_id, attempt.number)
        for _ in tries_after_conflicts(SLOT_TRIES):
            slots = self.slots.get(spec.name)
            taken = slots.taken_by(job.job_id, attempt.number, limit)
            if taken is None:
                holders = {held.job_id: held for held in self.table.get_many(list(slots.holders))}
                slots = slots.freed(holders)
                taken = slots.taken_by(job.job_id, attempt.number, limit)
            if taken is None:
                note = waiting_note(len(slots.holders), limit)
                count("LaunchesWaiting")
                logger.info("batch at its max_running: the launch waits", extra={"note": note})
                raise RetryLater(
                    note,
                    resume=resume,
                    note=note,
                    max_delay_seconds=self.strategy_settings.max_running_wait_seconds,
                )
            if taken is slots:
                return  # held already (a resumed launch)
            try:
                self.slots.save(taken)
                return
            except SlotsChanged:
                continue
        raise RetryLater(f"the slots of batch {spec.name} kept changing", resume=resume)

    def _admit(self, attempt: Attempt, resume: Relaunch) -> None:
        if self.governor is None:
            return
        admission = self.governor.admit(attempt.strategy)
        if not admission.admitted:
            count("LaunchesDeferred")
            raise RetryLater(
                f"launch rate limit: next {attempt.strategy} launch in {admission.retry_after:.1f} s",
                resume=resume,
                delay_seconds=admission.retry_after,
            )

    def _history(self, spec: BatchSpec) -> Mapping[str, HistorySummary]:
        if self.history is None:
            return {}
        try:
            return self.history.summaries(spec.name)
        except (ClientError, BotoCoreError) as error:
            logger.warning("history unavailable: planning with defaults", extra={"error": str(error)})
            return {}

    def _capacity(self, spec: BatchSpec, job: Job) -> CapacitySnapshot | None:
        wants_ec2 = EC2 in spec.launch_class.strategies or job.strategy_preference == EC2
        if self.capacity is None or not wants_ec2:
            return None
        try:
            return self.capacity.snapshot()
        except (ClientError, BotoCoreError) as error:
            logger.warning("EC2 capacity unknown: EC2 is tried first", extra={"error": str(error)})
            return None

    def _fall_back(self, job: Job, attempt: Attempt, outcome: LaunchOutcome, now: datetime) -> DispatchResult:
        """No capacity for this try: the next strategy of the plan's chain, in this dispatch; the record
        goes back to the queue only when the chain is exhausted."""
        summary = outcome.failure_summary()
        spec = self.catalog.get(job.batch)
        number, from_try = attempt.number, attempt.launch_try
        provider = self.settings.ec2_capacity_provider
        if spec is not None and has_next_try(job, attempt):
            stored = self.table.mutate(
                job.job_id, lambda j: advance_try(j, number, from_try, outcome, provider)
            )
            current = stored.attempt_by_number(number) if stored is not None else None
            if stored is not None and current is not None and current.task_arn is not None:
                return DispatchResult.DUPLICATE  # another delivery recorded the task meanwhile
            if stored is not None and current is not None and current.launch_try > from_try:
                logger.info(
                    "no capacity: falling back",
                    extra={"from": attempt.strategy, "to": current.strategy, "failures": summary},
                )
                count("LaunchFallbacks")
                return self._run_task(stored, spec, current, now)
        error = f"RunTask failures: {summary}"
        self.table.mutate(job.job_id, lambda j: note_try_failure(j, number, from_try, outcome, error))
        raise RetryLater(f"RunTask reported no capacity: {summary}")

    def _record_outcome(
        self, job: Job, attempt: Attempt, outcome: LaunchOutcome, now: datetime
    ) -> DispatchResult:
        if outcome.task_arn is not None:
            task_arn = outcome.task_arn
            # `job` is as this dispatch last wrote or read it; a task event written since only costs
            # a failed conditional write and a re-read.
            recorded = self.table.mutate(
                job.job_id,
                lambda j: record_task(j, attempt.number, task_arn, outcome, iso(now)),
                read=job,
            )
            recorded_attempt = recorded.attempt_by_number(attempt.number) if recorded is not None else None
            kept = recorded_attempt.task_arn if recorded_attempt is not None else None
            if kept is not None and kept != task_arn:
                return self._stop_second_task(job, attempt, task_arn, kept)
            if recorded is not None and recorded.status is JobStatus.CANCELLED:
                # Cancelled while it launched: rare, so its module is not loaded at init.
                from batchgate.services.cancel import stop_cancelled_task

                stop_cancelled_task(self.ecs, recorded, task_arn)
            logger.info("task started", extra={"task_arn": task_arn, "strategy": attempt.strategy})
            count("JobsDispatched")
            return DispatchResult.DISPATCHED
        # No task in the response. The same clientToken is reused on redelivery, so if a task did
        # start after all, ECS hands it back instead of starting another.
        summary = outcome.failure_summary()
        if outcome.failures_are_transient:
            return self._fall_back(job, attempt, outcome, now)
        self.table.mutate(
            job.job_id,
            lambda j: fail_attempt(j, attempt.number, f"RunTask failures: {summary}", iso(now), outcome),
        )
        count("JobsFailed")
        return DispatchResult.FAILED

    def _stop_second_task(self, job: Job, attempt: Attempt, task_arn: str, kept: str) -> DispatchResult:
        """Another delivery recorded a different task for this attempt (concurrent deliveries on
        different tries of its fallback chain): one attempt keeps one task, the one recorded first."""
        reason = f"batchgate: attempt {attempt.number} of {job.job_id} already runs as task {kept}"
        logger.error(
            "a second task started for one attempt: stopping it", extra={"task_arn": task_arn, "kept": kept}
        )
        count("SecondTasksStopped")
        try:
            self.ecs.stop_task(task_arn, reason)
        except (ClientError, BotoCoreError) as error:
            # Returning the record repeats this: the same token gives back the same task to stop.
            raise RetryLater(f"could not stop the second task {task_arn}: {error}") from error
        return DispatchResult.DUPLICATE

    def _started_task(self, job: Job, attempt: Attempt) -> str | None:
        # Only a resumed launch looks for its task: rare, so its module is not loaded at init.
        from batchgate.domain.described_tasks import task_attempt

        try:
            tasks = self.ecs.tasks_started_by(job.job_id)
        except (ClientError, BotoCoreError) as error:
            raise RetryLater(f"could not list the tasks of {job.job_id}: {error}") from error
        return next((t["taskArn"] for t in tasks if task_attempt(t) == attempt.number), None)

    def _new_job(
        self,
        job_id: str,
        message_id: str,
        message: SubmitMessage,
        now: datetime,
        submitted_at: str | None = None,
    ) -> Job:
        return Job(
            job_id=job_id,
            batch=message.batch,
            status=JobStatus.SUBMITTED,
            created_at=iso(now),
            updated_at=iso(now),
            expires_at=self._expiry(now),
            message_id=message_id,
            arguments=message.arguments,
            environment=dict(message.environment),
            idempotency_key=message.idempotency_key,
            priority=message.priority,
            deadline=iso(message.deadline) if message.deadline else None,
            strategy_preference=message.strategy,
            submitted_at=submitted_at,
            schedule=message.schedule.name if message.schedule else None,
            scheduled_time=iso(message.schedule.scheduled_time) if message.schedule else None,
            tenant=message.tenant,
        )

    def _reject(
        self,
        message_id: str,
        body: str,
        rejected: RejectedMessage,
        now: datetime,
        submitted_at: str | None = None,
    ) -> DispatchResult:
        batch = (rejected.batch or UNKNOWN_BATCH)[:BATCH_ATTRIBUTE_LIMIT]
        job_id = job_id_for(batch, rejected.idempotency_key or message_id)
        logger.thread_safe_append_keys(job_id=job_id, batch=batch)
        job = Job(
            job_id=job_id,
            batch=batch,
            status=JobStatus.REJECTED,
            created_at=iso(now),
            updated_at=iso(now),
            expires_at=self._expiry(now),
            message_id=message_id,
            idempotency_key=rejected.idempotency_key,
            arguments=rejected.arguments,
            reason=stored_text(rejected.reason),
            raw_message=printable(masked_message(body)[:RAW_MESSAGE_LIMIT]),
            submitted_at=submitted_at,
            tenant=rejected.tenant,
        )
        stored = self.table.create(job)
        if stored is None and rejected.idempotency_key:
            existing = self.table.get(job_id)
            if existing is not None and not is_message_of(existing, message_id):
                # The key belongs to another message's job: record this one under its own message id,
                # so that it stays visible without touching that job.
                job = job._replace(
                    job_id=job_id_for(batch, message_id),
                    reason=stored_text(
                        f"{rejected.reason} (idempotency key already used by job {existing.job_id})"
                    ),
                )
                stored = self.table.create(job)
        if stored is not None:
            count("JobsRejected")
        logger.warning("message rejected", extra={"reason": job.reason, "message_id": message_id})
        return DispatchResult.REJECTED

    def _expiry(self, now: datetime) -> int:
        return int((now + timedelta(days=self.settings.job_retention_days)).timestamp())


def _awaits_launch(job: Job) -> bool:
    """A job whose earlier delivery stopped before its task was recorded."""
    if job.status is JobStatus.SUBMITTED:
        return True
    attempt = job.attempt
    return job.status is JobStatus.DISPATCHING and attempt is not None and attempt.task_arn is None


def _deadline_passed(job: Job, now: datetime) -> bool:
    # The stored job's deadline: a later message with the same idempotency key is the same job.
    return job.deadline is not None and now > parse_iso(job.deadline)


def _deadline_reason(job: Job) -> str:
    return f"deadline {job.deadline or '?'} passed before the job could be dispatched"


# Pure transitions, applied through JobTable.mutate so that concurrent writers are never overwritten.


def begin_attempt(job: Job, plan: LaunchPlan, at: str, number: int | None = None) -> Job | None:
    """The job with a new attempt, DISPATCHING: the first one (SUBMITTED) or the next one after a
    retryable failure (RETRYING). With `number`, only if that is the attempt the job waits for."""
    if job.status not in (JobStatus.SUBMITTED, JobStatus.RETRYING):
        return None
    if number is not None and number != job.attempt_number + 1:
        return None
    attempt = Attempt(
        number=job.attempt_number + 1,
        strategy=plan.strategy,
        capacity_provider=plan.capacity_provider,
        dispatched_at=at,
    )
    # Ordering is per attempt: the new attempt starts again at DISPATCHING.
    moved = job.moved_to(JobStatus.DISPATCHING, at, attempt=attempt.number)
    return moved._replace(plan=plan, attempts=(*job.attempts, attempt))


def record_task(job: Job, number: int, task_arn: str, outcome: LaunchOutcome, at: str) -> Job | None:
    attempt = job.attempt_by_number(number)
    if attempt is None or attempt.task_arn not in (None, task_arn):
        return None  # never replaces the task another delivery recorded (dispatch stops this one)
    # A note (waiting for a slot, a lost launch) described a state that is over.
    updated = attempt._replace(task_arn=task_arn, launch_failures=outcome.failures, error=None, note=None)
    # Task events may have moved the job past DISPATCHED already; moved_to never goes back.
    return job.with_attempt(updated).moved_to(JobStatus.DISPATCHED, at)


def note_attempt_error(job: Job, number: int, error: str, outcome: LaunchOutcome | None = None) -> Job | None:
    attempt = job.attempt_by_number(number)
    if attempt is None or attempt.task_arn is not None:
        return None
    failures = outcome.failures if outcome else attempt.launch_failures
    return job.with_attempt(attempt._replace(error=stored_text(error), launch_failures=failures))


def fail_attempt(
    job: Job, number: int, reason: str, at: str, outcome: LaunchOutcome | None = None
) -> Job | None:
    attempt = job.attempt_by_number(number)
    if attempt is None or attempt.task_arn is not None:
        return None
    failures = outcome.failures if outcome else attempt.launch_failures
    failed = job.with_attempt(attempt._replace(error=stored_text(reason), launch_failures=failures))
    return failed.moved_to(JobStatus.FAILED, at, reason)


def run_task_request(job: Job, spec: BatchSpec, attempt: Attempt, settings: Settings) -> dict[str, Any]:
    """The RunTask parameters of one attempt: the catalog decides the task; the message only fills in
    arguments and allowed environment variables."""
    environment = [
        {"name": name, "value": value} for name, value in attempt_environment(job, attempt.number).items()
    ]
    request: dict[str, Any] = {
        "cluster": settings.cluster,
        "taskDefinition": spec.task_definition,
        "count": 1,
        "startedBy": job.job_id,
        "clientToken": client_token(job.job_id, attempt.number, attempt.launch_try),
        "capacityProviderStrategy": [{"capacityProvider": attempt.capacity_provider, "weight": 1}],
        "overrides": {
            "cpu": str(spec.cpu),
            "memory": str(spec.memory),
            "containerOverrides": [
                {
                    "name": spec.container,
                    "command": [*spec.command, *job.arguments],
                    "environment": environment,
                }
            ],
        },
        "tags": [
            {"key": "batchgate:job-id", "value": job.job_id},
            {"key": "batchgate:batch", "value": job.batch},
            {"key": "batchgate:attempt", "value": str(attempt.number)},
        ],
        "enableECSManagedTags": True,
    }
    if settings.subnets:
        request["networkConfiguration"] = {
            "awsvpcConfiguration": {
                "subnets": list(settings.subnets),
                "securityGroups": list(settings.security_groups),
                "assignPublicIp": settings.assign_public_ip,
            }
        }
    return request
