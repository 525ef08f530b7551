"""`batchgate logs`: a job's task logs from CloudWatch Logs, once or following the job to its end."""

from __future__ import annotations

import click

from batchgate.adapters.job_table import JobTable
from batchgate.domain.jobs import Job
from batchgate.ops import logs as logs_module
from batchgate.ops.cli.context import app
from batchgate.ops.cli.exits import UNSUCCESSFUL, ExitCode, Failure
from batchgate.ops.cli.options import CONTEXT_SETTINGS, job_selector, json_option, select_job
from batchgate.ops.cli.render.logs import attempt_announcer, event_printer
from batchgate.ops.cli.target import target_options
from batchgate.ops.logs import LogsUnavailable, TaskLogs, location_of
from batchgate.ops.resubmit import JobNotFound
from batchgate.ops.terminal import terminal_text


@click.command(context_settings=CONTEXT_SETTINGS)
@job_selector
@click.option("--attempt", "attempt_number", type=click.IntRange(min=1), help="Attempt (default: latest).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the job ends.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="With --follow: seconds to wait for a job just submitted to appear in the table.",
)
@click.option("--grep", "pattern", help="Only events matching this CloudWatch Logs filter pattern.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True, help="Seconds.")
@json_option(help="One JSON object per line: timestamp, message.")
@target_options(hidden=True)
@click.pass_context
def logs(
    ctx: click.Context,
    *,
    job_id: str | None,
    batch: str | None,
    idempotency_key: str | None,
    at: str | None,
    attempt_number: int | None,
    follow: bool,
    wait: float,
    pattern: str | None,
    interval: float,
    as_json: bool,
) -> None:
    """Print a job's task logs (CloudWatch Logs) from the log location recorded for its attempt.

    Exits 1 when the job is not found or has no logs; with --follow, also when the job ends without
    success.
    """
    if follow and pattern:
        raise click.UsageError("--follow and --grep cannot be combined", ctx=ctx)
    state = app(ctx)
    table = state.table()
    if follow and job_id is not None and not (batch or idempotency_key or at):
        job = _await_job(table, job_id, wait, interval)
    else:
        job = select_job(ctx, job_id, batch, idempotency_key, at)
    reader = TaskLogs(state.session.client("logs"))
    emit = event_printer(as_json)
    try:
        if follow:
            _follow(
                ctx,
                reader=reader,
                table=table,
                job=job,
                attempt_number=attempt_number,
                interval=interval,
                as_json=as_json,
            )
            return
        _, location = location_of(job, attempt_number)
        events = reader.grep(location, pattern) if pattern else reader.read(location)
        count = 0
        for event in events:
            emit(event)
            count += 1
        if count == 0 and not as_json:
            click.echo(terminal_text(f"(no log events in {location.group} {location.stream})"), err=True)
    except LogsUnavailable as error:
        raise Failure(str(error)) from error


def _await_job(table: JobTable, job_id: str, wait: float, interval: float) -> Job:
    """The job, waiting up to `wait` seconds for dispatch to create it (a job just submitted)."""
    waited = 0.0
    while True:
        job = table.get(job_id)
        if job is not None:
            return job
        if waited >= wait:
            raise JobNotFound(job_id)
        if waited == 0:
            click.echo(f"waiting up to {wait:g}s for job {job_id} to be dispatched", err=True)
        logs_module.pause(interval)
        waited += interval


def _follow(
    ctx: click.Context,
    *,
    reader: TaskLogs,
    table: JobTable,
    job: Job,
    attempt_number: int | None,
    interval: float,
    as_json: bool,
) -> None:
    emit = event_printer(as_json)
    for event in reader.follow(
        lambda: table.get(job.job_id),
        attempt_number,
        interval=interval,
        on_attempt=attempt_announcer(as_json),
    ):
        emit(event)
    final = table.get(job.job_id)
    if final is not None and final.status in UNSUCCESSFUL:
        click.echo(terminal_text(f"job {job.job_id} ended {final.status.value}"), err=True)
        ctx.exit(ExitCode.FAILED)
