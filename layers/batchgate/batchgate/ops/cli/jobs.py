"""`batchgate jobs` (a page of jobs by status, batch and time) and `batchgate show` (one job)."""

from __future__ import annotations

import click

from batchgate.domain.jobs import JobStatus
from batchgate.domain.retry_policy import DEFAULT_POLICY, RetryPolicy
from batchgate.ops import job_views
from batchgate.ops.cli.context import app
from batchgate.ops.cli.exits import UNSUCCESSFUL, ExitCode
from batchgate.ops.cli.options import (
    CONTEXT_SETTINGS,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    batch_value,
    job_selector,
    json_option,
    known_batch,
    parse_time,
    reveal_environment_option,
    select_job,
    status_values,
    tenant_option,
)
from batchgate.ops.cli.render.jobs import job_page_document, render_job, render_job_page
from batchgate.ops.cli.render.text import print_json
from batchgate.ops.cli.target import target_options
from batchgate.ops.job_search import JobFilter, JobSearch, SearchPage
from batchgate.ops.pool_status import warm_heartbeats


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    callback=status_values,
    metavar="STATUS[,STATUS...]",
    help="Only these statuses (repeatable, or a comma list; not-ok: FAILED, TIMED_OUT, REJECTED, CANCELLED).",
)
@click.option("--batch", callback=batch_value, help="Only this batch.")
@tenant_option
@click.option("--since", help="Queued at or after: 2h, 30m, 7d, or an ISO date/time (UTC).")
@click.option("--until", help="Queued at or before: same forms as --since.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=DEFAULT_LIMIT, show_default=True)
@click.option("--next", "next_token", help="Continue from the token printed by the previous page.")
@click.option(
    "--all", "every_page", is_flag=True, help="Follow --next to the end: every job (--limit: per query)."
)
@json_option
@target_options(hidden=True)
@click.pass_context
def jobs(
    ctx: click.Context,
    *,
    statuses: tuple[JobStatus, ...],
    batch: str | None,
    tenant: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    next_token: str | None,
    every_page: bool,
    as_json: bool,
) -> None:
    """List jobs newest first, by status, batch, tenant and time (read from the table's indexes, never a
    scan)."""
    known_batch(ctx, batch)
    state = app(ctx)
    job_filter = JobFilter(
        statuses=statuses,
        batch=batch,
        since=parse_time(ctx, "--since", since),
        until=parse_time(ctx, "--until", until),
        tenant=tenant,
    )
    search = JobSearch(state.table())
    page = search.page(job_filter, limit=limit, token=next_token)
    while every_page and page.next_token is not None:
        following = search.page(job_filter, limit=limit, token=page.next_token)
        page = SearchPage(jobs=[*page.jobs, *following.jobs], next_token=following.next_token)
    now = state.clock()
    rows = [job_views.job_row(job, now) for job in page.jobs]
    if as_json:
        print_json(job_page_document(rows, page))
        return
    render_job_page(state.console, page, rows, job_filter)


def retry_policy_of(batch: str) -> RetryPolicy:
    """The batch's retry policy in the catalog ($BATCHGATE_CATALOG or the packaged one), to name the rule
    behind each further attempt; the defaults when the catalog cannot be read or lacks the batch."""
    from batchgate.domain.catalog import CatalogError, load_catalog

    try:
        spec = load_catalog().get(batch)
    except CatalogError:
        return DEFAULT_POLICY
    return spec.retry_policy if spec is not None else DEFAULT_POLICY


@click.command(context_settings=CONTEXT_SETTINGS)
@job_selector
@reveal_environment_option
@json_option
@target_options(hidden=True)
@click.pass_context
def show(
    ctx: click.Context,
    *,
    job_id: str | None,
    batch: str | None,
    idempotency_key: str | None,
    at: str | None,
    reveal_environment: bool,
    as_json: bool,
) -> None:
    """Everything about one job: what happened, why, every attempt's timeline, and where its logs are.
    Environment values are masked (`***`), in the raw messages too, unless --reveal-env.

    Exits 1 when the job is not found or ended without success (FAILED, TIMED_OUT, REJECTED, CANCELLED).
    """
    state = app(ctx)
    job = select_job(ctx, job_id, batch, idempotency_key, at)
    region = state.session.region
    now = state.clock()
    heartbeats = warm_heartbeats(state.session, job)
    policy = retry_policy_of(job.batch)
    if as_json:
        document = job_views.job_document(
            job, region, now, heartbeats, policy=policy, reveal_environment=reveal_environment
        )
        print_json(document)
    else:
        render_job(
            state.console, job, region, now, heartbeats, policy=policy, reveal_environment=reveal_environment
        )
    if job.status in UNSUCCESSFUL:
        ctx.exit(ExitCode.FAILED)
