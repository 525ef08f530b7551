"""`batchgate whatif`: replay the job table's jobs (or a trace file) under each launch policy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from batchgate.domain.jobs import iso, parse_iso
from batchgate.ops.cli.context import AppContext, app
from batchgate.ops.cli.exits import ConfigError, Failure
from batchgate.ops.cli.options import (
    CONTEXT_SETTINGS,
    batch_value,
    json_option,
    name_value_pairs,
    parse_time,
)
from batchgate.ops.cli.render.text import print_json
from batchgate.ops.cli.render.whatif import render_whatif, whatif_document
from batchgate.ops.cli.target import target_options
from batchgate.ops.job_search import JobFilter, JobSearch
from batchgate.ops.stats import catalog_sizes

if TYPE_CHECKING:
    from batchgate.domain.catalog import Catalog
    from batchgate.ops.whatif.model import WhatIfSettings
    from batchgate.ops.whatif.outcome import PolicyOutcome
    from batchgate.ops.whatif.trace import Trace


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--trace",
    "trace_path",
    type=click.Path(dir_okay=False),
    help="Replay this trace file (CSV or JSON lines) instead of the job table.",
)
@click.option(
    "--since", default="30d", show_default=True, help="Job table: queued at or after (2h, 30d, ISO)."
)
@click.option("--until", help="Job table: queued at or before (default: now).")
@click.option("--batch", callback=batch_value, help="Job table: only this batch.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="NAME=VALUE",
    help="A model or engine setting, e.g. ec2_fleet_instances=3 (repeatable; docs/whatif.md lists them).",
)
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False), help="Write report.md and the plots here."
)
@click.option("--no-plots", is_flag=True, help="With --out: only report.md (no matplotlib needed).")
@click.option(
    "--catalog",
    "catalog_path",
    type=click.Path(dir_okay=False),
    help="Catalog the adaptive policy plans with (default: $BATCHGATE_CATALOG or the packaged one).",
)
@click.option("--max-jobs", type=click.IntRange(min=1), default=20_000, show_default=True)
@json_option
@target_options(hidden=True)
@click.pass_context
def whatif(
    ctx: click.Context,
    *,
    trace_path: str | None,
    since: str,
    until: str | None,
    batch: str | None,
    overrides: tuple[str, ...],
    out_dir: str | None,
    no_plots: bool,
    catalog_path: str | None,
    max_jobs: int,
    as_json: bool,
) -> None:
    """Replay real jobs under each launch policy: cost, start latency and queueing side by side.

    \b
    Policies: a dedicated batch server, a fixed EC2 fleet, all Fargate, all Fargate Spot,
    batchgate's adaptive policy (plan_launch with a small EC2 fleet), and the adaptive policy with a
    warm pool for the short batches (warm_* settings). The jobs come from the job table
    (--since/--until/--batch) or from a trace file (--trace). Exit 1 when there is no job to replay.
    """
    from batchgate.domain.catalog import CatalogError, load_catalog
    from batchgate.ops.whatif.model import DEFAULT_WHATIF_SETTINGS
    from batchgate.ops.whatif.outcome import compare
    from batchgate.ops.whatif.report import notes
    from batchgate.ops.whatif.trace import TraceError, load_trace

    pairs = name_value_pairs(overrides, "--set")
    table_options = [
        name
        for name in ("since", "until", "batch")
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    ]
    if trace_path is not None and table_options:
        raise click.UsageError(f"--trace replays a file: --{table_options[0]} reads the job table")
    if trace_path is None and "container_overhead_seconds" not in pairs:
        pairs["container_overhead_seconds"] = "0"  # the table's run times were measured in containers
    try:
        settings = DEFAULT_WHATIF_SETTINGS.with_overrides(pairs)
        catalog = load_catalog(catalog_path)
    except CatalogError as error:
        raise ConfigError(str(error)) from error
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--set") from error
    extra: list[str] = []
    if trace_path is not None:
        try:
            trace = load_trace(trace_path)
        except TraceError as error:
            raise ConfigError(str(error)) from error
    else:
        window = JobFilter(
            batch=batch, since=parse_time(ctx, "--since", since), until=parse_time(ctx, "--until", until)
        )
        trace = _trace_from_table(app(ctx), window, catalog, max_jobs, extra)
    if not trace.jobs:
        raise Failure(f"no job to replay in {trace.source} (jobs that never ran to an end: {trace.skipped})")
    measured = trace.measured_start_p50()
    settings = settings.with_measured_starts(measured, keep=frozenset(pairs))
    try:
        outcomes = compare(trace, catalog, settings)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    extra = [*notes(trace, outcomes, measured), *extra]
    written: list[str] = []
    if out_dir is not None:
        written = _write_whatif_report(
            Path(out_dir), trace=trace, outcomes=outcomes, settings=settings, plots=not no_plots, notes=extra
        )
    if as_json:
        print_json(whatif_document(trace, outcomes, settings, measured, notes=extra, files=written))
        return
    render_whatif(
        app(ctx).console, trace, outcomes, settings, [*extra, *(f"wrote {name}" for name in written)]
    )


def _trace_from_table(
    state: AppContext, job_filter: JobFilter, catalog: Catalog, max_jobs: int, notes: list[str]
) -> Trace:
    """The window's jobs through the job table's indexes, as `batchgate stats` reads them."""
    from batchgate.ops.whatif.trace import trace_from_jobs

    table = state.table()
    selected, left_out = JobSearch(table).newest(job_filter, max_jobs)
    end = job_filter.until or iso(state.clock())
    start = job_filter.since or end
    if left_out is not None:
        # The replay covers only the span of the jobs kept, so that its monthly figures are not
        # diluted over the part of the window left out.
        start = selected[-1].created_at
        notes.append(f"{left_out}; the replay window starts at {start}")
    window = (parse_iso(start).timestamp(), parse_iso(end).timestamp())
    return trace_from_jobs(selected, catalog_sizes(catalog), window, source=f"job table {table.table_name}")


def _write_whatif_report(
    directory: Path,
    *,
    trace: Trace,
    outcomes: Sequence[PolicyOutcome],
    settings: WhatIfSettings,
    plots: bool,
    notes: Sequence[str],
) -> list[str]:
    """report.md (and the plots unless `plots` is False) in `directory`: the paths written."""
    from batchgate.ops.whatif.plots import PlotsUnavailable, write_plots
    from batchgate.ops.whatif.report import markdown

    directory.mkdir(parents=True, exist_ok=True)
    images: list[str] = []
    if plots:
        try:
            images = write_plots(outcomes, directory)
        except PlotsUnavailable as error:
            raise ConfigError(f"{error} (or --no-plots)") from error
    report = directory / "report.md"
    report.write_text(markdown(trace, outcomes, settings, plots=images, notes=notes), encoding="utf-8")
    return [str(report), *(str(directory / name) for name in images)]
