"""Which stack a command works on: the options that say it, accepted before or after the command name,
stored in ctx.obj's Target (resolved to AWS resources by batchgate.ops.stack_outputs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from batchgate.ops.cli.context import app

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
    "pool_table": "pool_table_name",
    "pool_queue_urls": "pool_queue_urls",
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
    typed = ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    if typed:
        option = max(param.opts, key=len)
        app(ctx).target_arguments[option] = None if value is True else str(value)
    if current and not typed:
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
            option("--pool-table", help="Warm pools' heartbeat table (pools, show of a WARM job)."),
            option("--pool-queue-urls", metavar="POOL=URL,...", help="Warm pools' work queues (pools)."),
        ]
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return decorate
