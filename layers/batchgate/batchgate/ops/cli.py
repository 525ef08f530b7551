"""`batchgate`: the ops command line.

From a job id, or a batch name and a time, to what happened, why, and the logs; plus submit, cancel,
retry, statistics and the dead-letter queues. This module only parses options, calls the domain
(job_search, job_views, stats, cancel, resubmit, logs, dead_letters) and renders; AWS sessions and
resources come from stack_outputs.

Exit codes: 0 ok; 1 the job was not found, ended without success (show, logs --follow), or the action
was refused for its state (cancel, retry); 2 usage or configuration (bad option, unknown stack, missing
resource); 3 an AWS call failed (credentials, permissions, throttling, endpoint unreachable).
"""

from __future__ import annotations

import getpass
import importlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import click
from botocore.exceptions import BotoCoreError, ClientError
from click.core import ParameterSource
from rich.console import Console
from rich.table import Table
from rich.text import Text

from batchgate.adapters.job_table import JobTable
from batchgate.domain.jobs import Attempt, Job, JobStatus, is_job_id, iso, job_id_for, parse_iso, utc_now
from batchgate.domain.pricing import TaskSize, price_is_listed
from batchgate.ops import job_views
from batchgate.ops import logs as logs_module
from batchgate.ops.dead_letters import (
    HISTORY,
    JOBS,
    QUEUES,
    TRACK,
    DeadLetter,
    DeadLetterQueue,
    DeadLetters,
    RedriveResult,
    RedriveStopped,
)
from batchgate.ops.job_search import InvalidToken, JobFilter, JobSearch
from batchgate.ops.logs import LogEvent, LogsUnavailable, TaskLogs, location_of
from batchgate.ops.resubmit import JobNotFound, Refused, plan_retry
from batchgate.ops.stack_outputs import AwsSession, ConfigurationError, Target
from batchgate.ops.stats import StatsRow, summarize

if TYPE_CHECKING:
    import boto3

    from batchgate.domain.catalog import Catalog
    from batchgate.ops.whatif.model import WhatIfSettings
    from batchgate.ops.whatif.outcome import PolicyOutcome
    from batchgate.ops.whatif.trace import Trace


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # job not found, ended without success, or action refused
    USAGE = 2
    AWS_ERROR = 3


UNSUCCESSFUL = frozenset({JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.REJECTED, JobStatus.CANCELLED})
STATUS_STYLES = {
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "bold red",
    JobStatus.TIMED_OUT: "bold red",
    JobStatus.REJECTED: "red",
    JobStatus.CANCELLED: "yellow",
    JobStatus.RUNNING: "cyan",
}
DEFAULT_LIMIT = 25
MAX_LIMIT = 1000
PIPE_WIDTH = 200
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


class Failure(click.ClickException):
    """Exit 1: job not found, job failed, action refused."""

    exit_code = ExitCode.FAILED


class ConfigError(click.ClickException):
    """Exit 2: which stack or resource to use is unclear or wrong."""

    exit_code = ExitCode.USAGE


class AwsFailure(click.ClickException):
    """Exit 3: an AWS call failed."""

    exit_code = ExitCode.AWS_ERROR


@dataclass
class AppContext:
    """ctx.obj: where to look (from the options) and, once a command needs it, one AWS session.

    `boto_session`: the boto3 session to make the clients with (by default one of the command's own, from
    the profile and region it is given)."""

    target: Target = field(default_factory=Target)
    clock: Callable[[], datetime] = utc_now
    user: str | None = None
    boto_session: boto3.session.Session | None = None
    _session: AwsSession | None = None
    _console: Console | None = None

    @property
    def session(self) -> AwsSession:
        if self._session is None:
            self._session = AwsSession(self.target, self.boto_session)
        return self._session

    def table(self) -> JobTable:
        session = self.session
        return JobTable(session.resource("table_name"), session.client("dynamodb"))

    @property
    def console(self) -> Console:
        if self._console is None:
            console = Console(highlight=False, soft_wrap=False)
            if not console.is_terminal:
                console = Console(highlight=False, soft_wrap=False, width=PIPE_WIDTH)
            self._console = console
        return self._console


def app(ctx: click.Context) -> AppContext:
    return ctx.ensure_object(AppContext)


# --- where to look: accepted before or after the command name -------------------------------------------

_TARGET_FIELDS = frozenset(
    {"stack", "config_env", "config_file", "profile", "region", "endpoint_url", "local", "local_state"}
)
# option name -> resource name in Target.overrides
_OVERRIDE_FIELDS = {
    "table": "table_name",
    "queue_url": "queue_url",
    "jobs_dlq_url": "jobs_dlq_url",
    "track_dlq_url": "track_dlq_url",
    "history_dlq_url": "history_dlq_url",
    "cluster": "cluster",
    "track_function": "track_function",
    "history_function": "history_function",
}


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Store a target option in ctx.obj. A value typed on the command line wins (after the command name
    over before it); one from an environment variable only fills a gap."""
    name = param.name
    if value is None or value is False or name is None:
        return
    target = app(ctx).target
    if name in _TARGET_FIELDS:
        current = getattr(target, name)
    else:
        current = target.overrides.get(_OVERRIDE_FIELDS[name])
    if current and ctx.get_parameter_source(name) is not ParameterSource.COMMANDLINE:
        return
    if name in _TARGET_FIELDS:
        setattr(target, name, value)
    else:
        target.overrides[_OVERRIDE_FIELDS[name]] = str(value)


def target_options[F: Callable[..., Any]](hidden: bool) -> Callable[[F], F]:
    """The options that say which stack to use. Documented on the group; also accepted (hidden) after
    any command name, so that `batchgate show JOB --stack prod` works too."""

    def option(*names: str, **kwargs: Any) -> Callable[[F], F]:
        return click.option(
            *names, expose_value=False, callback=_remember, hidden=hidden, is_eager=False, **kwargs
        )

    def decorate(function: F) -> F:
        decorators = [
            option("--stack", envvar="BATCHGATE_STACK", help="CloudFormation stack name."),
            option(
                "--config-env",
                envvar="BATCHGATE_CONFIG_ENV",
                help="samconfig.toml environment whose stack_name to use (default: default).",
            ),
            option("--config-file", type=click.Path(dir_okay=False), help="samconfig.toml path."),
            option("--profile", help="AWS profile (else AWS_PROFILE or the samconfig profile)."),
            option("--region", help="AWS region (else the profile's or samconfig's)."),
            option(
                "--endpoint-url",
                envvar=["BATCHGATE_ENDPOINT_URL", "AWS_ENDPOINT_URL"],
                help="AWS endpoint, e.g. the local stack's.",
            ),
            option(
                "--local",
                is_flag=True,
                default=False,
                help="Use the embedded local stack (its state file: $BATCHGATE_LOCAL_STATE or "
                "~/.batchgate/local.json).",
            ),
            option("--local-state", type=click.Path(dir_okay=False), help="Local stack state file."),
            option("--table", envvar="BATCHGATE_TABLE", help="Job table name (skips the stack lookup)."),
            option("--queue-url", envvar="BATCHGATE_QUEUE_URL", help="Jobs queue URL."),
            option("--jobs-dlq-url", help="Jobs dead-letter queue URL."),
            option("--track-dlq-url", help="Track dead-letter queue URL."),
            option("--track-function", help="Track function name (dlq redrive of task events)."),
            option("--history-dlq-url", help="History dead-letter queue URL."),
            option("--history-function", help="History function name (dlq redrive of stream records)."),
            option("--cluster", help="ECS cluster (only for task ARNs that do not name theirs)."),
        ]
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return decorate


def json_option[F: Callable[..., Any]](function: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(function)


class BatchgateGroup(click.Group):
    """Maps domain and AWS errors to exit codes, and loads the `local` commands only when used."""

    lazy_commands: ClassVar[dict[str, tuple[str, str]]] = {
        "local": ("batchgate.ops.local.commands", "local_group")
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        names.update(name for name in self.lazy_commands if self._lazy(name) is not None)
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self.lazy_commands:
            command = self._lazy(cmd_name)
        return command

    def _lazy(self, name: str) -> click.Command | None:
        module_name, attribute = self.lazy_commands[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is not None and module_name.startswith(error.name):
                return None  # not part of this installation
            raise
        command = getattr(module, attribute, None)
        return command if isinstance(command, click.Command) else None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigurationError as error:
            raise ConfigError(str(error)) from error
        except JobNotFound as error:
            raise Failure(str(error)) from error
        except Refused as error:
            raise Failure(str(error)) from error
        except InvalidToken as error:
            raise ConfigError(str(error)) from error
        except ClientError as error:
            details = error.response.get("Error", {})
            raise AwsFailure(
                f"AWS {error.operation_name} failed: {details.get('Code', '?')}: {details.get('Message', '')}"
            ) from error
        except BotoCoreError as error:
            raise AwsFailure(f"AWS call failed: {error}") from error


def _version() -> str:
    from batchgate import __version__

    return __version__


@click.group(cls=BatchgateGroup, context_settings=CONTEXT_SETTINGS)
@target_options(hidden=False)
@click.version_option(_version(), prog_name="batchgate")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Ops for batchgate jobs: find a job, see what happened and why, read its logs.

    \b
    Which stack: --stack NAME, or samconfig.toml's stack_name for --config-env ENV ("default"
    when samconfig.toml is found and nothing else is given), or --local for the embedded local
    stack; --table/--queue-url/--*-dlq-url skip the CloudFormation lookup.

    \b
    Exit codes: 0 ok; 1 job not found, ended without success, or action refused;
    2 usage or configuration; 3 an AWS call failed.
    """
    app(ctx)


def main() -> None:
    cli(prog_name="batchgate")


# --- rendering helpers --------------------------------------------------------------------------------


def print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=False, default=str))


def plain(value: Any) -> Text:
    """User data as text, never as rich markup."""
    return Text("-" if value is None or value == "" else str(value))


def status_text(status: JobStatus) -> Text:
    return Text(status.value, style=STATUS_STYLES.get(status, ""))


def short_time(value: str | None) -> str:
    """2026-11-27T01:02:03.456Z -> 2026-11-27 01:02:03Z."""
    if not value:
        return "-"
    return value[:19].replace("T", " ") + "Z" if len(value) >= 19 else value


def parse_time(ctx: click.Context, option: str, text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return iso(job_views.parse_moment(text, app(ctx).clock()))
    except ValueError as error:
        raise click.BadParameter(str(error), ctx=ctx, param_hint=option) from error


def parse_statuses(values: Sequence[str]) -> tuple[JobStatus, ...]:
    return tuple(JobStatus(value.upper()) for value in values)


STATUS_CHOICE = click.Choice([status.value for status in JobStatus], case_sensitive=False)
# Every job id fits ECS's startedBy (128 characters); anything longer names no job.
MAX_JOB_ID_LENGTH = 128


def job_id_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A JOB argument, refused before any AWS call when it cannot name a job (the table refuses an
    empty key outright)."""
    if value is not None and (not is_job_id(value) or len(value) > MAX_JOB_ID_LENGTH):
        raise click.BadParameter(
            f"{value!r} is not a job id: batchgate job ids look like bg-<batch>-<20 hex digits>",
            ctx=ctx,
            param=param,
        )
    return value


def batch_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A --batch option: an empty name is refused (the table refuses an empty key)."""
    if value is not None and not value.strip():
        raise click.BadParameter("give a batch name", ctx=ctx, param=param)
    return value


# --- submit -------------------------------------------------------------------------------------------


def name_value_pairs(values: Iterable[str], option: str, metavar: str = "NAME=VALUE") -> dict[str, str]:
    """Repeated `NAME=VALUE` options as a dict (a later name wins); a usage error names the option."""
    pairs: dict[str, str] = {}
    for value in values:
        name, separator, content = value.partition("=")
        if not separator or not name:
            raise click.BadParameter(f"{value!r} is not {metavar}", param_hint=option)
        pairs[name] = content
    return pairs


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("batch")
@click.argument("arguments", nargs=-1)
@click.option("--idempotency-key", help="Names the job: the same batch and key always give the same job.")
@click.option("--env", "env", multiple=True, metavar="NAME=VALUE", help="Environment variable (repeatable).")
@click.option("--priority", type=click.IntRange(0, 9), default=0, show_default=True)
@click.option("--deadline", help="Reject the job if not dispatched by then (ISO time or e.g. 2h from now).")
@click.option(
    "--strategy", type=click.Choice(["EC2", "FARGATE", "FARGATE_SPOT"]), help="Capacity preference."
)
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
        )
    except RejectedMessage as rejected:
        raise click.UsageError(f"dispatch would reject this job: {rejected.reason}", ctx=ctx) from rejected
    job_id = receipt.job_id_hint or job_id_for(batch, receipt.message_id)
    derived = receipt.job_id_hint is None
    if as_json:
        print_json(
            {
                "job_id": job_id,
                "message_id": receipt.message_id,
                "batch": batch,
                "idempotency_key": idempotency_key,
                "job_id_from": "message_id" if derived else "idempotency_key",
            }
        )
        return
    console = state.console
    console.print(Text(job_id, style="bold"))
    console.print(plain(f"submitted {batch} (SQS message {receipt.message_id})"), style="dim")
    if derived:
        console.print(
            plain(
                "no --idempotency-key: the job id is derived from the SQS message id, so submitting "
                "again creates another job"
            ),
            style="dim",
        )
    console.print(plain(f"follow it with: batchgate show {job_id}"), style="dim")


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


# --- jobs ---------------------------------------------------------------------------------------------


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--status", "statuses", multiple=True, type=STATUS_CHOICE, help="Only this status (repeatable)."
)
@click.option("--batch", callback=batch_value, help="Only this batch.")
@click.option("--since", help="Queued at or after: 2h, 30m, 7d, or an ISO date/time (UTC).")
@click.option("--until", help="Queued at or before: same forms as --since.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=DEFAULT_LIMIT, show_default=True)
@click.option("--next", "next_token", help="Continue from the token printed by the previous page.")
@json_option
@target_options(hidden=True)
@click.pass_context
def jobs(
    ctx: click.Context,
    *,
    statuses: tuple[str, ...],
    batch: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    next_token: str | None,
    as_json: bool,
) -> None:
    """List jobs newest first, by status, batch and time (read from the table's indexes, never a scan)."""
    state = app(ctx)
    job_filter = JobFilter(
        statuses=parse_statuses(statuses),
        batch=batch,
        since=parse_time(ctx, "--since", since),
        until=parse_time(ctx, "--until", until),
    )
    page = JobSearch(state.table()).page(job_filter, limit=limit, token=next_token)
    now = state.clock()
    rows = [job_views.job_row(job, now) for job in page.jobs]
    if as_json:
        print_json({"jobs": rows, "next": page.next_token})
        return
    console = state.console
    if not rows and page.next_token:
        # The page spent its query budget on jobs the filter skips: the rest of the index is unread.
        console.print(
            plain(
                "No jobs found" + _filter_words(job_filter) + " among the jobs read so far; the search "
                f"stopped before the end: continue it with --next {page.next_token}"
            ),
            soft_wrap=True,
        )
        return
    if not rows:
        console.print(plain("No jobs found" + _filter_words(job_filter) + "."))
    else:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for name in ("JOB ID", "BATCH", "STATUS", "STRATEGY", "QUEUED (UTC)", "START", "RUN", "EXIT"):
            justify: Literal["left", "right"] = "right" if name in ("START", "RUN", "EXIT") else "left"
            table.add_column(name, no_wrap=True, justify=justify)
        for job, row in zip(page.jobs, rows, strict=True):
            table.add_row(
                plain(row["job_id"]),
                plain(row["batch"]),
                status_text(job.status),
                plain(row["strategy"]),
                plain(short_time(row["queued"])),
                plain(job_views.format_duration(row["start_latency_seconds"])),
                plain(job_views.format_duration(row["run_time_seconds"])),
                plain(row["exit_code"]),
            )
        console.print(table)
    if page.next_token:
        console.print(
            plain(f"more jobs: repeat the command with --next {page.next_token}"), style="dim", soft_wrap=True
        )


def _filter_words(job_filter: JobFilter) -> str:
    words = []
    if job_filter.statuses:
        words.append("with status " + " or ".join(status.value for status in job_filter.statuses))
    if job_filter.batch:
        words.append(f"of batch {job_filter.batch}")
    if job_filter.since:
        words.append(f"queued since {job_filter.since}")
    if job_filter.until:
        words.append(f"queued until {job_filter.until}")
    return (" " + " ".join(words)) if words else ""


# --- show ---------------------------------------------------------------------------------------------


def job_selector[F: Callable[..., Any]](function: F) -> F:
    """JOB, or --batch with --key (the job of an idempotency key) or --at (the latest job queued then)."""
    decorators = [
        click.argument("job_id", required=False, metavar="[JOB]", callback=job_id_value),
        click.option("--batch", callback=batch_value, help="With --key or --at: find the job by its batch."),
        click.option("--key", "idempotency_key", help="With --batch: the job of this idempotency key."),
        click.option(
            "--at",
            "at",
            help="With --batch: the latest job queued at or before this time (default: now).",
        ),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def select_job(
    ctx: click.Context, job_id: str | None, batch: str | None, idempotency_key: str | None, at: str | None
) -> Job:
    table = app(ctx).table()
    if job_id is not None:
        if batch or idempotency_key or at:
            raise click.UsageError("give either JOB or --batch with --key/--at, not both", ctx=ctx)
        job = table.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job
    if batch is None:
        raise click.UsageError("give a JOB id, or --batch NAME with --key KEY or --at TIME", ctx=ctx)
    if idempotency_key is not None:
        if at is not None:
            raise click.UsageError("give --key or --at, not both", ctx=ctx)
        derived = job_id_for(batch, idempotency_key)
        found = table.get(derived)
        if found is None:
            raise JobNotFound(derived)
        return found
    until = parse_time(ctx, "--at", at or "now")
    page = table.query(batch=batch, until=until, limit=1)
    if not page.jobs:
        raise Failure(f"no job of batch {batch} queued at or before {until}")
    return page.jobs[0]


@cli.command(context_settings=CONTEXT_SETTINGS)
@job_selector
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
    as_json: bool,
) -> None:
    """Everything about one job: what happened, why, every attempt's timeline, and where its logs are.

    Exits 1 when the job is not found or ended without success (FAILED, TIMED_OUT, REJECTED, CANCELLED).
    """
    state = app(ctx)
    job = select_job(ctx, job_id, batch, idempotency_key, at)
    region = state.session.region
    now = state.clock()
    if as_json:
        print_json(job_views.job_document(job, region, now))
    else:
        render_job(state.console, job, region, now)
    if job.status in UNSUCCESSFUL:
        ctx.exit(ExitCode.FAILED)


class _Facts:
    """Label/value lines with the values aligned (no padding after them, unlike a rich grid)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, Text]] = []

    def add_row(self, label: str, value: Text) -> None:
        self.rows.append((label, value))

    def print(self, console: Console) -> None:
        width = max((len(label) for label, _ in self.rows), default=0) + 2
        for label, value in self.rows:
            console.print(Text(label.ljust(width), style="dim") + value)


def render_job(console: Console, job: Job, region: str, now: datetime) -> None:
    header = Text()
    header.append(job.job_id, style="bold")
    header.append("  ")
    header.append_text(status_text(job.status))
    console.print(header)
    facts = _Facts()
    facts.add_row("batch", plain(job.batch))
    facts.add_row("arguments", plain(" ".join(job.arguments) if job.arguments else None))
    if job.environment:
        facts.add_row("environment", plain(" ".join(f"{k}={v}" for k, v in sorted(job.environment.items()))))
    facts.add_row(
        "idempotency key", plain(job.idempotency_key or f"(none: from SQS message {job.message_id})")
    )
    facts.add_row("priority", plain(job.priority))
    if job.deadline:
        facts.add_row("deadline", plain(job.deadline))
    facts.add_row("queued", plain(job.created_at))
    facts.add_row("updated", plain(job.updated_at))
    if job.plan is not None:
        strategy = f"{job.plan.strategy} - {job.plan.reason}"
        if job.plan.fallbacks:
            strategy += f" (fallbacks: {', '.join(job.plan.fallbacks)})"
        facts.add_row("strategy", plain(strategy))
        if job.plan.cpu and job.plan.memory:
            facts.add_row("task size", plain(f"{job.plan.cpu} cpu units, {job.plan.memory} MiB"))
    elif job.strategy_preference:
        facts.add_row("strategy", plain(f"preference {job.strategy_preference}"))
    facts.add_row("attempts", plain(len(job.attempts)))
    facts.print(console)
    console.print()
    result = job_views.outcome(job)
    console.print(Text("What happened: ", style="bold") + plain(result.headline))
    for line in result.explanations:
        console.print(Text("  - ") + plain(line))
    if job.status is JobStatus.REJECTED and job.raw_message:
        console.print(Text("  message as received: ", style="dim") + plain(job.raw_message))
    for attempt in job.attempts:
        console.print()
        render_attempt(console, job, attempt, region, now)


def render_attempt(console: Console, job: Job, attempt: Attempt, region: str, now: datetime) -> None:
    title = Text(f"Attempt {attempt.number} of {len(job.attempts)}", style="bold")
    title.append(f"  {attempt.strategy}")
    if attempt.capacity_provider and attempt.capacity_provider != attempt.strategy:
        title.append(f" ({attempt.capacity_provider})")
    if attempt.last_status:
        title.append(f"  task {attempt.last_status}")
    console.print(title)
    if attempt.task_arn:
        console.print(Text("  task  ", style="dim") + plain(attempt.task_arn), soft_wrap=True)
        task_url = job_views.task_console_url(region, attempt.task_arn)
        if task_url:
            console.print(Text("        ") + plain(task_url), soft_wrap=True)
    timeline = Table(box=None, pad_edge=False, header_style="dim")
    timeline.add_column("  phase", no_wrap=True)
    timeline.add_column("at (UTC)", no_wrap=True)
    timeline.add_column("took", justify="right", no_wrap=True)
    timeline.add_column("spent on", style="dim")
    for phase in job_views.phases(job, attempt):
        timeline.add_row(
            plain("  " + phase.label),
            plain(phase.at),
            Text("" if phase.duration is None else job_views.format_duration(phase.duration)),
            Text(phase.spent_on or ""),
        )
    console.print(timeline)
    numbers = [
        f"start latency {job_views.format_duration(job_views.start_latency(attempt))}",
        f"time to start {job_views.format_duration(job_views.time_to_start(job, attempt))}",
        f"run time {job_views.format_duration(job_views.run_time(attempt, now))}",
        f"exit code {'-' if attempt.exit_code is None else attempt.exit_code}",
    ]
    console.print(Text("  ") + plain(" | ".join(numbers)))
    for label, value in _attempt_details(attempt):
        console.print(Text(f"  {label}  ", style="dim") + plain(value))
    if attempt.log_group and attempt.log_stream:
        console.print(Text("  logs  ", style="dim") + plain(f"{attempt.log_group}  {attempt.log_stream}"))
        url = job_views.log_console_url(region, attempt.log_group, attempt.log_stream)
        console.print(Text("        ") + plain(url), soft_wrap=True)  # never split a link
        console.print(
            Text("        ", style="dim") + plain(f"batchgate logs {job.job_id} --attempt {attempt.number}"),
            style="dim",
        )
    else:
        console.print(Text("  logs  ", style="dim") + plain("no log location recorded"))


def _attempt_details(attempt: Attempt) -> list[tuple[str, str]]:
    """How the attempt stopped or failed to launch, as (label, text) lines; only what is known."""
    details: list[tuple[str, str]] = []
    if attempt.stop_code or attempt.stopped_reason:
        details.append(("stopped", f"{attempt.stop_code or '-'}: {attempt.stopped_reason or '-'}"))
    if attempt.container_reason:
        details.append(("container", attempt.container_reason))
    if attempt.error:
        details.append(("dispatch", attempt.error))
    if attempt.note:
        details.append(("sweep", attempt.note))
    details.extend(("RunTask failure", json.dumps(failure)) for failure in attempt.launch_failures)
    if len(attempt.tries) > 1:  # a fallback happened: show every try
        details.extend(("RunTask try", json.dumps(entry, default=str)) for entry in attempt.tries)
    return details


# --- logs ---------------------------------------------------------------------------------------------


@cli.command(context_settings=CONTEXT_SETTINGS)
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
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line: timestamp, message.")
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
    emit = _event_printer(as_json)
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
            click.echo(f"(no log events in {location.group} {location.stream})", err=True)
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
    emit = _event_printer(as_json)

    def announce(attempt: Attempt) -> None:
        if not as_json:
            click.echo(f"--- attempt {attempt.number}: {attempt.log_group} {attempt.log_stream}", err=True)

    for event in reader.follow(
        lambda: table.get(job.job_id), attempt_number, interval=interval, on_attempt=announce
    ):
        emit(event)
    final = table.get(job.job_id)
    if final is not None and final.status in UNSUCCESSFUL:
        click.echo(f"job {job.job_id} ended {final.status.value}", err=True)
        ctx.exit(ExitCode.FAILED)


def _event_printer(as_json: bool) -> Callable[[LogEvent], None]:
    def emit(event: LogEvent) -> None:
        if as_json:
            click.echo(json.dumps(event.to_dict()))
        else:
            click.echo(f"{event.at} {event.message}")

    return emit


# --- stats --------------------------------------------------------------------------------------------


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("--batch", callback=batch_value, help="Only this batch.")
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
    since: str,
    until: str | None,
    catalog_path: str | None,
    max_jobs: int,
    as_json: bool,
) -> None:
    """Per batch and strategy: jobs, success rate, p50/p95 start latency and run time, estimated cost.

    Cost is an estimate: Fargate's per-second price from image pull to stop, one-minute minimum; Fargate
    Spot taken as 70% below on-demand; nothing for EC2 capacity.
    """
    from batchgate.domain.catalog import CatalogError, load_catalog

    state = app(ctx)
    try:
        catalog = load_catalog(catalog_path)
    except CatalogError as error:
        raise ConfigError(str(error)) from error
    sizes = {name: TaskSize(cpu=spec.cpu, memory=spec.memory) for name, spec in catalog.batches.items()}
    job_filter = JobFilter(
        batch=batch, since=parse_time(ctx, "--since", since), until=parse_time(ctx, "--until", until)
    )
    region = state.session.region
    selected, left_out = newest_jobs(state.table(), job_filter, max_jobs)
    rows = summarize(selected, sizes, region)
    notes = ["costs are estimates (Fargate Spot taken as 70% below on-demand; EC2 capacity not priced)"]
    if not price_is_listed(region):
        notes.append(f"no Fargate price listed for {region}: us-east-1 prices used")
    if left_out is not None:
        notes.append(left_out)
    if as_json:
        print_json(
            {
                "since": job_filter.since,
                "until": job_filter.until,
                "region": region,
                "jobs": len(selected),
                "truncated": left_out is not None,
                "rows": [row.to_dict() for row in rows],
                "notes": notes,
            }
        )
        return
    render_stats(state.console, rows, job_filter, notes)


def newest_jobs(table: JobTable, job_filter: JobFilter, max_jobs: int) -> tuple[list[Job], str | None]:
    """The newest `max_jobs` jobs of the filter (of every status), and, when older ones were left out,
    a note that says which."""
    selected: list[Job] = []
    for job in JobSearch(table).each(job_filter):
        if len(selected) >= max_jobs:
            return selected, (
                f"only the newest {max_jobs} jobs (--max-jobs), queued {selected[-1].created_at} or later: "
                f"older jobs of the window, queued {job.created_at} or earlier, are left out"
            )
        selected.append(job)
    return selected, None


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def render_stats(console: Console, rows: list[StatsRow], job_filter: JobFilter, notes: list[str]) -> None:
    if not rows:
        console.print(plain("No jobs found" + _filter_words(job_filter) + "."))
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in (
        "BATCH",
        "STRATEGY",
        "JOBS",
        "OK",
        "FAILED",
        "SUCCESS",
        "START p50",
        "START p95",
        "RUN p50",
        "RUN p95",
        "EST. COST",
    ):
        table.add_column(name, no_wrap=True, justify="left" if name in ("BATCH", "STRATEGY") else "right")
    for row in rows:
        data = row.to_dict()
        cost = f"${data['estimated_cost_usd']:.4f}" + ("" if row.cost_complete else "+")
        table.add_row(
            plain(row.batch),
            plain(row.strategy),
            plain(row.jobs),
            plain(row.succeeded),
            plain(row.failed),
            plain(_percent(row.success_rate)),
            plain(job_views.format_duration(data["start_latency_p50_seconds"])),
            plain(job_views.format_duration(data["start_latency_p95_seconds"])),
            plain(job_views.format_duration(data["run_time_p50_seconds"])),
            plain(job_views.format_duration(data["run_time_p95_seconds"])),
            plain(cost),
        )
    console.print(table)
    console.print(plain("window:" + _filter_words(job_filter)), style="dim")
    for note in notes:
        console.print(plain(f"note: {note}"), style="dim")
    if any(not row.cost_complete for row in rows):
        console.print(
            plain("note: '+' marks a cost that leaves out running jobs or strategies without a price"),
            style="dim",
        )


# --- whatif -------------------------------------------------------------------------------------------


@cli.command(context_settings=CONTEXT_SETTINGS)
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
    Policies: a dedicated batch server, a fixed EC2 fleet, all Fargate, all Fargate Spot, and
    batchgate's adaptive policy (plan_launch with a small EC2 fleet). The jobs come from the job table
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
        print_json(
            {
                "source": trace.source,
                "window": {"start": trace.window_start, "end": trace.window_end, "jobs": len(trace.jobs)},
                "skipped": trace.skipped,
                "measured_start_p50_seconds": measured,
                "settings": settings.to_dict(),
                "policies": [outcome.to_dict() for outcome in outcomes],
                "notes": extra,
                "files": written,
            }
        )
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
    selected, left_out = newest_jobs(table, job_filter, max_jobs)
    sizes = {name: TaskSize(cpu=spec.cpu, memory=spec.memory) for name, spec in catalog.batches.items()}
    end = job_filter.until or iso(state.clock())
    start = job_filter.since or end
    if left_out is not None:
        # The replay covers only the span of the jobs kept, so that its monthly figures are not
        # diluted over the part of the window left out.
        start = selected[-1].created_at
        notes.append(f"{left_out}; the replay window starts at {start}")
    window = (parse_iso(start).timestamp(), parse_iso(end).timestamp())
    return trace_from_jobs(selected, sizes, window, source=f"job table {table.table_name}")


def render_whatif(
    console: Console,
    trace: Trace,
    outcomes: Sequence[PolicyOutcome],
    settings: WhatIfSettings,
    notes: Sequence[str],
) -> None:
    from batchgate.ops.whatif.report import COLUMNS, rows, window_text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in COLUMNS:
        table.add_column(
            name, no_wrap=True, justify="left" if name in ("POLICY", "SPOF", "RAN ON") else "right"
        )
    for row in rows(outcomes):
        table.add_row(*(plain(cell) for cell in row))
    console.print(table)
    console.print(plain(window_text(trace, settings)), style="dim")
    for note in notes:
        console.print(plain(note if note.startswith("wrote ") else f"note: {note}"), style="dim")


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


# --- cancel and retry ---------------------------------------------------------------------------------


@cli.command(context_settings=CONTEXT_SETTINGS)
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
        job = cancel_job(table, ecs, job_id, who, clock=state.clock)
    except CancelError as error:
        raise Failure(str(error)) from error
    attempt = job.attempt
    task = attempt.task_arn if attempt is not None else None
    again = before.status is JobStatus.CANCELLED
    if as_json:
        print_json(
            {
                "job_id": job.job_id,
                "status": job.status.value,
                "reason": job.reason,
                "task_arn": task,
                "was_already_cancelled": again,
            }
        )
        return
    console = state.console
    console.print(Text(job_id, style="bold") + Text(" ") + status_text(job.status))
    console.print(plain(job.reason), style="dim")
    if task:
        verb = "asked ECS again to stop" if again else "asked ECS to stop"
        console.print(plain(f"{verb} task {task}"), style="dim", soft_wrap=True)
    elif attempt is None:
        console.print(plain("no task had started: dispatch will not launch it"), style="dim")


def _cluster_for(session: AwsSession, job: Job) -> str:
    """The job's cluster: the stack's (or --cluster), else the one its task ARN names."""
    configured = session.optional_resource("cluster")
    if configured:
        return configured
    for attempt in reversed(job.attempts):
        named = _cluster_in(attempt.task_arn) if attempt.task_arn else None
        if named:
            return named
    if job.attempt is None or job.status.is_terminal:
        return ""  # nothing to stop, so ECS is not called
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


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("job_id", metavar="JOB", callback=job_id_value)
@json_option
@target_options(hidden=True)
@click.pass_context
def retry(ctx: click.Context, *, job_id: str, as_json: bool) -> None:
    """Submit a finished job again (same batch, arguments, environment) as a new, linked job.

    The new job's idempotency key is `retry-of:<JOB>:<n>`. Exits 1 when the job is not found, has not
    ended yet, or was rejected.
    """
    from batchgate.client import BatchClient
    from batchgate.domain.messages import RejectedMessage

    state = app(ctx)
    session = state.session
    plan = plan_retry(state.table(), job_id)
    submit_arguments = plan.submit_arguments()
    client = BatchClient(session.resource("queue_url"), session.client("sqs"))
    try:
        receipt = client.submit(
            submit_arguments.pop("batch"), submit_arguments.pop("arguments"), **submit_arguments
        )
    except RejectedMessage as rejected:
        raise Failure(f"the retry of {job_id} would be rejected: {rejected.reason}") from rejected
    new_job_id = receipt.job_id_hint or plan.job_id
    if as_json:
        print_json(
            {
                "job_id": new_job_id,
                "retry_of": job_id,
                "idempotency_key": plan.idempotency_key,
                "message_id": receipt.message_id,
            }
        )
        return
    console = state.console
    console.print(Text(new_job_id, style="bold"))
    console.print(plain(f"retry of {job_id} (idempotency key {plan.idempotency_key})"), style="dim")


# --- dead-letter queues -------------------------------------------------------------------------------

QUEUE_CHOICE = click.Choice([*QUEUES, "all"], case_sensitive=False)
QUEUE_RESOURCES = {JOBS: "jobs_dlq_url", TRACK: "track_dlq_url", HISTORY: "history_dlq_url"}


@cli.group(context_settings=CONTEXT_SETTINGS)
def dlq() -> None:
    """The dead-letter queues: submit messages dispatch could not handle (jobs), task events the
    track function failed on (track), and batches of the job table's stream the history function
    failed on (history)."""


def _queues(ctx: click.Context, which: str) -> list[DeadLetterQueue]:
    session = app(ctx).session
    if which != "all":
        return [DeadLetterQueue(which, session.resource(QUEUE_RESOURCES[which]))]
    queues = [DeadLetterQueue(name, session.resource(QUEUE_RESOURCES[name])) for name in (JOBS, TRACK)]
    # A stack deployed before the history function has no history queue: "all" is then the other two.
    history_url = session.optional_resource(QUEUE_RESOURCES[HISTORY])
    if history_url:
        queues.append(DeadLetterQueue(HISTORY, history_url))
    return queues


@dlq.command("list", context_settings=CONTEXT_SETTINGS)
@click.option("--queue", "which", type=QUEUE_CHOICE, default="all", show_default=True)
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=50, show_default=True, help="Per queue.")
@json_option
@target_options(hidden=True)
@click.pass_context
def dlq_list(ctx: click.Context, *, which: str, limit: int, as_json: bool) -> None:
    """Show the messages in the dead-letter queues (a peek: they stay in the queue)."""
    state = app(ctx)
    letters_client = DeadLetters(state.session.client("sqs"))
    found: dict[str, list[DeadLetter]] = {}
    depth: dict[str, int] = {}
    for queue in _queues(ctx, which.lower()):
        depth[queue.name] = letters_client.depth(queue)
        found[queue.name] = letters_client.peek(queue, limit)
    if as_json:
        print_json(
            {
                "queues": [
                    {
                        "queue": name,
                        "approximate_depth": depth[name],
                        "messages": [letter.to_dict() for letter in letters],
                    }
                    for name, letters in found.items()
                ]
            }
        )
        return
    console = state.console
    for name, letters in found.items():
        console.print(Text(f"{name} dead-letter queue", style="bold") + plain(f"  ~{depth[name]} messages"))
        if not letters:
            console.print(plain("  empty"), style="dim")
            continue
        table = Table(box=None, pad_edge=False, header_style="dim")
        for column in ("  MESSAGE ID", "SENT (UTC)", "RECEIVES", "JOB", "ABOUT"):
            table.add_column(column, no_wrap=column != "ABOUT")
        for letter in letters:
            summary = letter.summary
            about = _letter_about(summary)
            table.add_row(
                plain("  " + letter.message_id),
                plain(short_time(letter.sent_at)),
                plain(letter.receive_count),
                plain(summary.get("job_id")),
                plain(about),
            )
        console.print(table)


def _redrive_move(session: AwsSession, queue: DeadLetterQueue, limit: int) -> Callable[[], RedriveResult]:
    """The redrive of one queue, its destination resolved now (raises ConfigurationError)."""
    if queue.name == JOBS:
        letters = DeadLetters(session.client("sqs"))
        return partial(letters.redrive_to_queue, queue, session.resource("queue_url"), limit)
    if queue.name == TRACK:
        letters = DeadLetters(session.client("sqs"), session.client("lambda"))
        return partial(letters.redrive_to_function, queue, session.resource("track_function"), limit)
    letters = DeadLetters(
        session.client("sqs"),
        session.client("lambda"),
        session.client("dynamodbstreams"),
        region=session.region,
    )
    return partial(letters.redrive_to_stream_function, queue, session.resource("history_function"), limit)


def _letter_about(summary: dict[str, Any]) -> str:
    if summary.get("shard_id"):
        return _stream_batch_about(summary)
    parts = []
    if summary.get("kind") == "relaunch" and summary.get("attempt"):
        parts.append(f"relaunch of attempt {summary['attempt']}")
    if summary.get("batch"):
        parts.append(f"batch {summary['batch']}")
    if summary.get("last_status"):
        parts.append(f"task {summary['last_status']} v{summary.get('version')}")
    for name, value in (summary.get("error") or {}).items():
        if name in ("ErrorMessage", "ERROR_MESSAGE", "ErrorCode", "ERROR_CODE", "errorType", "errorMessage"):
            parts.append(str(value))
    if summary.get("note"):
        parts.append(str(summary["note"]))
    return "; ".join(parts)


def _stream_batch_about(summary: dict[str, Any]) -> str:
    """A history dead letter: the records it names, and why Lambda gave up on them."""
    stream = str(summary.get("stream_arn") or "")
    _, _, table_and_label = stream.partition(":table/")
    parts = [
        f"stream {table_and_label or stream or '-'}",
        f"shard {summary['shard_id']}",
        f"records {summary.get('start_sequence_number')}..{summary.get('end_sequence_number')}"
        f" ({summary.get('batch_size')})",
    ]
    error = summary.get("error") or {}
    if error.get("condition"):
        parts.append(f"{error['condition']} after {error.get('approximateInvokeCount', '?')} invocations")
    if error.get("functionError"):
        parts.append(f"function error {error['functionError']}")
    if summary.get("first_record_at"):
        parts.append(
            f"arrived {short_time(summary['first_record_at'])}..{short_time(summary.get('last_record_at'))}"
        )
    return "; ".join(parts)


@dlq.command("redrive", context_settings=CONTEXT_SETTINGS)
@click.option("--queue", "which", type=QUEUE_CHOICE, default="all", show_default=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True, help="Per queue.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@target_options(hidden=True)
@click.pass_context
def dlq_redrive(ctx: click.Context, *, which: str, limit: int, yes: bool, as_json: bool) -> None:
    """Send dead letters back: submit messages to the jobs queue, task events to the track function,
    the stream records a history message names to the history function.

    A message is deleted from the dead-letter queue only after it was sent, so a failure can repeat a
    message but never lose one (dispatch and track both ignore repeats). History records are read from
    the job table's stream, which keeps them 24 hours; a message whose records have left it stays.
    """
    state = app(ctx)
    session = state.session
    queues = _queues(ctx, which.lower())
    # Every destination is resolved before any message moves: a configuration error moves nothing.
    moves = [_redrive_move(session, queue, limit) for queue in queues]
    where = {JOBS: "the jobs queue", TRACK: "the track function", HISTORY: "the history function"}
    if not yes:
        names = " and ".join(f"{queue.name} DLQ -> {where[queue.name]}" for queue in queues)
        click.confirm(f"Redrive up to {limit} messages per queue ({names})?", abort=True, err=True)
    results: list[RedriveResult] = []
    try:
        for move in moves:
            results.append(move())
    except RedriveStopped as stopped:
        results.append(stopped.result)
        for result in results:  # on stderr, with the error: stdout stays empty on an error
            click.echo(
                f"before the error, {result.queue}: moved {len(result.moved)} to {result.destination}"
                + (f", {len(result.failed)} not redriven" if result.failed else ""),
                err=True,
            )
        raise stopped.error from stopped
    if as_json:
        print_json({"results": [result.to_dict() for result in results]})
    else:
        for result in results:
            state.console.print(plain(f"{result.queue}: moved {len(result.moved)} to {result.destination}"))
            for message_id, error in result.failed:
                state.console.print(plain(f"  failed {message_id}: {error}"), style="red")
            if result.records_gone:
                state.console.print(
                    plain(
                        f"  {len(result.records_gone)} message(s) name records that have left the job "
                        "table's stream: the history misses those attempts (the job items are "
                        "unaffected); the messages stay in the queue"
                    ),
                    style="yellow",
                )
    if any(result.failed for result in results):
        ctx.exit(ExitCode.FAILED)


if __name__ == "__main__":  # pragma: no cover
    main()
