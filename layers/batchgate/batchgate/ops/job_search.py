"""Finding jobs newest first by status, batch and time, one page at a time, through the table's indexes.

The table answers one status or one batch per query. A search over several statuses (or over all of
them, when no filter is given) queries each status's partition of the `jobs-by-status` index and merges
the results newest first; a search by batch *and* status reads those statuses' partitions and keeps the
batch's jobs there (the index holds each job's batch, so the other batches' jobs are never read by key);
a search by batch alone reads the `jobs-by-batch` index. A search by tenant reads the tenant's partition
of the `jobs-by-tenant` index (of one batch only with a batch too: the index holds each job's batch),
and keeps the jobs of the statuses asked for, if any. The table is never scanned.

A page's continuation token is opaque to the caller: it holds, for every partition still holding jobs,
the index key of the last job taken from it (a DynamoDB ExclusiveStartKey), and the filter it belongs to.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, TypedDict

from batchgate.adapters.job_table import (
    BATCH_INDEX,
    INDEXES,
    KEY_ATTRIBUTE,
    SORT_ATTRIBUTE,
    STATUS_INDEX,
    TENANT_INDEX,
    JobTable,
)
from batchgate.domain.jobs import Job, JobStatus, parse_iso

# 2: a batch + status search continues per status partition (1 continued in the batch's partition).
TOKEN_VERSION = 2
# DynamoDB queries one page of the CLI may cost when a filter skips many jobs (batch + status).
DEFAULT_QUERY_BUDGET = 50


class InvalidToken(ValueError):
    """A continuation token that is damaged or belongs to another filter."""


@dataclass(frozen=True)
class JobFilter:
    statuses: tuple[JobStatus, ...] = ()
    batch: str | None = None
    since: str | None = None  # ISO 8601 UTC, compared with created_at
    until: str | None = None
    tenant: str | None = None

    def __post_init__(self) -> None:
        # A status named twice ("failed" and "FAILED") is one partition: read it once.
        object.__setattr__(self, "statuses", tuple(dict.fromkeys(self.statuses)))

    def fingerprint(self) -> list[Any]:
        """What a continuation token must match. The time window is not part of it: the token carries
        the window of its first page, so that "--since 2h" means the same on every page."""
        fingerprint: list[Any] = [sorted(status.value for status in self.statuses), self.batch]
        # Only with a tenant: tokens of searches without one stay valid.
        return [*fingerprint, self.tenant] if self.tenant is not None else fingerprint


@dataclass(frozen=True)
class SearchPage:
    jobs: list[Job]
    next_token: str | None


class _Criteria(TypedDict, total=False):
    """The index key (and batch filter) of a `JobTable.query`, typed so that it cannot be taken for
    another argument."""

    status: str
    batch: str
    tenant: str


@dataclass(frozen=True)
class _Partition:
    """One partition of one index (of one batch only, for a status partition with `batch`)."""

    key: str
    index: str
    value: str
    batch: str | None = None  # only this batch's jobs of a status or tenant partition

    def criteria(self) -> _Criteria:
        if self.index == BATCH_INDEX:
            return {"batch": self.value}
        if self.index == TENANT_INDEX:
            return {"tenant": self.value, "batch": self.batch} if self.batch else {"tenant": self.value}
        if self.batch is not None:
            return {"status": self.value, "batch": self.batch}
        return {"status": self.value}

    def start_key(self, job: Job) -> dict[str, Any]:
        """The ExclusiveStartKey that continues right after `job`."""
        return self.start_key_at(job.job_id, job.created_at)

    def start_key_at(self, job_id: str, created_at: str) -> dict[str, Any]:
        hash_name, range_name = INDEXES[self.index]
        return {KEY_ATTRIBUTE: {"S": job_id}, hash_name: {"S": self.value}, range_name: {"S": created_at}}


def partitions_for(job_filter: JobFilter) -> list[_Partition]:
    statuses = job_filter.statuses
    if job_filter.tenant is not None:
        # One partition whatever the statuses: they are kept as the jobs are read (_Stream).
        return [_Partition(f"tenant:{job_filter.tenant}", TENANT_INDEX, job_filter.tenant, job_filter.batch)]
    if job_filter.batch is not None and not statuses:
        return [_Partition(f"batch:{job_filter.batch}", BATCH_INDEX, job_filter.batch)]
    chosen = statuses or tuple(JobStatus)
    return [
        _Partition(f"status:{status.value}", STATUS_INDEX, status.value, batch=job_filter.batch)
        for status in chosen
    ]


class _Stream:
    """The jobs of one partition, newest first, read from the table a page at a time."""

    def __init__(
        self, table: JobTable, partition: _Partition, job_filter: JobFilter, start: dict[str, Any] | None
    ) -> None:
        self.table = table
        self.partition = partition
        self.job_filter = job_filter
        self.cursor = start  # continues after the last job taken
        self._next_query = start
        self._buffer: deque[Job] = deque()
        self._exhausted = False

    def head(self, page_size: int, budget: list[int]) -> Job | None:
        while not self._buffer and not self._exhausted:
            if budget[0] <= 0:
                raise _BudgetSpent
            budget[0] -= 1
            page = self.table.query(
                **self.partition.criteria(),
                since=self.job_filter.since,
                until=self.job_filter.until,
                limit=page_size,
                next_token=self._next_query,
            )
            kept = page.jobs
            if self.partition.index == TENANT_INDEX and self.job_filter.statuses:
                kept = [job for job in page.jobs if job.status in self.job_filter.statuses]
            self._buffer.extend(kept)
            self._next_query = page.next_token
            self._exhausted = page.next_token is None
            if not kept and page.next_token is not None:
                # Every entry read was left out (another batch's job, or one that left the status):
                # a token continues after them, not at the last job taken before them.
                self.cursor = page.next_token
        return self._buffer[0] if self._buffer else None

    def take(self) -> Job:
        job = self._buffer.popleft()
        self.cursor = self.partition.start_key(job)
        return job

    @property
    def done(self) -> bool:
        return self._exhausted and not self._buffer


class _BudgetSpent(Exception):
    pass


def _newest(job: Job) -> tuple[str, str]:
    return (job.created_at, job.job_id)


class JobSearch:
    def __init__(self, table: JobTable, query_budget: int = DEFAULT_QUERY_BUDGET) -> None:
        self.table = table
        self.query_budget = query_budget

    def page(self, job_filter: JobFilter, limit: int = 25, token: str | None = None) -> SearchPage:
        """Up to `limit` jobs newest first, and the token of the next page (None when there is none).

        A page can hold fewer than `limit` jobs while a token is still returned when a batch + status
        search had to skip many jobs; the next page continues where it stopped."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        partitions = partitions_for(job_filter)
        if token:
            starts, job_filter = _decode(token, job_filter)
        else:
            starts = {partition.key: None for partition in partitions}
        streams = [
            _Stream(self.table, partition, job_filter, starts[partition.key])
            for partition in partitions
            if partition.key in starts
        ]
        budget = [self.query_budget]
        jobs: list[Job] = []
        complete = True
        try:
            while len(jobs) < limit:
                heads = [(stream, stream.head(limit, budget)) for stream in streams]
                live = [(stream, job) for stream, job in heads if job is not None]
                if not live:
                    break
                newest, _ = max(live, key=lambda pair: _newest(pair[1]))
                jobs.append(newest.take())
            for stream in streams:  # look ahead so that the last page does not promise more
                stream.head(limit, budget)
        except _BudgetSpent:
            complete = False
        remaining = {stream.partition.key: stream.cursor for stream in streams if not stream.done}
        if complete and not remaining:
            return SearchPage(jobs=jobs, next_token=None)
        return SearchPage(jobs=jobs, next_token=_encode(remaining, job_filter))

    def iterate(self, job_filter: JobFilter, page_size: int = 100) -> Iterator[Job]:
        """Every job of the filter, newest first."""
        token: str | None = None
        while True:
            page = self.page(job_filter, page_size, token)
            yield from page.jobs
            token = page.next_token
            if token is None:
                return

    def each(self, job_filter: JobFilter, page_size: int = 500) -> Iterator[Job]:
        """Every job of the filter, newest first across the partitions, each read once in pages of
        `page_size` (no budget, no token): for aggregates. A caller that stops early has the newest
        jobs of every status, not all of one status and none of the next."""
        streams = [self._kept(partition, job_filter, page_size) for partition in partitions_for(job_filter)]
        yield from heapq.merge(*streams, key=_newest, reverse=True)

    def _kept(self, partition: _Partition, job_filter: JobFilter, page_size: int) -> Iterator[Job]:
        """The partition's jobs, newest first."""
        statuses = job_filter.statuses if partition.index == TENANT_INDEX else ()
        for job in self.table.iterate(
            **partition.criteria(), since=job_filter.since, until=job_filter.until, limit=page_size
        ):
            if not statuses or job.status in statuses:
                yield job

    def newest(self, job_filter: JobFilter, max_jobs: int) -> tuple[list[Job], str | None]:
        """The newest `max_jobs` jobs of the filter (of every status), and, when older ones were left
        out, a note that says which."""
        selected: list[Job] = []
        for job in self.each(job_filter):
            if len(selected) >= max_jobs:
                return selected, (
                    f"only the newest {max_jobs} jobs (--max-jobs), queued {selected[-1].created_at} or "
                    f"later: older jobs of the window, queued {job.created_at} or earlier, are left out"
                )
            selected.append(job)
        return selected, None


def _encode(starts: dict[str, dict[str, Any] | None], job_filter: JobFilter) -> str:
    """Compact: per partition only the last job's id and created_at (the partition key names the index
    value), zlib-compressed (job ids share long prefixes), URL-safe base64."""
    positions = {
        key: None if start is None else [start[KEY_ATTRIBUTE]["S"], start[SORT_ATTRIBUTE]["S"]]
        for key, start in starts.items()
    }
    document = {
        "v": TOKEN_VERSION,
        "f": job_filter.fingerprint(),
        "w": [job_filter.since, job_filter.until],
        "p": positions,
    }
    raw = zlib.compress(json.dumps(document, separators=(",", ":"), sort_keys=True).encode(), 9)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(token: str, job_filter: JobFilter) -> tuple[dict[str, dict[str, Any] | None], JobFilter]:
    """The partitions' start keys, and the filter with the token's time window."""
    damaged = "the --next token is damaged; copy it again from the previous page"
    try:
        raw = zlib.decompress(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        document = json.loads(raw)
    except (binascii.Error, zlib.error, ValueError) as error:
        raise InvalidToken(damaged) from error
    if not isinstance(document, dict) or document.get("v") != TOKEN_VERSION or "p" not in document:
        raise InvalidToken("the --next token is not one this version of batchgate wrote")
    if document.get("f") != job_filter.fingerprint():
        raise InvalidToken("the --next token belongs to a search with other filters; repeat those filters")
    positions, window = document["p"], document.get("w")
    if not isinstance(positions, dict) or not isinstance(window, list) or len(window) != 2:
        raise InvalidToken(damaged)
    partitions = {partition.key: partition for partition in partitions_for(job_filter)}
    starts: dict[str, dict[str, Any] | None] = {}
    for key, position in positions.items():
        partition = partitions.get(key)
        if partition is None or not (position is None or (isinstance(position, list) and len(position) == 2)):
            raise InvalidToken(damaged)
        starts[key] = None if position is None else partition.start_key_at(str(position[0]), str(position[1]))
    return starts, replace(job_filter, since=window[0], until=window[1])


def nearest_of_tenant(table: JobTable, tenant: str, batch: str, at: str) -> Job | None:
    """The job of `tenant` and `batch` queued nearest to `at` (ISO UTC), before or after it (the earlier
    one on a tie); None when the tenant has no job of the batch. Two reads of the tenant's partition of
    `jobs-by-tenant`, one each way from `at`, filtered by the batch the index holds."""
    criteria: dict[str, Any] = {"tenant": tenant, "batch": batch, "limit": 25}
    before = next(table.iterate(**criteria, until=at), None)
    after = next(table.iterate(**criteria, since=at, oldest_first=True), None)
    if before is None or after is None:
        return before or after
    moment = parse_iso(at)
    gap_before = (moment - parse_iso(before.created_at)).total_seconds()
    gap_after = (parse_iso(after.created_at) - moment).total_seconds()
    return before if gap_before <= gap_after else after
