"""History feed: the job table's stream in, each finished attempt folded into the history table.

An attempt finishes in exactly one write of its job, the one that makes it STOPPED: track's, for the
task's STOPPED event, or the sweep's, for a stop it found with DescribeTasks. The stream record of that
write (old and new image) is where the history learns of it, whoever wrote it, and off the path of the
task events: track writes the job table only.

A batch's records are folded in stream order, and after a record fails the later ones fail unfolded.
Lambda resumes the shard at the first failed record, so a retry folds nothing twice. A failure that no
retry can mend would hold every later job's history back until the retries run out, so what a record's
own data gets wrong never fails it: a timeline time that cannot be read (stored before task events were
checked) leaves the phases it bounds unmeasured, and the rest of the attempt is folded.

Each fold writes the attempt's identity (`fold_key`) into the history item, so a write the SDK sends again
after its response was lost, or an invocation that crashed (timeout, out of memory) and is retried whole,
finds its attempt already folded and does not count it twice. One case stays at least once: an attempt of
the crashed invocation that is no longer its pair's last fold (another attempt of the same batch and
strategy was folded since) counts again.
"""

from collections.abc import Mapping
from typing import Any, NamedTuple

from batchgate.adapters.aws_clients import dynamodb_client
from batchgate.adapters.history_table import HistoryTable
from batchgate.adapters.job_table import KEY_ATTRIBUTE, from_attributes, is_slots_key
from batchgate.adapters.telemetry import count, logger
from batchgate.domain.jobs import NEVER_RAN_STOP_CODES, Attempt, Job
from batchgate.domain.latency_sketch import AttemptObservation, observation_of
from batchgate.services.settings import Settings

FINISHED_STATUSES = ("STOPPED", "DELETED")


class UnreadableJobImage(ValueError):
    """A stream record whose image is not a job: raised, so that the record is retried and then named
    in the history dead-letter queue instead of being skipped unseen."""


class SkippedAfterFailure(RuntimeError):
    """A record after a failed one: reported failed without being folded, so that the retry starting at
    the failed record is the first to fold it."""


def stopped_attempts(before: Job | None, after: Job | None) -> list[Attempt]:
    """The attempts stopped in `after` that were not stopped in `before` (at most one per write)."""
    if after is None:
        return []
    was_stopped = (
        {a.number for a in before.attempts if a.last_status in FINISHED_STATUSES} if before else set()
    )
    return [a for a in after.attempts if a.last_status in FINISHED_STATUSES and a.number not in was_stopped]


class JobChange(NamedTuple):
    """One record of the job table's stream: the job before and after one write."""

    sequence_number: str
    before: Job | None
    after: Job | None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "JobChange":
        """From a record as Lambda delivers it (`dynamodb.OldImage`/`NewImage` in attribute values)."""
        stream = record.get("dynamodb") or {}
        sequence_number = str(stream.get("SequenceNumber") or "")
        key = ((stream.get("Keys") or {}).get(KEY_ATTRIBUTE) or {}).get("S")
        if isinstance(key, str) and is_slots_key(key):
            return cls(sequence_number=sequence_number, before=None, after=None)  # a batch's slots
        try:
            return cls(
                sequence_number=sequence_number,
                before=_job(stream.get("OldImage")),
                after=_job(stream.get("NewImage")),
            )
        except (KeyError, TypeError, ValueError) as error:
            keys = stream.get("Keys")
            raise UnreadableJobImage(
                f"stream record {sequence_number or '?'} (keys {keys}) holds no readable job: {error!r}"
            ) from error

    @property
    def finished(self) -> list[Attempt]:
        return stopped_attempts(self.before, self.after)


def _job(image: Mapping[str, Any] | None) -> Job | None:
    return Job.from_item(from_attributes(dict(image))) if image else None


def fold_key(job: Job, attempt: Attempt) -> str:
    """An attempt's identity in the history: its job and number."""
    return f"{job.job_id}#{attempt.number}"


class HistoryFeed:
    """Folds the finished attempts of job table writes into the history table."""

    def __init__(self, history: HistoryTable) -> None:
        self.history = history

    @classmethod
    def from_settings(cls, settings: Settings) -> "HistoryFeed":
        if not settings.history_table_name:
            raise RuntimeError("missing environment variable: HISTORY_TABLE_NAME")
        return cls(HistoryTable(settings.history_table_name, dynamodb_client()))

    def fold(self, change: JobChange) -> list[AttemptObservation]:
        """Record each attempt this write finished; the observations recorded."""
        job = change.after
        if job is None:
            return []
        # An attempt that never ran (a warm offer no worker claimed) says nothing of its strategy's
        # start or run: counted by the WarmNotPickedUp metric, not folded.
        observations: list[AttemptObservation] = []
        for attempt in change.finished:
            if attempt.stop_code in NEVER_RAN_STOP_CODES:
                continue
            observation = observation_of(attempt, job.submitted_at)
            self.history.record(job.batch, observation, fold_key=fold_key(job, attempt))
            observations.append(observation)
            logger.info(
                "finished attempt folded into the history",
                extra={
                    "job_id": job.job_id,
                    "strategy": observation.strategy,
                    "succeeded": observation.succeeded,
                },
            )
        return observations

    def in_order(self) -> "StreamOrderFold":
        """A record handler for one invocation's batch (a fresh one per invocation)."""
        return StreamOrderFold(self)


class StreamOrderFold:
    """Folds one batch's records in stream order; from the first failure on, every record fails."""

    def __init__(self, feed: HistoryFeed) -> None:
        self._feed = feed
        self._failed_at: str | None = None

    def __call__(self, record: Mapping[str, Any]) -> int:
        """The number of attempts the record's write finished and this folded in."""
        if self._failed_at is not None:
            raise SkippedAfterFailure(f"after the failed record {self._failed_at}")
        try:
            return len(self._feed.fold(JobChange.from_record(record)))
        except Exception:
            self._failed_at = str((record.get("dynamodb") or {}).get("SequenceNumber") or "?")
            logger.exception("could not fold the record into the history; it is retried from there")
            count("HistoryFoldFailed")
            raise
