"""The submit message: what the application puts on the jobs queue, and how it is checked.

`schemas/submit-message-v1.json` is the contract any language can produce against; this module checks a
body against it, then against the catalog's rules for the named batch. Every problem becomes a
`RejectedMessage` whose reason ops read on the REJECTED job, so each reason names the field at fault.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, NoReturn

from batchgate.domain.catalog import PACKAGE_FILES, BatchSpec, Catalog, json_type_name
from batchgate.domain.masking import ENVIRONMENT_FIELD

if TYPE_CHECKING:
    # Loaded with the first slot's message: a dispatch cold start reads no schedule (or time zone).
    from batchgate.domain.schedules import ScheduledSlot

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS: Final = (SCHEMA_VERSION,)
# RunTask overrides are limited to 8192 characters, and the message's content ends up in them.
MAX_MESSAGE_BYTES = 8192
RUN_TASK_OVERRIDES_LIMIT = 8192
# Part of the overrides that dispatch adds itself: cpu, memory and the BATCHGATE_* variables.
DISPATCH_OVERRIDES_RESERVE = 512
SCHEMA_FILE = "submit-message-v1.json"
# Fields that would let a message choose what runs: they only ever come from the catalog.
CATALOG_ONLY_FIELDS = frozenset(
    {"image", "taskDefinition", "task_definition", "command", "container", "overrides", "cpu", "memory"}
)
_SHOWN_VALUE_LIMIT = 80


def _load_schema() -> dict[str, Any]:
    text = (PACKAGE_FILES / "schemas" / SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


SUBMIT_MESSAGE_SCHEMA: Final = _load_schema()
SCHEMA_FIELDS: Final = frozenset(SUBMIT_MESSAGE_SCHEMA["properties"])
# The application's customer a job is for (the schema's `tenant`): also a DynamoDB index key and an
# event field, so one pattern everywhere.
TENANT_PATTERN: Final[str] = SUBMIT_MESSAGE_SCHEMA["properties"]["tenant"]["pattern"]


@functools.cache
def _schema_check() -> Callable[[Any], Any]:
    """The schema compiled with fastjsonschema, the engine of Powertools' validation utility (its
    `validate()` compiles the schema again on every call: about 3 ms, against microseconds here).
    Compiled once per process, on the first message, not at import: a cold start does not pay for it,
    nor for importing fastjsonschema (7 modules), which only this compile and its errors need."""
    import fastjsonschema

    check: Callable[[Any], Any] = fastjsonschema.compile(SUBMIT_MESSAGE_SCHEMA)
    return check


class RejectedMessage(Exception):
    """A submit message that will never run. `batch` and `idempotency_key` are filled in whenever the
    body had them as strings, so the REJECTED job is found where the sender will look for it."""

    def __init__(
        self,
        reason: str,
        *,
        batch: str | None = None,
        idempotency_key: str | None = None,
        arguments: tuple[str, ...] = (),
        tenant: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.batch = batch
        self.idempotency_key = idempotency_key
        # Only a tenant that matches TENANT_PATTERN: the REJECTED job is found under it too.
        self.tenant = tenant
        # What the message's arguments were, as far as they could be read: ops see them on the job.
        self.arguments = arguments


@dataclass(frozen=True)
class SubmitMessage:
    """A valid submit message: what the application asked to run."""

    batch: str
    arguments: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    priority: int = 0
    deadline: datetime | None = None
    strategy: str | None = None
    tenant: str | None = None
    # A schedule's slot (batchgate.domain.schedules): its arguments are already resolved here.
    schedule: ScheduledSlot | None = None

    def __post_init__(self) -> None:
        # A naive deadline would silently mean "local time of whichever machine serialises it".
        if self.deadline is not None and self.deadline.utcoffset() is None:
            raise ValueError("deadline must be a timezone-aware datetime")

    def to_json(self) -> str:
        """The v1 wire form: compact, ASCII only (always a valid SQS body), optional hints omitted."""
        document: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "batch": self.batch,
            "arguments": list(self.arguments),
            "environment": dict(self.environment),
        }
        if self.idempotency_key is not None:
            document["idempotency_key"] = self.idempotency_key
        document["priority"] = self.priority
        if self.deadline is not None:
            document["deadline"] = rfc3339(self.deadline)
        if self.strategy is not None:
            document["strategy"] = self.strategy
        if self.tenant is not None:
            document["tenant"] = self.tenant
        if self.schedule is not None:
            document["schedule"] = self.schedule.to_document()
        return json.dumps(document, separators=(",", ":"))


def rfc3339(moment: datetime) -> str:
    """UTC with a "Z", keeping sub-second digits only when there are some."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_submit_message(body: str, catalog: Catalog) -> SubmitMessage:
    """The message in `body`, checked against the schema and the catalog; RejectedMessage otherwise."""
    message = _read_message(body)
    problem = catalog_problem(message, catalog)
    if problem is not None:
        raise RejectedMessage(
            problem,
            batch=message.batch,
            idempotency_key=message.idempotency_key,
            arguments=message.arguments,
            tenant=message.tenant,
        )
    return message


def validate_message_shape(body: str) -> None:
    """Size, JSON, version and schema checks only: what a sender can check without the catalog."""
    _read_message(body)


def catalog_problem(message: SubmitMessage, catalog: Catalog) -> str | None:
    """None when the catalog allows this message, else the reason it does not."""
    spec = catalog.get(message.batch)
    if spec is None:
        return f"unknown batch {message.batch!r}; known batches: {', '.join(catalog.names)}"
    problem = (
        spec.argument_problem(message.arguments)
        or spec.environment_problem(message.environment)
        or _strategy_problem(spec, message.strategy)
        or _overrides_problem(spec, message)
    )
    return f"batch {spec.name}: {problem}" if problem else None


def _strategy_problem(spec: BatchSpec, strategy: str | None) -> str | None:
    launch_class = spec.launch_class
    if strategy is None or strategy in launch_class.allowed_preferences:
        return None
    allowed = ", ".join(sorted(launch_class.allowed_preferences)) or "none"
    return f"strategy {strategy} is not allowed for launch class {launch_class.name} (allowed: {allowed})"


def _overrides_problem(spec: BatchSpec, message: SubmitMessage) -> str | None:
    """Arguments and environment values travel in RunTask's overrides, which ECS caps in size: refuse
    a message that cannot fit now rather than fail its launch later."""
    container = {
        "name": spec.container,
        "command": [*spec.command, *message.arguments],
        "environment": [{"name": name, "value": value} for name, value in message.environment.items()],
    }
    # ECS counts the overrides' JSON in bytes: an accented character is two, not a six-character escape.
    encoded = json.dumps({"containerOverrides": [container]}, ensure_ascii=False).encode("utf-8")
    size = len(encoded) + DISPATCH_OVERRIDES_RESERVE
    if size <= RUN_TASK_OVERRIDES_LIMIT:
        return None
    return (
        f"arguments and environment need about {size} bytes of RunTask overrides; "
        f"the limit is {RUN_TASK_OVERRIDES_LIMIT}"
    )


class _Invalid(Exception):
    """A problem found while reading the body, before the sender's identity fields are attached."""


def _read_message(body: str) -> SubmitMessage:
    document = _decode(body)
    batch, idempotency_key = _identity(document)
    surrogate = _lone_surrogate_path(document)
    if surrogate is not None:
        # JSON's \ud83d escape alone decodes to text no UTF-8 encoder accepts: refused here, before
        # anything hashes, stores or logs it, under the identity with the surrogate replaced.
        raise RejectedMessage(
            f"field {printable(surrogate)!r} holds a lone UTF-16 surrogate escape "
            "(e.g. \\ud83d without its pair): not valid Unicode text",
            batch=printable(batch) if batch is not None else None,
            idempotency_key=printable(idempotency_key) if idempotency_key is not None else None,
            arguments=_arguments_shown(document),
            tenant=_tenant_of(document),
        )
    try:
        _check_version(document)
        _check_shape(document)
        return _message_from(document)
    except _Invalid as invalid:
        raise RejectedMessage(
            str(invalid),
            batch=batch,
            idempotency_key=idempotency_key,
            arguments=_arguments_shown(document),
            tenant=_tenant_of(document),
        ) from None


# Enough of a rejected message's arguments for ops to recognise it; the body itself is in raw_message.
_SHOWN_ARGUMENTS = 32
_SHOWN_ARGUMENT_LENGTH = 256


def _arguments_shown(document: Mapping[str, Any]) -> tuple[str, ...]:
    """A rejected message's arguments as far as they can be read: strings as they are, anything else
    as its JSON, each cut to a readable length."""
    arguments = document.get("arguments")
    if not isinstance(arguments, list):
        return ()
    return tuple(
        printable(value if isinstance(value, str) else json.dumps(value))[:_SHOWN_ARGUMENT_LENGTH]
        for value in arguments[:_SHOWN_ARGUMENTS]
    )


def printable(text: str) -> str:
    """`text` with every lone surrogate replaced (U+FFFD), so that it can be encoded, stored and logged."""
    if not _has_surrogate(text):
        return text
    return "".join("\ufffd" if 0xD800 <= ord(char) <= 0xDFFF else char for char in text)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _lone_surrogate_path(value: Any, path: str = "") -> str | None:
    """The first field (dotted, "[i]" for list items) whose name or text holds a lone surrogate."""
    if isinstance(value, str):
        return path if _has_surrogate(value) else None
    children: list[tuple[str, Any]]
    if isinstance(value, dict):
        children = [(f"{path}.{key}" if path else str(key), item) for key, item in value.items()]
    elif isinstance(value, list):
        children = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
    else:
        return None
    for name, item in children:
        found = name if _has_surrogate(name) else _lone_surrogate_path(item, name)
        if found is not None:
            return found
    return None


def _decode(body: str) -> dict[str, Any]:
    size = len(body.encode("utf-8", errors="surrogatepass"))
    if size > MAX_MESSAGE_BYTES:
        raise RejectedMessage(f"message is {size} bytes; the limit is {MAX_MESSAGE_BYTES} bytes")
    try:
        document = json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        raise RejectedMessage("message body is not valid JSON: nested too deeply") from None
    except ValueError as error:
        raise RejectedMessage(f"message body is not valid JSON: {_json_error(error)}") from None
    if not isinstance(document, dict):
        raise RejectedMessage(f"message must be a JSON object, got {json_type_name(document)}")
    return document


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


def _json_error(error: ValueError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at line {error.lineno} column {error.colno}"
    return str(error)


def _identity(document: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Best effort: the batch and idempotency key of a message that may still turn out invalid."""
    batch = document.get("batch")
    key = document.get("idempotency_key")
    return (batch if isinstance(batch, str) else None, key if isinstance(key, str) else None)


def _tenant_of(document: Mapping[str, Any]) -> str | None:
    """The message's tenant when it is a valid one, even if the rest of the message is not."""
    tenant = document.get("tenant")
    return tenant if isinstance(tenant, str) and re.fullmatch(TENANT_PATTERN, tenant) else None


def _check_version(document: Mapping[str, Any]) -> None:
    supported = ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))
    if "schema_version" not in document:
        raise _Invalid(f"missing field 'schema_version' (supported versions: {supported})")
    version = document["schema_version"]
    if isinstance(version, bool) or version not in SUPPORTED_SCHEMA_VERSIONS:
        shown = _shown(version)
        raise _Invalid(f"schema_version {shown} is not supported (supported versions: {supported})")


def _check_shape(document: dict[str, Any]) -> None:
    from fastjsonschema import JsonSchemaValueException  # imported by _schema_check: a lookup

    try:
        _schema_check()(document)
    except JsonSchemaValueException as error:
        raise _Invalid(_schema_reason(error, document)) from None


def _schema_reason(error: Any, document: Mapping[str, Any]) -> str:
    """fastjsonschema says "data.x must be ..."; ops need the field's name and, for the common
    mistakes, what to do instead."""
    where = str(error.name).removeprefix("data").removeprefix(".")
    if error.rule == "additionalProperties" and not where:
        return _unknown_fields_reason(document)
    if error.rule == "required":
        missing = [name for name in SUBMIT_MESSAGE_SCHEMA["required"] if name not in document]
        return f"missing field {', '.join(map(repr, missing))}"
    if error.rule == "propertyNames":
        return _environment_name_reason(document)
    if error.rule == "format" and where == "deadline":
        return (
            "field 'deadline' must be an RFC 3339 date-time with a UTC offset, e.g. "
            f"2026-11-28T18:00:00Z (got {_shown(error.value)})"
        )
    text = str(error.message).removeprefix(str(error.name)).strip()
    subject = f"field {where!r}" if where else "message"
    if where == ENVIRONMENT_FIELD or where.startswith(ENVIRONMENT_FIELD + "."):
        # Reasons are stored, logged and published: an environment value is named by its type only.
        return f"{subject} {text} (got {json_type_name(error.value)}; environment values are not shown)"
    return f"{subject} {text} (got {_shown(error.value)})"


def _unknown_fields_reason(document: Mapping[str, Any]) -> str:
    unknown = sorted(set(document) - SCHEMA_FIELDS)
    reason = f"unknown field {', '.join(map(repr, unknown))} (allowed: {', '.join(sorted(SCHEMA_FIELDS))})"
    if CATALOG_ONLY_FIELDS.intersection(unknown):
        reason += "; the image, task definition, command and resources come from the catalog only"
    return reason


def _environment_name_reason(document: Mapping[str, Any]) -> str:
    pattern = SUBMIT_MESSAGE_SCHEMA["properties"]["environment"]["propertyNames"]["pattern"]
    names = document.get("environment", {})
    bad = next((name for name in names if not re.fullmatch(pattern, name)), None)
    return f"field 'environment': variable name {_shown(bad)} must match {pattern}"


def _message_from(document: Mapping[str, Any]) -> SubmitMessage:
    deadline_text = document.get("deadline")
    arguments = tuple(document.get("arguments", ()))
    schedule = None
    if "schedule" in document:
        schedule, arguments = _scheduled_slot(document["schedule"], arguments)
    return SubmitMessage(
        batch=document["batch"],
        arguments=arguments,
        environment=dict(document.get("environment", {})),
        # A slot's message without a key still dedupes on its slot.
        idempotency_key=document.get("idempotency_key") or (schedule.key if schedule is not None else None),
        # JSON Schema counts 5.0 as an integer.
        priority=int(document.get("priority", 0)),
        deadline=_parse_deadline(deadline_text) if deadline_text is not None else None,
        strategy=document.get("strategy"),
        tenant=document.get("tenant"),
        schedule=schedule,
    )


def _scheduled_slot(
    document: Mapping[str, Any], arguments: tuple[str, ...]
) -> tuple[ScheduledSlot, tuple[str, ...]]:
    """The message's slot (a real time, read in a known zone) and its arguments with the slot's
    placeholders resolved."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from batchgate.domain.schedules import (
        ArgumentTemplateError,
        ScheduledSlot,
        parse_scheduled_time,
        resolve_arguments,
    )

    text = document["scheduled_time"]
    try:
        moment = parse_scheduled_time(text)
    except ValueError:
        raise _Invalid(
            f"field 'schedule.scheduled_time' is not a valid date-time (got {_shown(text)})"
        ) from None
    timezone = document.get("timezone", "UTC")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise _Invalid(f"field 'schedule.timezone': {_shown(timezone)} is not an IANA time zone") from None
    try:
        resolved = resolve_arguments(arguments, moment, zone)
    except ArgumentTemplateError as error:
        raise _Invalid(f"field 'arguments': {error}") from None
    return ScheduledSlot(name=document["name"], scheduled_time=moment, timezone=timezone), resolved


def _parse_deadline(text: str) -> datetime:
    """The schema's date-time format is a pattern; this catches impossible dates like month 13."""
    try:
        moment = datetime.fromisoformat(text.upper())
    except ValueError as error:
        raise _Invalid(f"field 'deadline' is not a valid date-time: {error} (got {_shown(text)})") from None
    if moment.utcoffset() is None:
        raise _Invalid(f"field 'deadline' needs a UTC offset such as Z or +09:00 (got {_shown(text)})")
    return moment


def _shown(value: Any) -> str:
    """A value quoted for a reason, as JSON (so "1" and 1 differ) and cut short."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _SHOWN_VALUE_LIMIT else text[: _SHOWN_VALUE_LIMIT - 3] + "..."
