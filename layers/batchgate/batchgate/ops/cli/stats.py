"""`batchgate stats`: per batch and strategy, how the window's jobs went and what they cost."""

from __future__ import annotations

import click

from batchgate.domain.pricing import price_is_listed
from batchgate.ops.cli.context import app
from batchgate.ops.cli.exits import ConfigError
from batchgate.ops.cli.options import (
    CONTEXT_SETTINGS,
    batch_value,
    json_option,
    known_batch,
    parse_time,
    tenant_option,
)
from batchgate.ops.cli.render.stats import render_stats, stats_document
from batchgate.ops.cli.render.text import print_json
from batchgate.ops.cli.target import target_options
from batchgate.ops.job_search import JobFilter, JobSearch
from batchgate.ops.stats import catalog_sizes, summarize


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--batch", callback=batch_value, help="Only this batch.")
@tenant_option
@click.option("--since", default="7d", show_default=True, help="Queued at or after (2h, 7d, ISO).")
@click.option("--until", help="Queued at or before.")
@click.option(
    "--catalog",
    "catalog_path",
    type=click.Path(dir_okay=False),
    help="Catalog with each batch's cpu and memory (default: $BATCHGATE_CATALOG or the packaged one).",
)
@click.option("--max-jobs", type=click.IntRange(min=1), default=20_000, show_default=True)
@json_option
@target_options(hidden=True)
@click.pass_context
def stats(
    ctx: click.Context,
    *,
    batch: str | None,
    tenant: str | None,
    since: str,
    until: str | None,
    catalog_path: str | None,
    max_jobs: int,
    as_json: bool,
) -> None:
    """Per batch and strategy: jobs, success rate, p50/p95 start latency and run time, estimated cost.

    Cost is an estimate: Fargate's per-second price from image pull to stop, one-minute minimum; Fargate
    Spot taken as 70% below on-demand; nothing for EC2 capacity; a WARM attempt its share of its pool
    task (task price x run seconds / slots).
    """
    from batchgate.domain.catalog import CatalogError, load_catalog

    state = app(ctx)
    try:
        catalog = load_catalog(catalog_path)
    except CatalogError as error:
        raise ConfigError(str(error)) from error
    known_batch(ctx, batch, catalog)
    job_filter = JobFilter(
        batch=batch,
        since=parse_time(ctx, "--since", since),
        until=parse_time(ctx, "--until", until),
        tenant=tenant,
    )
    region = state.session.region
    selected, left_out = JobSearch(state.table()).newest(job_filter, max_jobs)
    rows = summarize(selected, catalog_sizes(catalog), region, catalog.pools)
    notes = [
        "costs are estimates (Fargate Spot taken as 70% below on-demand; EC2 capacity not priced; a WARM "
        "attempt is charged its share of its pool task: task price x run seconds / slots, the pool's idle "
        "time to no job)"
    ]
    if not price_is_listed(region):
        notes.append(f"no Fargate price listed for {region}: us-east-1 prices used")
    if left_out is not None:
        notes.append(left_out)
    if as_json:
        print_json(
            stats_document(
                rows, job_filter, region, jobs=len(selected), truncated=left_out is not None, notes=notes
            )
        )
        return
    render_stats(state.console, rows, job_filter, notes)
