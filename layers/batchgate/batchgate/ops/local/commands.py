"""`batchgate local`: the embedded local stack's commands (`up`, `demo`)."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from batchgate.domain.catalog import CatalogError
from batchgate.ops.cli.context import PIPE_WIDTH
from batchgate.ops.cli.options import name_value_pairs
from batchgate.ops.cli.render.terminal import TerminalConsole
from batchgate.ops.local.demo import run_demo
from batchgate.ops.local.endpoint import export_line
from batchgate.ops.local.errors import StackFailure
from batchgate.ops.local.executor import START_PROFILES, StartDelays
from batchgate.ops.local.stack import LocalStack, StackOptions, find_root
from batchgate.ops.stack_outputs import local_state_path, running_owner

CHECK_SECONDS = 1.0
DEMO_START_PROFILE = ("production", 0.05)  # a glimpse of PROVISIONING and PENDING: 2.5 s on Fargate
DEMO_SCHEDULE_SECONDS = 2.0  # the sweep, if the template has it, every 2 s: timeouts show within the demo


def make_console() -> Console:
    """Wide when piped (make, CI logs), like the rest of the CLI; what the functions and tasks print
    (--verbose) is shown with its control characters escaped, as the CLI's output is."""
    console = TerminalConsole(highlight=False)
    return console if console.is_terminal else TerminalConsole(highlight=False, width=PIPE_WIDTH)


def stack_options[F: Callable[..., Any]](function: F) -> F:
    decorators = [
        click.option(
            "--root",
            type=click.Path(file_okay=False, path_type=Path),
            help="Repository (default: found from here).",
        ),
        click.option("--region", default="us-east-1", show_default=True),
        click.option(
            "--catalog",
            type=click.Path(dir_okay=False, exists=True, path_type=Path),
            help="Catalog file (default: the packaged one).",
        ),
        click.option(
            "--parameter",
            "parameters",
            multiple=True,
            metavar="NAME=VALUE",
            help="Template parameter (repeatable).",
        ),
        click.option(
            "--start-profile", type=click.Choice(sorted(START_PROFILES)), help="Simulated task start delays."
        ),
        click.option("--start-scale", type=click.FloatRange(min=0), help="Multiplies the start delays."),
        click.option(
            "--concurrency",
            type=click.IntRange(1, 16),
            default=1,
            show_default=True,
            help="Execution environments per function.",
        ),
        click.option(
            "--no-watchdog",
            is_flag=True,
            help="Without a scheduled sweep in the template, let tasks run past their batch's timeout.",
        ),
        click.option(
            "--schedule-seconds",
            type=click.FloatRange(min=0.5),
            help="Run scheduled functions (the sweep) this often instead of at their schedule's rate.",
        ),
        click.option(
            "--schedule-speed",
            type=click.FloatRange(min=0),
            default=1.0,
            show_default=True,
            help="Fire the catalog's schedules with their clock this many times faster (3600: an hourly "
            "schedule every second); 0: not at all.",
        ),
        click.option(
            "--log-level",
            type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
            help="The functions' POWERTOOLS_LOG_LEVEL.",
        ),
        click.option(
            "--image",
            "images",
            multiple=True,
            metavar="FAMILY=IMAGE",
            help="Run a task definition family's tasks in Docker with this local image (repeatable).",
        ),
        click.option(
            "--no-docker",
            is_flag=True,
            help="Run every task as a local process, even where Docker has the task definition's image.",
        ),
        click.option(
            "--pool-tasks",
            type=click.IntRange(0, 16),
            help="Worker processes per warm pool (default: each pool's first schedule window's tasks, the "
            "pool open; 0: every pool closed, warm jobs go to ECS).",
        ),
        click.option("--verbose", "-v", is_flag=True, help="Also print the functions' output here."),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def build_options(
    console: Console, default_profile: tuple[str, float], default_schedule: float | None, **given: Any
) -> StackOptions:
    profile = given["start_profile"] or default_profile[0]
    scale = given["start_scale"] if given["start_scale"] is not None else default_profile[1]
    return StackOptions(
        root=find_root(given["root"]),
        region=given["region"],
        catalog_path=given["catalog"],
        parameters=name_value_pairs(given["parameters"], "--parameter"),
        delays=StartDelays.profile(profile, scale),
        concurrency=given["concurrency"],
        watchdog=False if given["no_watchdog"] else None,
        schedule_seconds=given["schedule_seconds"] or default_schedule,
        log_level=given["log_level"],
        echo=(lambda line: console.print(line, highlight=False, markup=False)) if given["verbose"] else None,
        docker=not given["no_docker"],
        images=name_value_pairs(given["images"], "--image", "FAMILY=IMAGE"),
        pool_tasks=given["pool_tasks"],
        schedule_speed=given["schedule_speed"],
    )


@click.group("local", context_settings={"help_option_names": ["-h", "--help"]})
def local_group() -> None:
    """The embedded local stack: the whole product on this machine, no AWS account.

    \b
    A local AWS endpoint (moto) with the queues, table and rule created from template.yaml; the
    real dispatch and track handlers; tasks run in Docker where the engine has their image, else as
    local processes from samples/, with their output in CloudWatch Logs and their state changes as
    ECS events.
    """


@local_group.command("up")
@stack_options
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="State file the CLI reads (default: $BATCHGATE_LOCAL_STATE or ~/.batchgate/local.json).",
)
@click.option(
    "--sam-endpoint",
    metavar="URL",
    help="Endpoint written into the `sam local invoke` env-vars file (default: the local endpoint, which a "
    "container reaches with `sam local invoke --docker-network host`).",
)
def up(state_file: Path | None, sam_endpoint: str | None, **given: Any) -> None:
    """Start the local stack and keep it running until Ctrl-C (or SIGTERM)."""
    console = make_console()
    state_path = state_file or local_state_path()
    _refuse_a_running_stack(console, state_path)
    options = build_options(console, ("none", 1.0), None, **given)
    try:
        stack = LocalStack(replace(options, state_path=state_path, sam_endpoint_url=sam_endpoint))
    except CatalogError as error:
        raise click.ClickException(str(error)) from error
    started = time.monotonic()
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, request_stop)
    try:
        stack.start()
        _print_ready(console, stack, state_path, time.monotonic() - started)
        while not stop.wait(CHECK_SECONDS):
            stack.check()
    except KeyboardInterrupt:
        pass
    except StackFailure as error:
        raise click.ClickException(str(error)) from error
    finally:
        console.print("stopping the local stack")
        stack.stop()
        signal.signal(signal.SIGTERM, previous)


def _refuse_a_running_stack(console: Console, state_path: Path) -> None:
    """Another `up` on the same state file would overwrite it, then delete it on exit, leaving the
    first stack running but unreachable."""
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        return
    owner = running_owner(state) if isinstance(state, dict) else None
    if owner:
        raise click.ClickException(
            f"a local stack (process {state['pid']}) is already running with the state file {state_path}: "
            "stop it first (Ctrl-C where it runs), or start another one with --state-file"
        )
    if owner is False:
        console.print(
            f"replacing the stale state file {state_path} (its stack, process {state['pid']}, has ended)"
        )


@local_group.command("demo")
@stack_options
def demo(**given: Any) -> None:
    """Run the demo workload on a fresh local stack, print the job table, and stop.

    Exits 0 when every demo job ended as expected, 1 otherwise.
    """
    console = make_console()
    options = build_options(console, DEMO_START_PROFILE, DEMO_SCHEDULE_SECONDS, **given)
    try:
        code = run_demo(options, console)
    except (StackFailure, CatalogError) as error:
        raise click.ClickException(str(error)) from error
    raise SystemExit(code)


def _task_runner(stack: LocalStack) -> str:
    if stack.docker is None:
        return "as local processes in samples/"
    return f"in Docker ({stack.docker.binary}) where it has the image, else as local processes in samples/"


def _print_ready(console: Console, stack: LocalStack, state_path: Path, seconds: float) -> None:
    state = stack.state()
    endpoint, queue = state["endpoint_url"], state["queue_url"]
    console.print(
        f"[bold green]batchgate local stack is up[/] ({seconds:.1f}s), resources from template.yaml"
    )
    for label, value in (
        ("endpoint", endpoint),
        ("jobs queue", queue),
        ("job table", state["table_name"]),
        ("cluster", state["cluster"]),
        ("state file", state_path),
        ("sam env", stack.sam_env_path),
        ("tasks run", _task_runner(stack)),
    ):
        console.print(f"  {label:<11} {value}", markup=False)
    for line in stack.skipped:
        console.print(f"  [dim]not created: {escape(line)}[/]")
    local = "--local" if state_path == local_state_path() else f"--local --local-state {state_path}"
    console.print(
        "\nThe CLI reads the state file:\n"
        f"  batchgate {local} submit payroll-calculation 2026-11\n"
        f"  batchgate {local} jobs\n"
        f"  batchgate {local} events --follow\n"
        "An application (any AWS SDK) points at the endpoint:\n"
        f"  {export_line(endpoint, state['region'])}\n"
        f"  BatchClient({queue!r}).submit('payroll-calculation', ['2026-11'])\n"
        "sam local invoke runs a function against it (make build first):\n"
        f"  sam local invoke TrackFunction --event events/task-running.json --env-vars {stack.sam_env_path} "
        "--docker-network host\n"
        "Ctrl-C stops the stack.",
        markup=False,
    )
