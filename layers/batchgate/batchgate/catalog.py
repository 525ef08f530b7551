"""The catalog: the batches the application may run, and how each one runs.

Only a batch named in the catalog can be launched, with the catalog's task definition, container,
command and resources; a submit message only adds arguments and allowed environment variables. The
whole file is checked when it is loaded (a Lambda cold start), so a bad catalog fails loudly at
deployment instead of one job at a time.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from batchgate.jobs import BATCH_NAME_PATTERN
from batchgate.retry import DEFAULT_POLICY, RetryPolicy, RetryPolicyError, parse_retry_policy

CATALOG_PATH_VARIABLE = "BATCHGATE_CATALOG"
CATALOG_VERSION = 1
STRATEGIES = frozenset({"EC2", "FARGATE", "FARGATE_SPOT"})
MAX_ATTEMPTS_LIMIT = 10

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
_OPTIONAL_BATCH_FIELDS = frozenset({"environment", "expected_run_seconds", "retry"})
_ARGUMENT_FIELDS = frozenset({"min_count", "max_count", "max_length", "pattern"})


class CatalogError(ValueError):
    """The catalog file is invalid; the message names the batch (or launch class) and the field."""


@dataclass(frozen=True)
class ArgumentRules:
    """How many arguments a batch takes and what each one may look like."""

    min_count: int
    max_count: int
    max_length: int
    pattern: str

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
        return None

    def _count_text(self) -> str:
        if self.min_count == self.max_count:
            return f"exactly {self.max_count} argument{'s' if self.max_count != 1 else ''}"
        return f"{self.min_count} to {self.max_count} arguments"


@dataclass(frozen=True)
class LaunchClass:
    """Where a class of batches runs: strategies in order of preference, and which preference a
    message may ask for. "EC2" is the deployment's EC2 capacity provider, skipped when there is none."""

    name: str
    strategies: tuple[str, ...]
    allowed_preferences: frozenset[str]
    objective: str = DEFAULT_OBJECTIVE


@dataclass(frozen=True)
class BatchSpec:
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
    # What a failed attempt leads to (batchgate.retry); the defaults retry infrastructure failures only.
    retry_policy: RetryPolicy = DEFAULT_POLICY

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


@dataclass(frozen=True)
class Catalog:
    batches: Mapping[str, BatchSpec]
    launch_classes: Mapping[str, LaunchClass]

    def get(self, name: str) -> BatchSpec | None:
        return self.batches.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        """Batch names, sorted: for messages that list what is available."""
        return tuple(sorted(self.batches))


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read and check a catalog file: `path`, else $BATCHGATE_CATALOG, else the packaged catalog.json."""
    chosen = path if path is not None else os.environ.get(CATALOG_PATH_VARIABLE) or None
    if chosen is None:
        origin = "packaged catalog.json"
        text = resources.files("batchgate").joinpath("catalog.json").read_text(encoding="utf-8")
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
    return parse_catalog(document, origin)


def parse_catalog(document: Any, origin: str = "catalog") -> Catalog:
    """Build a Catalog from the parsed JSON document, raising CatalogError on the first problem."""
    top = _Section(document, origin)
    top.require(_TOP_LEVEL_FIELDS)
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
    batches = {name: _batch(name, section, launch_classes) for name, section in batch_sections}
    return Catalog(batches=MappingProxyType(batches), launch_classes=MappingProxyType(launch_classes))


def _launch_class(name: str, section: _Section) -> LaunchClass:
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


def _batch(name: str, section: _Section, launch_classes: Mapping[str, LaunchClass]) -> BatchSpec:
    if not BATCH_NAME_PATTERN.fullmatch(name):
        raise section.error(f"name must match {BATCH_NAME_PATTERN.pattern} (it is part of every job id)")
    section.require(_BATCH_FIELDS, optional=_OPTIONAL_BATCH_FIELDS)
    cpu = section.integer("cpu", minimum=1)
    memory = section.integer("memory", minimum=1)
    if memory not in FARGATE_MEMORY_BY_CPU.get(cpu, frozenset()):
        raise section.error(f"cpu {cpu} with memory {memory} is not a valid Fargate task size")
    launch_class_name = section.string("launch_class")
    launch_class = launch_classes.get(launch_class_name)
    if launch_class is None:
        known = ", ".join(sorted(launch_classes)) or "none"
        raise section.error(
            f"field 'launch_class': unknown launch class {launch_class_name!r} (known: {known})"
        )
    return BatchSpec(
        name=name,
        description=section.string("description"),
        task_definition=section.string("task_definition", TASK_DEFINITION_PATTERN),
        container=section.string("container", CONTAINER_NAME_PATTERN),
        cpu=cpu,
        memory=memory,
        command=section.strings("command", allow_empty=False),
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
    )


def _retry_policy(section: _Section) -> RetryPolicy:
    if "retry" not in section.raw:
        return DEFAULT_POLICY
    try:
        return parse_retry_policy(section.raw["retry"])
    except RetryPolicyError as error:
        raise section.error(str(error)) from error


def _argument_rules(section: _Section) -> ArgumentRules:
    section.require(_ARGUMENT_FIELDS)
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
    )


def _environment_names(section: _Section) -> frozenset[str]:
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

    def section(self, name: str) -> _Section:
        """A nested object: errors keep this section's place and name the field by its path."""
        return _Section(self.raw[name], self.where, f"{self.prefix}{name}.")

    def named_sections(self, kind: str) -> list[tuple[str, _Section]]:
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
    ) -> tuple[str, ...]:
        values = self.raw[name]
        field = self.field(name)
        if not isinstance(values, list) or not all(isinstance(value, str) and value for value in values):
            raise self.error(f"field {field} must be a list of non-empty strings, got {json.dumps(values)}")
        if not values and not allow_empty:
            raise self.error(f"field {field} must not be empty")
        if len(set(values)) != len(values):
            raise self.error(f"field {field} lists a value twice")
        for value in values:
            if choices is not None and value not in choices:
                raise self.error(f"field {field}: {value!r} is not one of {', '.join(sorted(choices))}")
            if pattern is not None and not pattern.fullmatch(value):
                raise self.error(f"field {field}: {value!r} must match {pattern.pattern}")
        return tuple(values)
