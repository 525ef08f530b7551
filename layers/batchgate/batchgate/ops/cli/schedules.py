"""`batchgate schedules` (each schedule, its next slot, its last slots' jobs) and `batchgate schedules
run NAME --slot TIME` (a slot by hand, with the slot's key: never a second job)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from batchgate.ops.cli.context import app
from batchgate.ops.cli.exits import ConfigError
from batchgate.ops.cli.options import CONTEXT_SETTINGS, json_option
from batchgate.ops.cli.render.text import print_json
from batchgate.ops.cli.target import target_options

if TYPE_CHECKING:
    from batchgate.domain.catalog import Catalog

CATALOG_OPTION = click.option(
    "--catalog",
    "catalog_path",
    type=click.Path(dir_okay=False),
    help="Catalog declaring the schedules (default: $BATCHGATE_CATALOG or the packaged one).",
)


def _catalog(catalog_path: str | None) -> Catalog:
    from batchgate.domain.catalog import CatalogError, load_catalog

    try:
        return load_catalog(catalog_path)
    except CatalogError as error:
        raise ConfigError(str(error)) from error


@click.group(context_settings=CONTEXT_SETTINGS, invoke_without_command=True)
@click.option("--schedule", "names", multiple=True, help="Only this schedule (repeatable).")
@click.option(
    "--last", type=click.IntRange(1, 50), default=3, show_default=True, help="How many past slots to show."
)
@CATALOG_OPTION
@json_option
@target_options(hidden=True)
@click.pass_context
def schedules(
    ctx: click.Context, *, names: tuple[str, ...], last: int, catalog_path: str | None, as_json: bool
) -> None:
    """Each schedule of the catalog: its next slot, and its last slots' jobs and statuses ("did last
    night's payroll run?"). A slot without a job is DUE while Scheduler may still deliver it, then
    MISSED. Reads the jobs by the ids the slots' keys give (one BatchGetItem).
    """
    if ctx.invoked_subcommand is not None:
        return
    from batchgate.ops.cli.render.schedules import render_schedules, schedules_document
    from batchgate.ops.schedule_status import schedule_views

    state = app(ctx)
    catalog = _catalog(catalog_path)
    unknown = [name for name in names if name not in catalog.schedules]
    if unknown:
        known = ", ".join(sorted(catalog.schedules)) or "none"
        raise click.BadParameter(
            f"the catalog has no schedule {unknown[0]!r} (its schedules: {known})", param_hint="--schedule"
        )
    now = state.clock()
    table = state.table() if catalog.schedules else None
    views = schedule_views(catalog, table, now, last=last, names=list(names) or None)
    if as_json:
        print_json(schedules_document(views, now))
        return
    render_schedules(state.console, views, state.command_line("show"))


@schedules.command("run", context_settings=CONTEXT_SETTINGS)
@click.argument("name")
@click.option(
    "--slot",
    "slot_text",
    required=True,
    help="The slot: an ISO date-time, with an offset or Z, else in the schedule's time zone.",
)
@CATALOG_OPTION
@json_option
@target_options(hidden=True)
@click.pass_context
def run(ctx: click.Context, *, name: str, slot_text: str, catalog_path: str | None, as_json: bool) -> None:
    """Submit one slot of schedule NAME by hand: the message Scheduler sends for it, with the slot's own
    key, so that a slot that already has its job never gets a second one."""
    from batchgate.adapters.jobs_queue import JobsQueue
    from batchgate.domain.messages import RejectedMessage
    from batchgate.ops.cli.render.schedules import render_slot_run
    from batchgate.ops.schedule_status import SlotRefused, parse_slot, run_slot

    state = app(ctx)
    catalog = _catalog(catalog_path)
    schedule = catalog.schedules.get(name)
    if schedule is None:
        known = ", ".join(sorted(catalog.schedules)) or "none"
        raise click.BadParameter(f"no schedule {name!r} (the catalog's: {known})", param_hint="NAME")
    try:
        slot = parse_slot(schedule, slot_text, state.clock())
    except SlotRefused as error:
        raise click.BadParameter(str(error), param_hint="--slot") from error
    session = state.session
    queue = JobsQueue(session.resource("queue_url"), session.client("sqs"))
    try:
        sent = run_slot(catalog, schedule, slot, queue, state.table())
    except RejectedMessage as rejected:
        raise click.UsageError(f"dispatch would reject this slot: {rejected.reason}") from rejected
    if as_json:
        print_json(sent.to_dict())
        return
    render_slot_run(state.console, sent, state.command_line("show", sent.job_id))
