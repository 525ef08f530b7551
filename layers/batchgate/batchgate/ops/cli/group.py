"""The `batchgate` group: its commands, the stack options it documents, the errors it turns into exit
codes, and the command groups it loads only when used."""

from __future__ import annotations

import errno
import gc
import importlib
from typing import Any, ClassVar

import click
from botocore.exceptions import BotoCoreError, ClientError

from batchgate.ops.cli.context import app, silence_stdout
from batchgate.ops.cli.dlq import dlq
from batchgate.ops.cli.events import events
from batchgate.ops.cli.exits import AwsFailure, ConfigError, ExitCode, Failure
from batchgate.ops.cli.jobs import jobs, show
from batchgate.ops.cli.logs import logs
from batchgate.ops.cli.options import CONTEXT_SETTINGS
from batchgate.ops.cli.pools import pools
from batchgate.ops.cli.schedules import schedules
from batchgate.ops.cli.stats import stats
from batchgate.ops.cli.submit import cancel, retry, submit
from batchgate.ops.cli.target import target_options
from batchgate.ops.cli.whatif import whatif
from batchgate.ops.job_search import InvalidToken
from batchgate.ops.resubmit import JobNotFound, Refused
from batchgate.ops.stack_outputs import ConfigurationError


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
            return self._invoke_mapping_errors(ctx)
        except KeyboardInterrupt:
            # Ctrl-C (logs --follow): the shell's code for SIGINT, without click's "Aborted!".
            raise click.exceptions.Exit(ExitCode.INTERRUPTED) from None
        except OSError as error:
            if error.errno != errno.EPIPE:
                raise
            silence_stdout()  # the reader went away (`| head -1`): not an error
            raise click.exceptions.Exit(ExitCode.OK) from None

    def _invoke_mapping_errors(self, ctx: click.Context) -> Any:
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
    2 usage or configuration; 3 an AWS call failed; 130 interrupted (Ctrl-C).
    A reader that stops reading (| head) is not an error: 0.
    """
    app(ctx)


for _command in (submit, jobs, show, logs, stats, whatif, cancel, retry, dlq, pools, schedules, events):
    cli.add_command(_command)


def main() -> None:
    try:
        cli(prog_name="batchgate")
    finally:
        # The interpreter's last garbage collection at exit walks every object the SDK and the CLI
        # loaded (about half a second, each command); the process is ending, nothing needs collecting.
        gc.freeze()
