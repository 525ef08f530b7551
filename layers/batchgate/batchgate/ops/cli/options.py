"""Options and arguments several commands share, and what they turn into: times, statuses, job ids,
batch names, NAME=VALUE pairs, and the job a JOB argument or --batch with --key/--at selects."""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast, overload

import click

from batchgate.domain.jobs import Job, JobStatus, is_job_id, iso, job_id_for, parse_iso
from batchgate.ops import job_views
from batchgate.ops.cli.context import app
from batchgate.ops.cli.exits import Failure
from batchgate.ops.resubmit import JobNotFound
from batchgate.ops.terminal import terminal_text

if TYPE_CHECKING:
    from batchgate.domain.catalog import Catalog

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
DEFAULT_LIMIT = 25
MAX_LIMIT = 1000
# `--status not-ok`: every way a job ends without success (exits.UNSUCCESSFUL, in this order).
STATUS_GROUPS: dict[str, tuple[JobStatus, ...]] = {
    "not-ok": (JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.REJECTED, JobStatus.CANCELLED)
}
# `show --batch B --at T`: how long before T the job found may have been queued (a job of another day is
# rarely the one meant).
DEFAULT_WITHIN = "1d"
DEFAULT_WITHIN_SECONDS = 86400.0
WITHIN_META = "batchgate.within_seconds"
TENANT_META = "batchgate.tenant"
# Every job id fits ECS's startedBy (128 characters); anything longer names no job.
MAX_JOB_ID_LENGTH = 128


OUTPUT_CHOICE = click.Choice(["json", "table", "text"], case_sensitive=False)


@overload
def json_option[F: Callable[..., Any]](function: F) -> F: ...
@overload
def json_option[F: Callable[..., Any]](*, help: str) -> Callable[[F], F]: ...
def json_option[F: Callable[..., Any]](
    function: F | None = None, *, help: str = "Print JSON for scripts."
) -> F | Callable[[F], F]:
    """`--json`, and the AWS CLI's `--output json|table|text` beside it: the command gets `as_json`
    (`--output json` is `--json`; `table` and `text` are the human output, the default)."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def merged(*args: Any, output: str | None, **kwargs: Any) -> Any:
            if output is not None and output.lower() != "json" and kwargs["as_json"]:
                raise click.UsageError(f"--json and --output {output} contradict each other")
            kwargs["as_json"] = kwargs["as_json"] or (output is not None and output.lower() == "json")
            return command(*args, **kwargs)

        decorated = click.option("--json", "as_json", is_flag=True, help=help)(merged)
        decorated = click.option(
            "--output",
            type=OUTPUT_CHOICE,
            help="As the AWS CLI: json is --json; table and text print the human output (the default).",
        )(decorated)
        return cast(F, decorated)

    return decorate(function) if function is not None else decorate


def reveal_environment_option[F: Callable[..., Any]](function: F) -> F:
    """`--reveal-env`: the command gets `reveal_environment` (environment values are masked without it)."""
    return click.option(
        "--reveal-env",
        "reveal_environment",
        is_flag=True,
        help="Show environment values (masked as *** by default, in raw messages too).",
    )(function)


def parse_time(ctx: click.Context, option: str, text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return iso(job_views.parse_moment(text, app(ctx).clock()))
    except ValueError as error:
        raise click.BadParameter(str(error), ctx=ctx, param_hint=option) from error


def status_values(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> tuple[JobStatus, ...]:
    """--status, repeatable, each a status (any case), a comma list of them, or a group (not-ok)."""
    statuses: list[JobStatus] = []
    for value in values:
        for word in (part.strip() for part in value.split(",")):
            if not word:
                continue
            group = STATUS_GROUPS.get(word.lower())
            if group is not None:
                statuses.extend(group)
                continue
            try:
                statuses.append(JobStatus(word.upper()))
            except ValueError:
                known = ", ".join([*(status.value for status in JobStatus), *STATUS_GROUPS])
                raise click.BadParameter(
                    f"{word!r} is not a status ({known})", ctx=ctx, param=param
                ) from None
    return tuple(statuses)


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


def tenant_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A --tenant option, refused before any AWS call unless it matches the submit message's pattern
    (no job can have another tenant: a typo would otherwise answer "no jobs found")."""
    from batchgate.domain.messages import TENANT_PATTERN

    if value is not None and not re.fullmatch(TENANT_PATTERN, value):
        raise click.BadParameter(
            f"{value!r} is not a tenant: tenants match {TENANT_PATTERN}", ctx=ctx, param=param
        )
    return value


def tenant_option[F: Callable[..., Any]](function: F) -> F:
    """`--tenant NAME`: only the jobs of this tenant (the command gets `tenant`)."""
    return click.option(
        "--tenant", callback=tenant_value, help="Only this tenant's jobs (the submit message's tenant)."
    )(function)


def known_batch(ctx: click.Context, batch: str | None, catalog: Catalog | None = None) -> None:
    """A --batch the catalog does not list is a usage error naming the nearest batch it does: a typo
    would otherwise answer "no jobs found", which reads as "it did not run". `catalog`: the command's
    own (--catalog), else $BATCHGATE_CATALOG or the packaged one; one that cannot be read checks
    nothing."""
    from batchgate.domain.catalog import CatalogError, load_catalog

    if batch is None:
        return
    if catalog is None:
        try:
            catalog = load_catalog()
        except CatalogError:
            return
    if batch in catalog.batches:
        return
    nearest = difflib.get_close_matches(batch, list(catalog.batches), n=1, cutoff=0.5)
    hint = f"did you mean {nearest[0]}?" if nearest else f"its batches: {', '.join(sorted(catalog.batches))}"
    message = f"{batch!r} is not a batch of the catalog; {hint}"
    raise click.BadParameter(message, ctx=ctx, param_hint="--batch")


def name_value_pairs(values: Iterable[str], option: str, metavar: str = "NAME=VALUE") -> dict[str, str]:
    """Repeated `NAME=VALUE` options as a dict (a later name wins); a usage error names the option."""
    pairs: dict[str, str] = {}
    for value in values:
        name, separator, content = value.partition("=")
        if not separator or not name:
            raise click.BadParameter(f"{value!r} is not {metavar}", param_hint=option)
        pairs[name] = content
    return pairs


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
        click.option(
            "--tenant",
            expose_value=False,
            callback=_remember_tenant,
            help="With --batch and --at: the job of this tenant queued nearest that time (before or after).",
        ),
        click.option(
            "--within",
            default=DEFAULT_WITHIN,
            show_default=True,
            expose_value=False,
            callback=_remember_within,
            help="With --at: refuse a job queued longer than this before --at (30m, 6h, 7d; any: no limit).",
        ),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def _remember_tenant(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """--tenant, in ctx.meta, for select_job."""
    ctx.meta[TENANT_META] = tenant_value(ctx, param, value)


def _remember_within(ctx: click.Context, param: click.Parameter, value: str) -> None:
    """--within, as seconds in ctx.meta (None: no limit), for select_job."""
    if value.strip().lower() == "any":
        ctx.meta[WITHIN_META] = None
        return
    if not job_views.is_duration(value):
        raise click.BadParameter(
            f"{value!r} is not a duration such as 30m, 6h or 7d, or any", ctx=ctx, param=param
        )
    now = app(ctx).clock()
    ctx.meta[WITHIN_META] = (now - job_views.parse_moment(value, now)).total_seconds()


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
        if ctx.meta.get(TENANT_META) is not None:
            raise click.UsageError("give --tenant with --batch NAME (and --at TIME)", ctx=ctx)
        raise click.UsageError("give a JOB id, or --batch NAME with --key KEY or --at TIME", ctx=ctx)
    known_batch(ctx, batch)
    tenant = ctx.meta.get(TENANT_META)
    if tenant is not None:
        if idempotency_key is not None:
            raise click.UsageError("give --tenant with --at, not with --key (a key names one job)", ctx=ctx)
        return _tenant_job(ctx, tenant, batch, at)
    if idempotency_key is not None:
        if at is not None:
            raise click.UsageError("give --key or --at, not both", ctx=ctx)
        derived = job_id_for(batch, idempotency_key)
        found = table.get(derived)
        if found is None:
            raise JobNotFound(derived)
        return found
    until = parse_time(ctx, "--at", at or "now")
    assert until is not None
    page = table.query(batch=batch, until=until, limit=1)
    if not page.jobs:
        raise Failure(f"no job of batch {batch} queued at or before {until}")
    job = page.jobs[0]
    gap = (parse_iso(until) - parse_iso(job.created_at)).total_seconds()
    within = ctx.meta.get(WITHIN_META, DEFAULT_WITHIN_SECONDS)
    if at is not None and within is not None and gap > within:
        raise Failure(
            f"the latest job of batch {batch} queued at or before {until} is {job.job_id}, queued "
            f"{job_views.format_duration(gap)} earlier, more than --within "
            f"{job_views.format_duration(within)}: give a wider --within (or --within any) to see it"
        )
    click.echo(
        terminal_text(
            f"{job.job_id}: the latest job of batch {batch} at or before {until}, queued "
            f"{job_views.format_duration(gap)} before it"
        ),
        err=True,
    )
    return job


def _tenant_job(ctx: click.Context, tenant: str, batch: str, at: str | None) -> Job:
    """`--tenant T --batch B --at TIME`: the job of T and B queued nearest TIME, within --within."""
    from batchgate.ops.job_search import nearest_of_tenant

    moment = parse_time(ctx, "--at", at or "now")
    assert moment is not None
    job = nearest_of_tenant(app(ctx).table(), tenant, batch, moment)
    if job is None:
        raise Failure(f"no job of tenant {tenant} and batch {batch}")
    gap = (parse_iso(job.created_at) - parse_iso(moment)).total_seconds()
    side = "after" if gap > 0 else "before"
    within = ctx.meta.get(WITHIN_META, DEFAULT_WITHIN_SECONDS)
    if within is not None and abs(gap) > within:
        raise Failure(
            f"the job of tenant {tenant} and batch {batch} nearest {moment} is {job.job_id}, queued "
            f"{job_views.format_duration(abs(gap))} {side} it, more than --within "
            f"{job_views.format_duration(within)}: give a wider --within (or --within any) to see it"
        )
    click.echo(
        terminal_text(
            f"{job.job_id}: the job of tenant {tenant} and batch {batch} nearest {moment}, queued "
            f"{job_views.format_duration(abs(gap))} {side} it"
        ),
        err=True,
    )
    return job
