"""The catalog: the batches the application may run, and how each one runs.

Only a batch named in the catalog can be launched, with the catalog's task definition, container,
command and resources; a submit message only adds arguments and allowed environment variables. The
file is checked when it is loaded (a Lambda cold start), so a bad catalog fails loudly at deployment
instead of one job at a time; its schedules are checked by the functions that read them (`parse_catalog`).
"""

import json
import os
import re
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from batchgate.domain.jobs import BATCH_NAME_PATTERN
from batchgate.domain.retry_policy import DEFAULT_POLICY, RetryPolicy, RetryPolicyError, parse_retry_policy

if TYPE_CHECKING:
    # Loaded only by a catalog read with its schedules (the sweep, the ops tools).
    from batchgate.domain.schedules import ScheduleSpec

CATALOG_PATH_VARIABLE = "BATCHGATE_CATALOG"
# The package's own files (catalog.json, schemas/) lie beside its modules, on disk in a layer or a
# checkout: read as files, without importlib.resources' readers (modules a cold start would load).
PACKAGE_FILES = Path(__file__).parent.parent
CATALOG_VERSION = 1
STRATEGIES = frozenset({"EC2", "FARGATE", "FARGATE_SPOT"})
MAX_ATTEMPTS_LIMIT = 10
# A batch's `max_running`: each of its running jobs takes about 70 bytes of its slot item, read and
# written with each of its launches (batchgate.adapters.batch_slots).
MAX_RUNNING_LIMIT = 500

LAUNCH_CLASS_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
# ECS limits: a family is up to 255 letters, digits, "-" and "_" (here optionally pinned ":<revision>").
TASK_DEFINITION_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,255}(:[1-9][0-9]*)?$")
CONTAINER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
ENVIRONMENT_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Set by dispatch (BATCHGATE_*) or by AWS and ECS: a message must never be able to override them.
RESERVED_ENVIRONMENT_PREFIXES = ("BATCHGATE_", "AWS_", "ECS_")

# Valid Fargate task sizes, cpu units -> memory MiB. Every batch must fit Fargate, even one whose launch
# class prefers EC2: a plan falls back to Fargate when the deployment has no EC2 capacity.
FARGATE_MEMORY_BY_CPU: Mapping[int, frozenset[int]] = MappingProxyType(
    {
        256: frozenset({512, 1024, 2048}),
        512: frozenset(range(1024, 4096 + 1, 1024)),
        1024: frozenset(range(2048, 8192 + 1, 1024)),
        2048: frozenset(range(4096, 16384 + 1, 1024)),
        4096: frozenset(range(8192, 30720 + 1, 1024)),
        8192: frozenset(range(16384, 61440 + 1, 4096)),
        16384: frozenset(range(32768, 122880 + 1, 8192)),
    }
)

_TOP_LEVEL_FIELDS = frozenset({"version", "launch_classes", "batches"})
_OPTIONAL_TOP_LEVEL_FIELDS = frozenset({"pools", "schedules"})
_LAUNCH_CLASS_FIELDS = frozenset({"strategies", "allowed_preferences"})
_OPTIONAL_LAUNCH_CLASS_FIELDS = frozenset({"objective"})
# What the launch strategy engine optimises for a class (docs/strategy.md).
OBJECTIVES = ("latency", "balanced", "cost")
DEFAULT_OBJECTIVE = "balanced"
_BATCH_FIELDS = frozenset(
    {
        "description",
        "task_definition",
        "container",
        "cpu",
        "memory",
        "command",
        "arguments",
        "timeout_seconds",
        "max_attempts",
        "launch_class",
    }
)
_OPTIONAL_BATCH_FIELDS = frozenset(
    {"environment", "expected_run_seconds", "retry", "pool", "run_mode", "preload", "shell", "max_running"}
)
_POOL_FIELDS = frozenset(
    {"task_definition", "container", "cpu", "memory", "slots", "capacity_provider", "min_tasks", "max_tasks"}
)
_OPTIONAL_POOL_FIELDS = frozenset(
    {"architecture", "max_run_seconds", "schedule", "target_busy_ratio", "offer_seconds"}
)
_SCHEDULE_FIELDS = frozenset({"timezone", "windows"})
_WINDOW_FIELDS = frozenset({"start", "end", "tasks"})
_BATCH_SCHEDULE_FIELDS = frozenset({"batch", "expression", "timezone"})
_OPTIONAL_BATCH_SCHEDULE_FIELDS = frozenset({"arguments", "tenant", "start_tolerance_seconds", "description"})
# A late start is one that misses its slot by more than this at most (a day: the next daily slot).
MAX_START_TOLERANCE_SECONDS = 86400
# Slots whose resolved arguments are checked against the batch's rules when the catalog loads: month and
# year ends, a leap day, both sides of a daylight saving change in either hemisphere.
_SAMPLE_SLOTS = tuple(
    datetime.fromisoformat(text)
    for text in (
        "2026-12-31T23:30:00+00:00",
        "2027-01-01T00:30:00+00:00",
        "2028-02-29T12:00:00+00:00",
        "2026-03-29T01:30:00+00:00",
        "2026-10-04T16:00:00+00:00",
    )
)
POOL_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,23}$")
POOL_CAPACITY_PROVIDERS = frozenset({"FARGATE", "FARGATE_SPOT"})
ARCHITECTURES = frozenset({"X86_64", "ARM64"})
# A pool task gets SIGTERM, then SIGKILL after its stopTimeout (120 s, Fargate's maximum): a warm job
# must be able to finish within it, with margin for reporting its end.
POOL_STOP_TIMEOUT_SECONDS = 120
MAX_POOL_RUN_SECONDS = POOL_STOP_TIMEOUT_SECONDS - 10
DEFAULT_POOL_RUN_SECONDS = 90
MAX_POOL_SLOTS = 16
RUN_MODES = ("command", "preload")
# Application Auto Scaling's cron form: six fields (minutes hours day-of-month month day-of-week year).
POOL_CRON_PATTERN = re.compile(r"^cron\((\S+ ){5}\S+\)$")
TIMEZONE_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$")
PYTHON_MODULE_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
PYTHON_EXECUTABLES = frozenset({"python", "python3", "python3.12"})
_ARGUMENT_FIELDS = frozenset({"min_count", "max_count", "max_length", "pattern"})
_OPTIONAL_ARGUMENT_FIELDS = frozenset({"allow_options", "allow_parent_paths"})
# Where a ".." may stand as a path segment inside an argument ("../x", "a/../b", "out=../x").
_PATH_SEPARATORS = re.compile(r"[/\\=:,]")
# Shells that run their argument as a script: with "-c" a message's arguments would become positional
# parameters of a script, or a script themselves.
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox"})


class CatalogError(ValueError):
    """The catalog file is invalid; the message names the batch (or launch class) and the field."""


class ArgumentRules(NamedTuple):
    """How many arguments a batch takes and what each one may look like."""

    min_count: int
    max_count: int
    max_length: int
    pattern: str
    # Refused unless the batch opts in: an argument starting with "-" (the command would read it as an
    # option) and a ".." path segment (a path out of the directory the batch expects).
    allow_options: bool = False
    allow_parent_paths: bool = False

    def problem(self, arguments: Sequence[str]) -> str | None:
        count = len(arguments)
        if not self.min_count <= count <= self.max_count:
            return f"expects {self._count_text()}, got {count}"
        for position, argument in enumerate(arguments, start=1):
            if len(argument) > self.max_length:
                return (
                    f"argument {position} is {len(argument)} characters long; the limit is {self.max_length}"
                )
            # fullmatch: "$" alone would also accept a trailing newline.
            if re.fullmatch(self.pattern, argument) is None:
                return f"argument {position} ({argument!r}) does not match {self.pattern}"
            if not self.allow_options and argument.startswith("-"):
                return f"argument {position} ({argument!r}) starts with '-': this batch takes no options"
            if not self.allow_parent_paths and ".." in _PATH_SEPARATORS.split(argument):
                return f"argument {position} ({argument!r}) has a '..' path segment: this batch takes none"
        return None

    def _count_text(self) -> str:
        if self.min_count == self.max_count:
            return f"exactly {self.max_count} argument{'s' if self.max_count != 1 else ''}"
        return f"{self.min_count} to {self.max_count} arguments"


class LaunchClass(NamedTuple):
    """Where a class of batches runs: strategies in order of preference, and which preference a
    message may ask for. "EC2" is the deployment's EC2 capacity provider, skipped when there is none."""

    name: str
    strategies: tuple[str, ...]
    allowed_preferences: frozenset[str]
    objective: str = DEFAULT_OBJECTIVE


class BatchSpec(NamedTuple):
    """One batch of the catalog: everything about its task except the message's arguments."""

    name: str
    description: str
    task_definition: str
    container: str
    cpu: int
    memory: int
    command: tuple[str, ...]
    arguments: ArgumentRules
    environment: frozenset[str]
    timeout_seconds: int
    max_attempts: int
    launch_class: LaunchClass
    # Cold-start run time estimate for the launch strategy engine until history exists (None: the
    # launch class objective's default).
    expected_run_seconds: int | None = None
    # What a failed attempt leads to (batchgate.domain.retry_policy); the defaults retry infrastructure
    # failures only.
    retry_policy: RetryPolicy = DEFAULT_POLICY
    # The warm pool that may run it (batchgate.domain.warm), and how: "command" runs the catalog
    # command as a child process; "preload" forks it from a parent that imported `preload` once.
    pool: str | None = None
    run_mode: str = "command"
    preload: tuple[str, ...] = ()
    # At most this many of the batch's jobs launched and not ended at once (warm ones included); the
    # others wait (batchgate.domain.batch_slots). None: no limit but ECS's.
    max_running: int | None = None

    @property
    def python_module(self) -> str | None:
        """The module of a `python -m module` command, else None."""
        command = self.command
        if len(command) >= 3 and command[0] in PYTHON_EXECUTABLES and command[1] == "-m":
            return command[2]
        return None

    def argument_problem(self, arguments: Sequence[str]) -> str | None:
        """None when the arguments are acceptable, else the reason they are not."""
        return self.arguments.problem(arguments)

    def environment_problem(self, environment: Mapping[str, str]) -> str | None:
        """None when every variable is allowed for this batch, else the reason."""
        refused = sorted(name for name in environment if name not in self.environment)
        if not refused:
            return None
        allowed = ", ".join(sorted(self.environment)) if self.environment else "none"
        names = ", ".join(refused)
        noun = "variable" if len(refused) == 1 else "variables"
        return f"environment {noun} {names} not allowed (allowed: {allowed})"


class PoolWindow(NamedTuple):
    """A business-hours window: from `start` to `end` (cron, in the pool's time zone) the pool keeps at
    least `tasks` tasks and may scale to its maximum; outside every window it keeps `min_tasks` at most."""

    start: str
    end: str
    tasks: int


class PoolSpec(NamedTuple):
    """A warm pool: an ECS service of `max_tasks` tasks at most running the image of `task_definition`
    with batchgate's worker as the entry point, `slots` jobs at a time per task."""

    name: str
    task_definition: str
    container: str
    cpu: int
    memory: int
    slots: int
    capacity_provider: str
    min_tasks: int
    max_tasks: int
    architecture: str = "X86_64"
    max_run_seconds: int = DEFAULT_POOL_RUN_SECONDS
    timezone: str = "UTC"
    windows: tuple[PoolWindow, ...] = ()
    # Scale-out target within a window: busy slots / all slots.
    target_busy_ratio: float = 0.7
    # How long dispatch's offer waits for a worker's claim before the job goes to ECS.
    offer_seconds: int = 2

    @property
    def family(self) -> str:
        return task_definition_family(self.task_definition)


class Catalog(NamedTuple):
    """The batches that may run, their launch classes, pools and schedules."""

    batches: Mapping[str, BatchSpec]
    launch_classes: Mapping[str, LaunchClass]
    pools: Mapping[str, PoolSpec] = MappingProxyType({})
    # Declared next to their batch: EventBridge Scheduler schedules (docs/schedules.md).
    schedules: "Mapping[str, ScheduleSpec]" = MappingProxyType({})

    def pool_of(self, spec: BatchSpec) -> PoolSpec | None:
        return self.pools.get(spec.pool) if spec.pool else None

    def batches_of(self, pool: str) -> tuple[BatchSpec, ...]:
        return tuple(spec for _, spec in sorted(self.batches.items()) if spec.pool == pool)

    def get(self, name: str) -> BatchSpec | None:
        return self.batches.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        """Batch names, sorted: for messages that list what is available."""
        return tuple(sorted(self.batches))


def load_catalog(path: str | Path | None = None, *, schedules: bool = True) -> Catalog:
    """Read and check a catalog file: `path`, else $BATCHGATE_CATALOG, else the packaged catalog.json.
    `schedules=False` leaves its schedules unread (see `parse_catalog`)."""
    chosen = path if path is not None else os.environ.get(CATALOG_PATH_VARIABLE) or None
    if chosen is None:
        origin = "packaged catalog.json"
        text = (PACKAGE_FILES / "catalog.json").read_text(encoding="utf-8")
    else:
        origin = f"catalog {chosen}"
        try:
            text = Path(chosen).read_text(encoding="utf-8")
        except OSError as error:
            raise CatalogError(f"{origin}: cannot be read: {error.strerror or error}") from error
    try:
        document = json.loads(text)
    except ValueError as error:
        raise CatalogError(f"{origin}: not valid JSON: {error}") from error
    return parse_catalog(document, origin, schedules=schedules)


def parse_catalog(document: Any, origin: str = "catalog", *, schedules: bool = True) -> Catalog:
    """Build a Catalog from the parsed JSON document, raising CatalogError on the first problem.

    `schedules=False` reads everything but the schedules, the batches' (`Catalog.schedules` is then
    empty) and the pools' (their scaling windows and time zone: none, UTC). Dispatch and track never
    read them (a slot's message carries its schedule, time and zone, and a pool's windows are its
    scaling actions'), and checking them loads the cron parser and the time zone database at every cold
    start. The sweep reads them (a bad schedule fails its cold start), as do the CLI and the template
    generators."""
    top = _Section(document, origin)
    top.require(_TOP_LEVEL_FIELDS, optional=_OPTIONAL_TOP_LEVEL_FIELDS)
    version = top.raw["version"]
    if isinstance(version, bool) or version != CATALOG_VERSION:
        raise top.error(f"version {json.dumps(version)} is not supported (supported: {CATALOG_VERSION})")
    launch_classes = {
        name: _launch_class(name, section)
        for name, section in top.section("launch_classes").named_sections("launch class")
    }
    batch_sections = top.section("batches").named_sections("batch")
    if not batch_sections:
        raise top.error("field 'batches' lists no batch")
    pools = (
        {
            name: _pool(name, section, schedule=schedules)
            for name, section in top.section("pools").named_sections("pool")
        }
        if "pools" in top.raw
        else {}
    )
    batches = {name: _batch(name, section, launch_classes, pools) for name, section in batch_sections}
    declared = (
        {
            name: _schedule(name, section, batches)
            for name, section in top.section("schedules").named_sections("schedule")
        }
        if schedules and "schedules" in top.raw
        else {}
    )
    return Catalog(
        batches=MappingProxyType(batches),
        launch_classes=MappingProxyType(launch_classes),
        pools=MappingProxyType(pools),
        schedules=MappingProxyType(declared),
    )


def _schedule(name: str, section: "_Section", batches: Mapping[str, BatchSpec]) -> "ScheduleSpec":
    """A schedule, refused with the reason when Scheduler would refuse it, when its slots could not be
    known, or when a slot's message could never run its batch."""
    from batchgate.domain.schedule_expressions import ScheduleExpressionError, parse_schedule_expression
    from batchgate.domain.schedules import (
        SCHEDULE_NAME_PATTERN,
        ArgumentTemplateError,
        ScheduleSpec,
        argument_template_problem,
        resolve_arguments,
    )

    if not SCHEDULE_NAME_PATTERN.fullmatch(name):
        raise section.error(
            f"name must match {SCHEDULE_NAME_PATTERN.pattern} (it names the Scheduler schedule and every "
            "slot's idempotency key)"
        )
    section.require(_BATCH_SCHEDULE_FIELDS, optional=_OPTIONAL_BATCH_SCHEDULE_FIELDS)
    batch_name = section.string("batch")
    spec = batches.get(batch_name)
    if spec is None:
        known = ", ".join(sorted(batches))
        raise section.error(f"field 'batch': {batch_name!r} is not a batch of the catalog (batches: {known})")
    try:
        expression = parse_schedule_expression(section.string("expression"))
    except ScheduleExpressionError as error:
        raise section.error(f"field 'expression': {error}") from None
    # Explicit, always: "02:00" means nothing without the zone it is read in.
    timezone = section.string("timezone", TIMEZONE_PATTERN)
    if not _is_known_timezone(timezone):
        raise section.error(f"field 'timezone': {timezone!r} is not an IANA time zone (e.g. Asia/Tokyo)")
    arguments = (
        section.strings("arguments", allow_empty=True, unique=False) if "arguments" in section.raw else ()
    )
    for template in arguments:
        problem = argument_template_problem(template)
        if problem is not None:
            raise section.error(f"field 'arguments': {problem}")
    schedule = ScheduleSpec(
        name=name,
        batch=batch_name,
        expression=expression,
        timezone=timezone,
        arguments=arguments,
        tenant=_schedule_tenant(section),
        start_tolerance_seconds=(
            section.integer("start_tolerance_seconds", minimum=1, maximum=MAX_START_TOLERANCE_SECONDS)
            if "start_tolerance_seconds" in section.raw
            else None
        ),
        description=section.string("description") if "description" in section.raw else "",
    )
    for slot in _SAMPLE_SLOTS:
        try:
            resolved = resolve_arguments(arguments, slot, schedule.zone)
        except ArgumentTemplateError as error:  # pragma: no cover - checked above
            raise section.error(f"field 'arguments': {error}") from None
        problem = spec.argument_problem(resolved)
        if problem is not None:
            raise section.error(
                f"field 'arguments': for the slot {slot.isoformat()} they resolve to "
                f"{json.dumps(list(resolved))}, which batch {batch_name} refuses: {problem}"
            )
    return schedule


def _schedule_tenant(section: "_Section") -> str | None:
    """The tenant the schedule's jobs run for, checked with the submit message schema's own pattern."""
    if "tenant" not in section.raw:
        return None
    pattern = _tenant_pattern()
    return section.string("tenant", pattern)


def _tenant_pattern() -> re.Pattern[str]:
    text = (PACKAGE_FILES / "schemas" / "submit-message-v1.json").read_text(encoding="utf-8")
    return re.compile(json.loads(text)["properties"]["tenant"]["pattern"])


def task_definition_family(task_definition: str) -> str:
    """ "family" of "family" or "family:revision"."""
    return task_definition.split(":", 1)[0]


def _fargate_size(section: "_Section") -> tuple[int, int]:
    """The section's `cpu` and `memory`, a valid Fargate task size (every batch and pool must fit
    Fargate: a plan falls back to it)."""
    cpu = section.integer("cpu", minimum=1)
    memory = section.integer("memory", minimum=1)
    if memory not in FARGATE_MEMORY_BY_CPU.get(cpu, frozenset()):
        raise section.error(f"cpu {cpu} with memory {memory} is not a valid Fargate task size")
    return cpu, memory


def _pool(name: str, section: "_Section", schedule: bool = True) -> PoolSpec:
    if not POOL_NAME_PATTERN.fullmatch(name):
        raise section.error(f"name must match {POOL_NAME_PATTERN.pattern}")
    section.require(_POOL_FIELDS, optional=_OPTIONAL_POOL_FIELDS)
    cpu, memory = _fargate_size(section)
    provider = section.string("capacity_provider")
    if provider not in POOL_CAPACITY_PROVIDERS:
        raise section.error(f"field 'capacity_provider': {provider!r} is not one of FARGATE, FARGATE_SPOT")
    architecture = section.string("architecture") if "architecture" in section.raw else "X86_64"
    if architecture not in ARCHITECTURES:
        raise section.error(f"field 'architecture': {architecture!r} is not one of ARM64, X86_64")
    min_tasks = section.integer("min_tasks", minimum=0)
    max_tasks = section.integer("max_tasks", minimum=max(min_tasks, 1), maximum=100)
    timezone, windows = _pool_schedule(section, max_tasks) if schedule else ("UTC", ())
    ratio = section.raw.get("target_busy_ratio", 0.7)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.1 <= ratio <= 1.0:
        raise section.error(
            f"field 'target_busy_ratio' must be a number from 0.1 to 1, got {json.dumps(ratio)}"
        )
    return PoolSpec(
        name=name,
        task_definition=section.string("task_definition", TASK_DEFINITION_PATTERN),
        container=section.string("container", CONTAINER_NAME_PATTERN),
        cpu=cpu,
        memory=memory,
        slots=section.integer("slots", minimum=1, maximum=MAX_POOL_SLOTS),
        capacity_provider=provider,
        min_tasks=min_tasks,
        max_tasks=max_tasks,
        architecture=architecture,
        max_run_seconds=(
            section.integer("max_run_seconds", minimum=1, maximum=MAX_POOL_RUN_SECONDS)
            if "max_run_seconds" in section.raw
            else DEFAULT_POOL_RUN_SECONDS
        ),
        timezone=timezone,
        windows=windows,
        target_busy_ratio=float(ratio),
        offer_seconds=(
            section.integer("offer_seconds", minimum=1, maximum=30) if "offer_seconds" in section.raw else 2
        ),
    )


def _pool_schedule(section: "_Section", max_tasks: int) -> tuple[str, tuple[PoolWindow, ...]]:
    if "schedule" not in section.raw:
        return "UTC", ()
    schedule = section.section("schedule")
    schedule.require(_SCHEDULE_FIELDS)
    # Explicit, always: a schedule read in the wrong zone opens the pool at the wrong hour.
    timezone = schedule.string("timezone", TIMEZONE_PATTERN)
    if not _is_known_timezone(timezone):
        raise schedule.error(f"field {schedule.field('timezone')}: {timezone!r} is not an IANA time zone")
    raw_windows = schedule.raw["windows"]
    if not isinstance(raw_windows, list) or not raw_windows:
        raise schedule.error(f"field {schedule.field('windows')} must be a non-empty list of objects")
    windows = []
    for index, raw in enumerate(raw_windows):
        window = _Section(raw, schedule.where, f"{schedule.prefix}windows[{index}].")
        window.require(_WINDOW_FIELDS)
        windows.append(
            PoolWindow(
                start=window.string("start", POOL_CRON_PATTERN),
                end=window.string("end", POOL_CRON_PATTERN),
                tasks=window.integer("tasks", minimum=1, maximum=max_tasks),
            )
        )
    return timezone, tuple(windows)


def _is_known_timezone(name: str) -> bool:
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    except ImportError:  # pragma: no cover - the standard library has it from 3.9
        return True
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _launch_class(name: str, section: "_Section") -> LaunchClass:
    if not LAUNCH_CLASS_NAME_PATTERN.fullmatch(name):
        raise section.error(f"name must match {LAUNCH_CLASS_NAME_PATTERN.pattern}")
    section.require(_LAUNCH_CLASS_FIELDS, optional=_OPTIONAL_LAUNCH_CLASS_FIELDS)
    strategies = section.strings("strategies", allow_empty=False, choices=STRATEGIES)
    preferences = section.strings("allowed_preferences", allow_empty=True, choices=STRATEGIES)
    objective = DEFAULT_OBJECTIVE
    if "objective" in section.raw:
        objective = section.string("objective")
        if objective not in OBJECTIVES:
            raise section.error(f"field 'objective': {objective!r} is not one of {', '.join(OBJECTIVES)}")
    return LaunchClass(
        name=name, strategies=strategies, allowed_preferences=frozenset(preferences), objective=objective
    )


def _batch(
    name: str, section: "_Section", launch_classes: Mapping[str, LaunchClass], pools: Mapping[str, PoolSpec]
) -> BatchSpec:
    if not BATCH_NAME_PATTERN.fullmatch(name):
        raise section.error(f"name must match {BATCH_NAME_PATTERN.pattern} (it is part of every job id)")
    section.require(_BATCH_FIELDS, optional=_OPTIONAL_BATCH_FIELDS)
    cpu, memory = _fargate_size(section)
    launch_class_name = section.string("launch_class")
    launch_class = launch_classes.get(launch_class_name)
    if launch_class is None:
        known = ", ".join(sorted(launch_classes)) or "none"
        raise section.error(
            f"field 'launch_class': unknown launch class {launch_class_name!r} (known: {known})"
        )
    spec = BatchSpec(
        name=name,
        description=section.string("description"),
        task_definition=section.string("task_definition", TASK_DEFINITION_PATTERN),
        container=section.string("container", CONTAINER_NAME_PATTERN),
        cpu=cpu,
        memory=memory,
        command=_command(section),
        arguments=_argument_rules(section.section("arguments")),
        environment=_environment_names(section),
        timeout_seconds=section.integer("timeout_seconds", minimum=1),
        max_attempts=section.integer("max_attempts", minimum=1, maximum=MAX_ATTEMPTS_LIMIT),
        launch_class=launch_class,
        expected_run_seconds=(
            section.integer("expected_run_seconds", minimum=1)
            if "expected_run_seconds" in section.raw
            else None
        ),
        retry_policy=_retry_policy(section),
        max_running=(
            section.integer("max_running", minimum=1, maximum=MAX_RUNNING_LIMIT)
            if "max_running" in section.raw
            else None
        ),
    )
    return _with_pool(spec, section, pools)


def _with_pool(spec: BatchSpec, section: "_Section", pools: Mapping[str, PoolSpec]) -> BatchSpec:
    """The batch's warm pool and run mode, checked against the pool: same image, known modules."""
    if "pool" not in section.raw:
        for field in ("run_mode", "preload"):
            if field in section.raw:
                raise section.error(f"field {field!r} needs a 'pool'")
        return spec
    pool_name = section.string("pool")
    pool = pools.get(pool_name)
    if pool is None:
        known = ", ".join(sorted(pools)) or "none"
        raise section.error(f"field 'pool': unknown pool {pool_name!r} (known: {known})")
    if pool.family != task_definition_family(spec.task_definition) or pool.container != spec.container:
        raise section.error(
            f"pool {pool_name!r} runs the image of {pool.family}/{pool.container}, but this batch's task "
            f"definition is {task_definition_family(spec.task_definition)}/{spec.container}: a pool runs "
            "its batches' own image"
        )
    run_mode = section.string("run_mode") if "run_mode" in section.raw else "command"
    if run_mode not in RUN_MODES:
        raise section.error(f"field 'run_mode': {run_mode!r} is not one of {', '.join(RUN_MODES)}")
    preload: tuple[str, ...] = ()
    if run_mode == "preload":
        module = spec.python_module
        if module is None or not PYTHON_MODULE_PATTERN.fullmatch(module):
            raise section.error(
                f"run_mode 'preload' needs a 'python -m module' command, got {json.dumps(list(spec.command))}"
            )
        preload = (
            section.strings("preload", allow_empty=False, pattern=PYTHON_MODULE_PATTERN)
            if "preload" in section.raw
            else (module,)
        )
    elif "preload" in section.raw:
        raise section.error("field 'preload' needs run_mode 'preload'")
    return spec._replace(pool=pool_name, run_mode=run_mode, preload=preload)


def _command(section: "_Section") -> tuple[str, ...]:
    """The batch's command; one that starts a shell on a script (`sh -c ...`) only when the batch is
    marked `"shell": true`, since the shell would interpret what the arguments say."""
    command = section.strings("command", allow_empty=False)
    marked = section.flag("shell")
    if shell_script_command(command) and not marked:
        raise section.error(
            f"field 'command' {json.dumps(list(command))} runs a shell script that would interpret the "
            'message\'s arguments; mark the batch "shell": true to allow it, or run the program directly'
        )
    return command


def shell_script_command(command: Sequence[str]) -> bool:
    """Whether the command starts a shell with -c (alone or among short options, e.g. `bash -ec`),
    through its path (`/bin/sh`) or `env`."""
    words = list(command)
    if words and PurePosixPath(words[0]).name == "env":
        words = words[1:]
    if not words or PurePosixPath(words[0]).name not in SHELLS:
        return False
    rest = words[1:]
    if PurePosixPath(words[0]).name == "busybox" and rest:
        if PurePosixPath(rest[0]).name not in SHELLS:
            return False
        rest = rest[1:]
    for word in rest:
        if not word.startswith("-"):
            return False  # the script file or the first argument: no -c before it
        if not word.startswith("--") and "c" in word[1:]:
            return True
    return False


def _retry_policy(section: "_Section") -> RetryPolicy:
    if "retry" not in section.raw:
        return DEFAULT_POLICY
    try:
        return parse_retry_policy(section.raw["retry"])
    except RetryPolicyError as error:
        raise section.error(str(error)) from error


def _argument_rules(section: "_Section") -> ArgumentRules:
    section.require(_ARGUMENT_FIELDS, optional=_OPTIONAL_ARGUMENT_FIELDS)
    min_count = section.integer("min_count", minimum=0)
    max_count = section.integer("max_count", minimum=0)
    if min_count > max_count:
        raise section.error(
            f"field {section.field('min_count')} ({min_count}) is greater than "
            f"{section.field('max_count')} ({max_count})"
        )
    pattern = section.string("pattern")
    try:
        re.compile(pattern)
    except re.error as error:
        raise section.error(
            f"field {section.field('pattern')} is not a valid regular expression: {error}"
        ) from error
    return ArgumentRules(
        min_count=min_count,
        max_count=max_count,
        max_length=section.integer("max_length", minimum=1),
        pattern=pattern,
        allow_options=section.flag("allow_options"),
        allow_parent_paths=section.flag("allow_parent_paths"),
    )


def _environment_names(section: "_Section") -> frozenset[str]:
    if "environment" not in section.raw:
        return frozenset()  # the safe default: no variable can be set by a message
    names = section.strings("environment", allow_empty=True, pattern=ENVIRONMENT_NAME_PATTERN)
    reserved = [name for name in names if name.startswith(RESERVED_ENVIRONMENT_PREFIXES)]
    if reserved:
        prefixes = ", ".join(f"{prefix}*" for prefix in RESERVED_ENVIRONMENT_PREFIXES)
        raise section.error(f"field 'environment': {reserved[0]} is reserved ({prefixes})")
    return frozenset(names)


def json_type_name(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    if isinstance(value, bool):
        return "boolean"
    names = {dict: "object", list: "array", str: "string", int: "integer", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


class _Section:
    """One JSON object of the catalog, read with errors that say exactly where the problem is: the
    catalog, the batch or launch class, and the field (dotted when nested, e.g. arguments.pattern)."""

    def __init__(self, raw: Any, where: str, prefix: str = "") -> None:
        self.where = where
        self.prefix = prefix
        if not isinstance(raw, dict):
            subject = f"field {prefix[:-1]!r}" if prefix else "the document"
            raise self.error(f"{subject} must be a JSON object, got {json_type_name(raw)}")
        self.raw: dict[str, Any] = raw

    def error(self, text: str) -> CatalogError:
        return CatalogError(f"{self.where}: {text}")

    def field(self, name: str) -> str:
        return repr(f"{self.prefix}{name}")

    def require(self, required: Collection[str], optional: Collection[str] = ()) -> None:
        unknown = sorted(set(self.raw) - set(required) - set(optional))
        if unknown:
            expected = ", ".join(sorted({*required, *optional}))
            names = ", ".join(self.field(name) for name in unknown)
            raise self.error(f"unknown field {names} (expected: {expected})")
        missing = sorted(set(required) - set(self.raw))
        if missing:
            raise self.error(f"missing field {', '.join(self.field(name) for name in missing)}")

    def section(self, name: str) -> "_Section":
        """A nested object: errors keep this section's place and name the field by its path."""
        return _Section(self.raw[name], self.where, f"{self.prefix}{name}.")

    def named_sections(self, kind: str) -> "list[tuple[str, _Section]]":
        """The entries of a name -> object map (batches, launch classes), each its own place."""
        origin = self.where
        return [(name, _Section(raw, f"{origin}: {kind} {name!r}")) for name, raw in self.raw.items()]

    def integer(self, name: str, *, minimum: int, maximum: int | None = None) -> int:
        value = self.raw[name]
        is_integer = isinstance(value, int) and not isinstance(value, bool)
        if not is_integer or value < minimum or (maximum is not None and value > maximum):
            bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
            raise self.error(f"field {self.field(name)} must be an integer {bounds}, got {json.dumps(value)}")
        return int(value)

    def flag(self, name: str) -> bool:
        """An optional boolean field, false when absent."""
        value = self.raw.get(name, False)
        if not isinstance(value, bool):
            raise self.error(f"field {self.field(name)} must be true or false, got {json.dumps(value)}")
        return value

    def string(self, name: str, pattern: re.Pattern[str] | None = None) -> str:
        value = self.raw[name]
        if not isinstance(value, str) or not value:
            raise self.error(f"field {self.field(name)} must be a non-empty string, got {json.dumps(value)}")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(f"field {self.field(name)} ({value!r}) must match {pattern.pattern}")
        return value

    def strings(
        self,
        name: str,
        *,
        allow_empty: bool,
        choices: Collection[str] | None = None,
        pattern: re.Pattern[str] | None = None,
        unique: bool = True,
    ) -> tuple[str, ...]:
        values = self.raw[name]
        field = self.field(name)
        if not isinstance(values, list) or not all(isinstance(value, str) and value for value in values):
            raise self.error(f"field {field} must be a list of non-empty strings, got {json.dumps(values)}")
        if not values and not allow_empty:
            raise self.error(f"field {field} must not be empty")
        if unique and len(set(values)) != len(values):
            raise self.error(f"field {field} lists a value twice")
        for value in values:
            if choices is not None and value not in choices:
                raise self.error(f"field {field}: {value!r} is not one of {', '.join(sorted(choices))}")
            if pattern is not None and not pattern.fullmatch(value):
                raise self.error(f"field {field}: {value!r} must match {pattern.pattern}")
        return tuple(values)
