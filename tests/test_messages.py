from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from typing import Any

import jsonschema
import pytest
from batchgate.domain.catalog import STRATEGIES, Catalog, load_catalog
from batchgate.domain.jobs import BATCH_NAME_PATTERN
from batchgate.domain.messages import (
    MAX_MESSAGE_BYTES,
    SUBMIT_MESSAGE_SCHEMA,
    RejectedMessage,
    SubmitMessage,
    parse_submit_message,
    validate_message_shape,
)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def body(**document: Any) -> str:
    """A v1 message body with the given fields (schema_version 1 unless given)."""
    return json.dumps({"schema_version": 1, **document})


FULL_EXAMPLE = {
    "schema_version": 1,
    "batch": "payroll-calculation",
    "arguments": ["2026-11"],
    "environment": {"LOG_LEVEL": "DEBUG"},
    "idempotency_key": "payroll-2026-11-acme",
    "priority": 5,
    "deadline": "2026-11-28T18:00:00Z",
    "strategy": "FARGATE",
}


def test_full_example_parses_into_its_fields(catalog: Catalog) -> None:
    message = parse_submit_message(json.dumps(FULL_EXAMPLE), catalog)
    assert message == SubmitMessage(
        batch="payroll-calculation",
        arguments=("2026-11",),
        environment={"LOG_LEVEL": "DEBUG"},
        idempotency_key="payroll-2026-11-acme",
        priority=5,
        deadline=datetime(2026, 11, 28, 18, 0, tzinfo=UTC),
        strategy="FARGATE",
    )


def test_defaults_fill_in_optional_fields(catalog: Catalog) -> None:
    message = parse_submit_message(body(batch="report-export", arguments=["headcount"]), catalog)
    assert message == SubmitMessage(batch="report-export", arguments=("headcount",))
    assert (message.environment, message.priority, message.idempotency_key, message.deadline) == (
        {},
        0,
        None,
        None,
    )


GOOD_MESSAGES = [
    pytest.param(FULL_EXAMPLE, id="full example"),
    pytest.param({"schema_version": 1, "batch": "report-export", "arguments": ["headcount"]}, id="minimal"),
    pytest.param(
        {
            "schema_version": 1,
            "batch": "attendance-import",
            "arguments": ["uploads/2026/11/acme.csv"],
            "strategy": "EC2",
        },
        id="EC2 preference",
    ),
    pytest.param(
        {
            "schema_version": 1,
            "batch": "report-export",
            "arguments": ["headcount", "2026-11", "csv"],
            "priority": 9,
            "deadline": "2026-11-29T09:00:00.250+09:00",
            "idempotency_key": "reports/headcount:2026-11=v2+final",
            "environment": {"LOG_LEVEL": "caf\u00e9"},
        },
        id="offset deadline, every key character, non-ASCII value",
    ),
    pytest.param(
        {"schema_version": 1, "batch": "report-export", "arguments": ["headcount"], "priority": 3.0},
        id="integral float priority",
    ),
]


@pytest.mark.parametrize("document", GOOD_MESSAGES)
def test_good_messages_round_trip_through_the_wire_form(catalog: Catalog, document: dict[str, Any]) -> None:
    message = parse_submit_message(json.dumps(document), catalog)
    wire = message.to_json()
    assert parse_submit_message(wire, catalog) == message
    assert wire.isascii()  # always a valid SQS body
    assert jsonschema.Draft7Validator(SUBMIT_MESSAGE_SCHEMA).is_valid(json.loads(wire))


def test_wire_form_omits_absent_hints_and_writes_deadlines_in_utc() -> None:
    message = SubmitMessage(
        batch="report-export",
        arguments=("headcount",),
        deadline=datetime(2026, 11, 29, 3, 0, tzinfo=timezone(timedelta(hours=9))),
    )
    assert json.loads(message.to_json()) == {
        "schema_version": 1,
        "batch": "report-export",
        "arguments": ["headcount"],
        "environment": {},
        "priority": 0,
        "deadline": "2026-11-28T18:00:00Z",
    }


def test_naive_deadline_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SubmitMessage(batch="report-export", deadline=datetime(2026, 11, 28, 18, 0))


# (body, reason fragment, batch read from it, idempotency key read from it)
BAD_MESSAGES: list[tuple[str, str, str, str | None, str | None]] = [
    (
        "oversized",
        body(batch="report-export", arguments=["x" * 9000]),
        f"bytes; the limit is {MAX_MESSAGE_BYTES} bytes",
        None,
        None,
    ),
    (
        "oversized in UTF-8 only",
        body(batch="report-export", environment={"LOG_LEVEL": "\u00e9" * 4500}).replace("\\u00e9", "\u00e9"),
        "bytes; the limit is 8192 bytes",
        None,
        None,
    ),
    (
        "malformed JSON",
        '{"schema_version": 1, "batch": "report-export"',
        "message body is not valid JSON",
        None,
        None,
    ),
    ("nested too deeply", "[" * 5000, "not valid JSON: nested too deeply", None, None),
    (
        "NaN",
        '{"schema_version": 1, "batch": "report-export", "priority": NaN}',
        "NaN is not a JSON value",
        None,
        None,
    ),
    ("array", "[1, 2]", "message must be a JSON object, got array", None, None),
    ("string", '"payroll-calculation"', "message must be a JSON object, got string", None, None),
    ("null", "null", "message must be a JSON object, got null", None, None),
    (
        "no schema_version",
        json.dumps({"batch": "payroll-calculation", "idempotency_key": "k-1"}),
        "missing field 'schema_version' (supported versions: 1)",
        "payroll-calculation",
        "k-1",
    ),
    (
        "schema_version 2",
        body(schema_version=2, batch="payroll-calculation", arguments=["2026-11"]),
        "schema_version 2 is not supported (supported versions: 1)",
        "payroll-calculation",
        None,
    ),
    (
        "schema_version as text",
        body(schema_version="1", batch="report-export"),
        'schema_version "1" is not supported',
        "report-export",
        None,
    ),
    (
        "schema_version true",
        body(schema_version=True, batch="report-export"),
        "schema_version true is not supported",
        "report-export",
        None,
    ),
    ("no batch", body(arguments=["x"]), "missing field 'batch'", None, None),
    (
        "image",
        body(batch="report-export", arguments=["headcount"], image="alpine:latest", idempotency_key="k-2"),
        "unknown field 'image' (allowed: arguments, batch, deadline, environment, idempotency_key, "
        "priority, schema_version, strategy, tenant); the image, task definition, command and resources come "
        "from the catalog only",
        "report-export",
        "k-2",
    ),
    (
        "taskDefinition",
        body(batch="report-export", taskDefinition="evil:1"),
        "unknown field 'taskDefinition'",
        "report-export",
        None,
    ),
    (
        "harmless unknown field",
        body(batch="report-export", team="acme"),
        "unknown field 'team' (allowed:",
        "report-export",
        None,
    ),
    ("batch not text", body(batch=5), "field 'batch' must be string (got 5)", None, None),
    (
        "batch name",
        body(batch="Payroll"),
        "field 'batch' must match pattern ^[a-z][a-z0-9-]{0,31}$",
        "Payroll",
        None,
    ),
    (
        "arguments not a list",
        body(batch="report-export", arguments="headcount"),
        "field 'arguments' must be array",
        "report-export",
        None,
    ),
    (
        "argument not text",
        body(batch="report-export", arguments=["headcount", 3]),
        "field 'arguments[1]' must be string (got 3)",
        "report-export",
        None,
    ),
    (
        "environment value",
        body(batch="report-export", environment={"LOG_LEVEL": 10}),
        "field 'environment.LOG_LEVEL' must be string",
        "report-export",
        None,
    ),
    (
        "environment name",
        body(batch="report-export", environment={"LOG LEVEL": "x"}),
        "field 'environment': variable name \"LOG LEVEL\" must match ^[A-Za-z_][A-Za-z0-9_]*$",
        "report-export",
        None,
    ),
    (
        "priority too high",
        body(batch="report-export", priority=10),
        "field 'priority' must be smaller than or equal to 9 (got 10)",
        "report-export",
        None,
    ),
    (
        "priority negative",
        body(batch="report-export", priority=-1),
        "field 'priority' must be bigger than or equal to 0",
        "report-export",
        None,
    ),
    (
        "priority as text",
        body(batch="report-export", priority="high"),
        "field 'priority' must be integer (got \"high\")",
        "report-export",
        None,
    ),
    (
        "priority fraction",
        body(batch="report-export", priority=1.5),
        "field 'priority' must be integer",
        "report-export",
        None,
    ),
    (
        "empty key",
        body(batch="report-export", idempotency_key=""),
        "field 'idempotency_key' must be longer than or equal to 1",
        "report-export",
        "",
    ),
    (
        "long key",
        body(batch="report-export", idempotency_key="k" * 129),
        "field 'idempotency_key' must be shorter than or equal to 128",
        "report-export",
        "k" * 129,
    ),
    (
        "key with a space",
        body(batch="report-export", idempotency_key="acme 2026"),
        "field 'idempotency_key' must match pattern",
        "report-export",
        "acme 2026",
    ),
    (
        "key not text",
        body(batch="report-export", idempotency_key=42),
        "field 'idempotency_key' must be string",
        "report-export",
        None,
    ),
    (
        "key null",
        body(batch="report-export", idempotency_key=None),
        "field 'idempotency_key' must be string (got null)",
        "report-export",
        None,
    ),
    (
        "deadline words",
        body(batch="report-export", deadline="tomorrow"),
        "field 'deadline' must be an RFC 3339 date-time with a UTC offset",
        "report-export",
        None,
    ),
    (
        "deadline without offset",
        body(batch="report-export", deadline="2026-11-28T18:00:00"),
        "RFC 3339 date-time with a UTC offset",
        "report-export",
        None,
    ),
    (
        "deadline leap second",
        body(batch="report-export", deadline="2026-12-31T23:59:60Z"),
        "field 'deadline' is not a valid date-time: second must be in 0..59",
        "report-export",
        None,
    ),
    (
        "strategy",
        body(batch="report-export", strategy="SPOT"),
        "field 'strategy' must be one of ['EC2', 'FARGATE', 'FARGATE_SPOT'] (got \"SPOT\")",
        "report-export",
        None,
    ),
    (
        "unknown batch",
        body(batch="payroll-calc", arguments=["2026-11"], idempotency_key="k-3"),
        "unknown batch 'payroll-calc'; known batches: attendance-import, payroll-calculation, report-export",
        "payroll-calc",
        "k-3",
    ),
    (
        "argument pattern",
        body(batch="payroll-calculation", arguments=["2026-11; rm -rf /"], idempotency_key="k-4"),
        "batch payroll-calculation: argument 1 ('2026-11; rm -rf /') does not match ^[A-Za-z0-9_.:-]+$",
        "payroll-calculation",
        "k-4",
    ),
    (
        "argument count",
        body(batch="payroll-calculation"),
        "batch payroll-calculation: expects 1 to 2 arguments, got 0",
        "payroll-calculation",
        None,
    ),
    (
        "environment not allowed",
        body(batch="report-export", arguments=["headcount"], environment={"PAYROLL_DRY_RUN": "1"}),
        "batch report-export: environment variable PAYROLL_DRY_RUN not allowed (allowed: LOG_LEVEL)",
        "report-export",
        None,
    ),
    (
        "reserved environment",
        body(batch="payroll-calculation", arguments=["2026-11"], environment={"BATCHGATE_JOB_ID": "bg-x"}),
        "environment variable BATCHGATE_JOB_ID not allowed",
        "payroll-calculation",
        None,
    ),
    (
        "strategy not allowed",
        body(batch="attendance-import", arguments=["uploads/a.csv"], strategy="FARGATE_SPOT"),
        "batch attendance-import: strategy FARGATE_SPOT is not allowed for launch class interactive "
        "(allowed: EC2, FARGATE)",
        "attendance-import",
        None,
    ),
    (
        "overrides too large",
        body(batch="report-export", arguments=["headcount"], environment={"LOG_LEVEL": "v" * 7800}),
        "batch report-export: arguments and environment need about",
        "report-export",
        None,
    ),
]


@pytest.mark.parametrize(
    ("message_body", "reason", "batch", "idempotency_key"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_MESSAGES],
)
def test_bad_messages_are_rejected_with_a_clear_reason(
    catalog: Catalog, message_body: str, reason: str, batch: str | None, idempotency_key: str | None
) -> None:
    with pytest.raises(RejectedMessage) as raised:
        parse_submit_message(message_body, catalog)
    rejected = raised.value
    assert reason in rejected.reason
    assert (rejected.batch, rejected.idempotency_key) == (batch, idempotency_key)
    assert str(rejected) == rejected.reason


def padded_to(size: int) -> str:
    """A report-export message of exactly `size` UTF-8 bytes."""
    template = body(batch="report-export", arguments=["headcount"], environment={"LOG_LEVEL": ""})
    return template.replace('""', '"' + "v" * (size - len(template.encode())) + '"')


def test_size_limit_is_inclusive_and_counted_in_bytes(catalog: Catalog) -> None:
    at_limit = padded_to(MAX_MESSAGE_BYTES)
    assert len(at_limit.encode()) == MAX_MESSAGE_BYTES
    validate_message_shape(at_limit)
    with pytest.raises(RejectedMessage, match="message is 8193 bytes; the limit is 8192 bytes"):
        validate_message_shape(padded_to(MAX_MESSAGE_BYTES + 1))
    # Within the SQS limit but too big for RunTask's overrides once the catalog's command is added.
    with pytest.raises(RejectedMessage, match="RunTask overrides; the limit is 8192"):
        parse_submit_message(at_limit, catalog)
    parse_submit_message(padded_to(4096), catalog)


def test_shape_check_needs_no_catalog() -> None:
    validate_message_shape(body(batch="no-such-batch", arguments=["anything at all"]))
    with pytest.raises(RejectedMessage, match="field 'priority'"):
        validate_message_shape(body(batch="no-such-batch", priority=12))


SCHEMA_STAGE_CASES = {
    "image",
    "taskDefinition",
    "batch name",
    "priority too high",
    "strategy",
    "key with a space",
}


@pytest.mark.parametrize(
    "message_body",
    [pytest.param(case[1], id=case[0]) for case in BAD_MESSAGES if case[0] in SCHEMA_STAGE_CASES],
)
def test_reference_validator_agrees_with_schema_rejections(message_body: str) -> None:
    """Other languages validate with their own JSON Schema library: the schema itself must refuse
    what this module refuses at the schema stage."""
    assert not jsonschema.Draft7Validator(SUBMIT_MESSAGE_SCHEMA).is_valid(json.loads(message_body))


def test_schema_file_is_valid_draft_07_and_documents_every_field() -> None:
    text = resources.files("batchgate").joinpath("schemas", "submit-message-v1.json").read_text("utf-8")
    schema = json.loads(text)
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["$id"].endswith(":v1")
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["schema_version", "batch"]
    assert schema["title"] and schema["description"]
    for name, definition in schema["properties"].items():
        assert definition.get("title") and definition.get("description"), name


def test_schema_fields_match_the_submit_message() -> None:
    properties = SUBMIT_MESSAGE_SCHEMA["properties"]
    assert set(properties) == {"schema_version"} | {field.name for field in fields(SubmitMessage)}
    assert properties["schema_version"]["const"] == 1
    assert properties["batch"]["pattern"] == BATCH_NAME_PATTERN.pattern
    assert set(properties["strategy"]["enum"]) == STRATEGIES


def test_schema_examples_are_valid_messages(catalog: Catalog) -> None:
    validator = jsonschema.Draft7Validator(SUBMIT_MESSAGE_SCHEMA)
    for example in SUBMIT_MESSAGE_SCHEMA["examples"]:
        assert validator.is_valid(example)
        parse_submit_message(json.dumps(example), catalog)


def test_parsing_costs_microseconds_because_the_schema_is_compiled_once(catalog: Catalog) -> None:
    """Dispatch handles up to ten messages per invocation; a per-call schema compilation (~3 ms) would
    be most of its own work. The bound is loose on purpose."""
    payload = json.dumps(FULL_EXAMPLE)
    started = time.perf_counter()
    for _ in range(500):
        parse_submit_message(payload, catalog)
    assert time.perf_counter() - started < 0.5


def test_overrides_are_counted_in_utf8_bytes_as_ecs_counts_them(catalog: Catalog) -> None:
    def accented(count: int) -> str:
        document = {
            "schema_version": 1,
            "batch": "report-export",
            "arguments": ["headcount"],
            "environment": {"LOG_LEVEL": "é" * count},
        }
        return json.dumps(document, ensure_ascii=False)

    # 1,300 accented characters: 2,600 bytes, far below the limit (as \u escapes they were 7,800).
    assert parse_submit_message(accented(1300), catalog).environment["LOG_LEVEL"] == "é" * 1300
    # 3,950 of them (7,900 bytes) fit the message but not RunTask's overrides.
    with pytest.raises(RejectedMessage, match="bytes of RunTask overrides"):
        parse_submit_message(accented(3950), catalog)


@pytest.mark.parametrize(
    ("raw", "field", "batch", "key"),
    [
        pytest.param(
            '{"schema_version": 1, "batch": "payroll\\ud83d", "arguments": ["2026-11"]}',
            "batch",
            "payroll\ufffd",
            None,
            id="batch",
        ),
        pytest.param(
            '{"schema_version": 1, "batch": "payroll-calculation", "arguments": ["2026-11"], '
            '"idempotency_key": "k-\\udc00"}',
            "idempotency_key",
            "payroll-calculation",
            "k-\ufffd",
            id="idempotency key",
        ),
        pytest.param(
            '{"schema_version": 1, "batch": "payroll-calculation", "arguments": ["2026-11", "\\ud83d"]}',
            "arguments[1]",
            "payroll-calculation",
            None,
            id="argument",
        ),
        pytest.param(
            '{"schema_version": 1, "batch": "payroll-calculation", "arguments": ["2026-11"], '
            '"environment": {"\\ud83d": "x"}}',
            "environment.\ufffd",
            "payroll-calculation",
            None,
            id="environment name",
        ),
    ],
)
def test_a_lone_surrogate_escape_is_rejected_with_an_identity_that_can_be_stored(
    catalog: Catalog, raw: str, field: str, batch: str, key: str | None
) -> None:
    with pytest.raises(RejectedMessage) as raised:
        parse_submit_message(raw, catalog)
    rejected = raised.value
    assert f"field {field!r} holds a lone UTF-16 surrogate" in rejected.reason
    assert (rejected.batch, rejected.idempotency_key) == (batch, key)
    # Everything the dispatcher will hash, store and log encodes.
    for text in (rejected.reason, rejected.batch or "", rejected.idempotency_key or ""):
        text.encode("utf-8")


def test_the_schema_is_compiled_on_the_first_message_not_at_import() -> None:
    # A fresh interpreter: this one has compiled it already. A cold start pays for the import only.
    code = (
        "import batchgate.domain.messages as m\n"
        "before = m._schema_check.cache_info().currsize\n"
        'm.validate_message_shape(\'{"schema_version": 1, "batch": "payroll-calculation"}\')\n'
        "print(before, m._schema_check.cache_info().currsize)\n"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.split() == ["0", "1"]
