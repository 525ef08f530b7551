"""`batchgate submit` (enqueue a job as the application would), `cancel` and `retry`."""

from __future__ import annotations

import getpass
import os
from datetime import datetime

import click

from batchgate.domain.jobs import Job, JobStatus, iso, job_id_for
from batchgate.domain.warm import is_warm
from batchgate.ops import job_views
from batchgate.ops.cli.context import app, service_logs_to_stderr
from batchgate.ops.cli.exits import ConfigError, Failure
from batchgate.ops.cli.options import CONTEXT_SETTINGS, job_id_value, json_option, name_value_pairs
from batchgate.ops.cli.render.submit import (
    Cancelled,
    Retried,
    Submitted,
    render_cancelled,
    render_retried,
    render_submitted,
)
from batchgate.ops.cli.render.text import print_json
from batchgate.ops.cli.target import target_options
from batchgate.ops.resubmit import JobNotFound, plan_retry
from batchgate.ops.stack_outputs import AwsSession


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("batch")
@click.argument("arguments", nargs=-1)
@click.option("--idempotency-key", help="Names the job: the same batch and key always give the same job.")
@click.option("--env", "env", multiple=True, metavar="NAME=VALUE", help="Environment variable (repeatable).")
@click.option("--priority", type=click.IntRange(0, 9), default=0, show_default=True)
@click.option("--deadline", help="Reject the job if not dispatched by then (ISO time or e.g. 2h from now).")
@click.option(
    "--strategy", type=click.Choice(["EC2", "FARGATE", "FARGATE_SPOT"]), help="Capacity preference."
)
@click.option("--tenant", help="The application's customer the job is for (e.g. acme).")
@click.option(
    "--catalog",
    "catalog_path",
    type=click.Path(dir_okay=False),
    help="Check against this catalog file (default: $BATCHGATE_CATALOG or the packaged catalog).",
)
@click.option("--no-catalog-check", is_flag=True, help="Send without checking the batch against a catalog.")
@json_option
@target_options(hidden=True)
@click.pass_context
def submit(
    ctx: click.Context,
    *,
    batch: str,
    arguments: tuple[str, ...],
    idempotency_key: str | None,
    env: tuple[str, ...],
    priority: int,
    deadline: str | None,
    strategy: str | None,
    tenant: str | None,
    catalog_path: str | None,
    no_catalog_check: bool,
    as_json: bool,
) -> None:
    """Enqueue a job exactly as the application would, and print its job id.

    Put `--` before arguments that start with a dash: `batchgate submit report-export -- --all`.
    """
    from batchgate.client import BatchClient
    from batchgate.domain.catalog import CatalogError, load_catalog
    from batchgate.domain.messages import RejectedMessage

    state = app(ctx)
    environment = name_value_pairs(env, "--env")
    deadline_at = None
    if deadline is not None:
        deadline_at = _future_time(ctx, deadline)
    try:
        catalog = None if no_catalog_check else load_catalog(catalog_path)
    except CatalogError as error:
        raise ConfigError(str(error)) from error
    session = state.session
    client = BatchClient(session.resource("queue_url"), session.client("sqs"), catalog=catalog)
    try:
        receipt = client.submit(
            batch,
            arguments,
            environment=environment or None,
            idempotency_key=idempotency_key,
            priority=priority,
            deadline=deadline_at,
            strategy=strategy,
            tenant=tenant,
        )
    except RejectedMessage as rejected:
        raise click.UsageError(f"dispatch would reject this job: {rejected.reason}", ctx=ctx) from rejected
    submitted = Submitted(
        job_id=receipt.job_id_hint or job_id_for(batch, receipt.message_id),
        message_id=receipt.message_id,
        batch=batch,
        idempotency_key=idempotency_key,
        derived=receipt.job_id_hint is None,
    )
    if as_json:
        print_json(submitted.to_dict())
        return
    render_submitted(state.console, submitted, state.command_line("show", submitted.job_id))


def _future_time(ctx: click.Context, text: str) -> datetime:
    """--deadline: an ISO time, or a duration from now ("2h")."""
    now = app(ctx).clock()
    try:
        moment = job_views.parse_moment(text, now, ahead=True)
    except ValueError as error:
        raise click.BadParameter(str(error), ctx=ctx, param_hint="--deadline") from error
    if moment <= now:
        raise click.BadParameter(f"{iso(moment)} has already passed", ctx=ctx, param_hint="--deadline")
    return moment


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("job_id", metavar="JOB", callback=job_id_value)
@click.option("--user", help="Who cancels, for the stop reason (default: the local user name).")
@json_option
@target_options(hidden=True)
@click.pass_context
def cancel(ctx: click.Context, *, job_id: str, user: str | None, as_json: bool) -> None:
    """Mark the job CANCELLED (dispatch then never launches it) and stop its task if it has one.

    Cancelling a CANCELLED job again repeats the stop request. Exits 1 when the job is not found or
    has already ended otherwise.
    """
    # The cancel domain brings Powertools telemetry with it: imported only when cancelling.
    from batchgate.adapters.ecs import EcsTasks
    from batchgate.services.cancel import CancelError, cancel_job

    state = app(ctx)
    session = state.session
    table = state.table()
    before = table.get(job_id)
    if before is None:
        raise JobNotFound(job_id)
    who = user or state.user or _local_user()
    ecs = EcsTasks(_cluster_for(session, before), session.client("ecs"))
    try:
        with service_logs_to_stderr():
            job = cancel_job(table, ecs, job_id, who, clock=state.clock)
    except CancelError as error:
        raise Failure(str(error)) from error
    cancelled = Cancelled(job=job, again=before.status is JobStatus.CANCELLED)
    if as_json:
        print_json(cancelled.to_dict())
        return
    render_cancelled(state.console, cancelled)


def _cluster_for(session: AwsSession, job: Job) -> str:
    """The job's cluster: the stack's (or --cluster), else the one its task ARN names."""
    configured = session.optional_resource("cluster")
    if configured:
        return configured
    for attempt in reversed(job.attempts):
        named = _cluster_in(attempt.task_arn) if attempt.task_arn else None
        if named:
            return named
    if job.attempt is None or job.status.is_terminal or is_warm(job):
        return ""  # nothing to stop (a WARM attempt's process is the worker's to stop): ECS is not called
    return session.resource("cluster")  # raises: says to give --cluster


def _cluster_in(task_arn: str) -> str | None:
    """arn:aws:ecs:<region>:<account>:task/<cluster>/<id> -> <cluster>."""
    parts = task_arn.split(":", 5)[-1].split("/")
    return parts[1] if len(parts) == 3 and parts[0] == "task" else None


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or "unknown"


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("job_id", metavar="JOB", callback=job_id_value)
@click.option("--force", is_flag=True, help="Retry a job that SUCCEEDED too (runs the batch again).")
@json_option
@target_options(hidden=True)
@click.pass_context
def retry(ctx: click.Context, *, job_id: str, force: bool, as_json: bool) -> None:
    """Submit a finished job again (same batch, arguments, environment) as a new, linked job.

    The new job's idempotency key is `retry-of:<JOB>:<n>`. Exits 1 when the job is not found, has not
    ended yet, or was rejected; and when it SUCCEEDED, unless --force.
    """
    from batchgate.client import BatchClient
    from batchgate.domain.messages import RejectedMessage

    state = app(ctx)
    session = state.session
    plan = plan_retry(state.table(), job_id, force=force)
    submit_arguments = plan.submit_arguments()
    client = BatchClient(session.resource("queue_url"), session.client("sqs"))
    try:
        receipt = client.submit(
            submit_arguments.pop("batch"), submit_arguments.pop("arguments"), **submit_arguments
        )
    except RejectedMessage as rejected:
        raise Failure(f"the retry of {job_id} would be rejected: {rejected.reason}") from rejected
    retried = Retried(
        job_id=receipt.job_id_hint or plan.job_id,
        retry_of=job_id,
        idempotency_key=plan.idempotency_key,
        message_id=receipt.message_id,
    )
    if as_json:
        print_json(retried.to_dict())
        return
    render_retried(state.console, retried)
