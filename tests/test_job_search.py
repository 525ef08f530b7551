"""job_search: newest-first pages merged across index partitions, tokens, and the query budget."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from batchgate.adapters.job_table import JobTable
from batchgate.domain.jobs import JobStatus
from batchgate.ops.job_search import InvalidToken, JobFilter, JobSearch

from tests.cli_support import listed_job
from tests.conftest import Stack


class CountingTable(JobTable):
    """The real adapter, counting its queries."""

    def __init__(self, table: JobTable) -> None:
        super().__init__(table.table_name, table._client)
        self.queries: list[dict[str, Any]] = []

    def query(self, **criteria: Any) -> Any:
        self.queries.append(criteria)
        return super().query(**criteria)


def fill(stack: Stack, count: int) -> list[str]:
    """`count` jobs queued one minute apart, cycling through three statuses; ids newest first."""
    statuses = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.RUNNING]
    for number in range(1, count + 1):
        assert stack.table.create(listed_job(number, statuses[number % 3])) is not None
    return [listed_job(number).job_id for number in range(1, count + 1)]


def test_pages_merge_all_statuses_newest_first(stack: Stack) -> None:
    expected = fill(stack, 7)
    search = JobSearch(stack.table)
    first = search.page(JobFilter(), limit=3)
    assert [job.job_id for job in first.jobs] == expected[:3]
    second = search.page(JobFilter(), limit=3, token=first.next_token)
    third = search.page(JobFilter(), limit=3, token=second.next_token)
    assert [job.job_id for job in second.jobs + third.jobs] == expected[3:]
    assert third.next_token is None
    assert [job.job_id for job in search.iterate(JobFilter(), page_size=2)] == expected


def test_last_full_page_has_no_token(stack: Stack) -> None:
    fill(stack, 6)
    page = JobSearch(stack.table).page(JobFilter(statuses=(JobStatus.FAILED,)), limit=2)
    assert len(page.jobs) == 2 and page.next_token is None  # jobs 1 and 4 are the only FAILED ones


def test_a_page_that_spends_its_query_budget_still_continues(stack: Stack) -> None:
    # Every job FAILED; jobs 1, 4 and 7 of payroll-calculation, the others of report-export.
    for number in range(1, 9):
        batch = "payroll-calculation" if number % 3 == 1 else "report-export"
        assert stack.table.create(listed_job(number, JobStatus.FAILED, batch=batch)) is not None
    expected = [listed_job(number).job_id for number in (1, 4, 7)]
    table = CountingTable(stack.table)
    only_failed = JobFilter(statuses=(JobStatus.FAILED,), batch="payroll-calculation")
    # The FAILED partition is read one job per query, the index's batch filtering out the others, and
    # a page may spend two queries: a page that meets two other batches' jobs in a row ends empty, with
    # a token that continues after them.
    search = JobSearch(table, query_budget=2)
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        page = search.page(only_failed, limit=1, token=token)
        pages.append([job.job_id for job in page.jobs])
        token = page.next_token
        if token is None:
            break
    assert [job_id for page_ids in pages for job_id in page_ids] == expected
    assert [] in pages
    assert all(
        query == {**query, "status": "FAILED", "batch": "payroll-calculation", "limit": 1}
        for query in table.queries
    )


def test_a_status_named_twice_is_read_once(stack: Stack) -> None:
    expected = fill(stack, 6)  # FAILED: jobs 1 and 4
    table = CountingTable(stack.table)
    twice = JobFilter(statuses=(JobStatus.FAILED, JobStatus.RUNNING, JobStatus.FAILED))
    assert twice.statuses == (JobStatus.FAILED, JobStatus.RUNNING)
    page = JobSearch(table).page(twice, limit=10)
    assert [job.job_id for job in page.jobs] == [expected[n - 1] for n in (1, 2, 4, 5)]
    assert sorted(query["status"] for query in table.queries) == ["FAILED", "RUNNING"]


def test_each_reads_every_job_once_newest_first(stack: Stack) -> None:
    expected = fill(stack, 9)
    table = CountingTable(stack.table)
    jobs = list(JobSearch(table).each(JobFilter(), page_size=100))
    assert [job.job_id for job in jobs] == expected  # merged across the status partitions
    assert len(table.queries) == len(JobStatus)  # one query per status partition


def test_each_stopped_early_has_the_newest_jobs_of_every_status(stack: Stack) -> None:
    expected = fill(stack, 9)
    table = CountingTable(stack.table)
    first = list(itertools.islice(JobSearch(table).each(JobFilter(), page_size=2), 4))
    assert [job.job_id for job in first] == expected[:4]
    assert {job.status for job in first} == {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.RUNNING}
    # The merge reads a page of each partition as it needs it, not every partition to its end.
    assert len(table.queries) < len(JobStatus) + 3


def test_tokens_are_checked(stack: Stack) -> None:
    fill(stack, 4)
    search = JobSearch(stack.table)
    token = search.page(JobFilter(batch="payroll-calculation"), limit=1).next_token
    assert token is not None
    with pytest.raises(InvalidToken, match="other filters"):
        search.page(JobFilter(batch="report-export"), limit=1, token=token)
    with pytest.raises(InvalidToken, match="damaged"):
        search.page(JobFilter(batch="payroll-calculation"), limit=1, token=token[:-6])
    with pytest.raises(ValueError, match="at least 1"):
        search.page(JobFilter(), limit=0)


def test_the_token_keeps_the_first_pages_time_window(stack: Stack) -> None:
    expected = fill(stack, 6)
    search = JobSearch(stack.table)
    window = JobFilter(since="2026-11-28T11:54:30.000Z")  # jobs 1..5
    first = search.page(window, limit=3)
    # A later page computed "--since" again (a relative time moved on): the token's window still applies.
    moved = JobFilter(since="2026-11-28T11:58:30.000Z")
    rest = search.page(moved, limit=3, token=first.next_token)
    assert [job.job_id for job in first.jobs + rest.jobs] == expected[:5]
