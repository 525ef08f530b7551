from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from batchgate.domain.catalog import (
    ArgumentRules,
    BatchSpec,
    CatalogError,
    LaunchClass,
    PoolSpec,
    PoolWindow,
    load_catalog,
)

Document = dict[str, Any]
Mutation = Callable[[Document], None]


def packaged_document() -> Document:
    text = resources.files("batchgate").joinpath("catalog.json").read_text(encoding="utf-8")
    document: Document = json.loads(text)
    return document


def write_catalog(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(document))
    return path


def set_value(*path_and_value: Any) -> Mutation:
    """A mutation setting document[k1][k2]... = value."""
    *path, value = path_and_value

    def mutate(document: Document) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def delete_key(*path: str) -> Mutation:
    def mutate(document: Document) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def rename_batch(old: str, new: str) -> Mutation:
    def mutate(document: Document) -> None:
        document["batches"][new] = document["batches"].pop(old)

    return mutate


PAYROLL = ("batches", "payroll-calculation")
REPORTS = ("batches", "report-export")
BULK = ("launch_classes", "bulk")


def test_packaged_catalog_defines_the_three_batches() -> None:
    catalog = load_catalog()
    assert catalog.names == ("attendance-import", "payroll-calculation", "report-export")
    standard = LaunchClass(
        "standard", ("FARGATE", "EC2"), frozenset({"FARGATE", "FARGATE_SPOT", "EC2"}), "balanced"
    )
    assert catalog.get("payroll-calculation") == BatchSpec(
        name="payroll-calculation",
        description=catalog.batches["payroll-calculation"].description,
        task_definition="batchgate-payroll",
        container="payroll",
        cpu=1024,
        memory=2048,
        command=("python", "-m", "payroll.calculate"),
        arguments=ArgumentRules(min_count=1, max_count=2, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$"),
        environment=frozenset({"PAYROLL_DRY_RUN", "LOG_LEVEL"}),
        timeout_seconds=1800,
        max_attempts=3,
        launch_class=standard,
    )
    attendance = catalog.batches["attendance-import"]
    assert (attendance.task_definition, attendance.cpu, attendance.memory) == (
        "batchgate-attendance",
        512,
        1024,
    )
    assert attendance.arguments == ArgumentRules(1, 1, 256, r"^[A-Za-z0-9_./-]+$")
    # The sample warm pool: attendance imports preload their module once per pool task.
    assert (attendance.pool, attendance.run_mode, attendance.preload) == (
        "attendance",
        "preload",
        ("attendance.import_file",),
    )
    assert catalog.pools["attendance"] == PoolSpec(
        name="attendance",
        task_definition="batchgate-attendance",
        container="attendance",
        cpu=1024,
        memory=2048,
        slots=2,
        capacity_provider="FARGATE_SPOT",
        min_tasks=0,
        max_tasks=4,
        architecture="ARM64",
        timezone="Europe/London",
        windows=(PoolWindow("cron(0 7 ? * MON-FRI *)", "cron(0 19 ? * MON-FRI *)", 2),),
    )
    assert catalog.batches_of("attendance") == (attendance,)
    assert (
        catalog.batches["payroll-calculation"].pool is None and catalog.batches["report-export"].pool is None
    )
    assert (attendance.timeout_seconds, attendance.max_attempts, attendance.launch_class.name) == (
        600,
        3,
        "interactive",
    )
    reports = catalog.batches["report-export"]
    assert (reports.task_definition, reports.container, reports.cpu, reports.memory) == (
        "batchgate-reports",
        "reports",
        256,
        512,
    )
    assert (reports.arguments.min_count, reports.arguments.max_count) == (1, 3)
    assert (reports.timeout_seconds, reports.max_attempts, reports.launch_class.name) == (900, 2, "bulk")
    assert all(spec.description for spec in catalog.batches.values())
    assert catalog.get("no-such-batch") is None


def test_packaged_launch_classes_list_strategies_in_preference_order() -> None:
    classes = load_catalog().launch_classes
    assert classes["interactive"] == LaunchClass(
        "interactive", ("EC2", "FARGATE"), frozenset({"EC2", "FARGATE"}), "latency"
    )
    assert classes["standard"].strategies == ("FARGATE", "EC2")
    assert classes["standard"].objective == "balanced"
    assert classes["bulk"] == LaunchClass(
        "bulk", ("FARGATE_SPOT", "FARGATE"), frozenset({"FARGATE_SPOT", "FARGATE"}), "cost"
    )


def test_catalog_is_read_only() -> None:
    catalog = load_catalog()
    with pytest.raises(TypeError):
        catalog.batches["extra"] = catalog.batches["report-export"]  # type: ignore[index]


def test_path_comes_from_argument_then_environment_then_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = packaged_document()
    document["batches"]["payroll-rerun"] = document["batches"]["payroll-calculation"]
    from_environment = write_catalog(tmp_path, document)
    monkeypatch.setenv("BATCHGATE_CATALOG", str(from_environment))
    assert "payroll-rerun" in load_catalog().batches

    explicit_dir = tmp_path / "explicit"
    explicit_dir.mkdir()
    assert "payroll-rerun" not in load_catalog(write_catalog(explicit_dir, packaged_document())).batches

    monkeypatch.delenv("BATCHGATE_CATALOG")
    assert "payroll-rerun" not in load_catalog().batches


INVALID_CATALOGS: list[tuple[str, Mutation, str]] = [
    ("version", set_value("version", 2), "version 2 is not supported (supported: 1)"),
    ("top-level key", set_value("defaults", {}), "unknown field 'defaults'"),
    ("no batches", set_value("batches", {}), "field 'batches' lists no batch"),
    ("batches not an object", set_value("batches", []), "field 'batches' must be a JSON object, got array"),
    (
        "missing field",
        delete_key(*PAYROLL, "command"),
        "batch 'payroll-calculation': missing field 'command'",
    ),
    (
        "unknown batch field",
        set_value(*REPORTS, "image", "alpine:latest"),
        "batch 'report-export': unknown field 'image'",
    ),
    (
        "unknown argument field",
        set_value(*PAYROLL, "arguments", "regex", ".*"),
        "batch 'payroll-calculation': unknown field 'arguments.regex'",
    ),
    (
        "arguments not an object",
        set_value(*PAYROLL, "arguments", ["2026-11"]),
        "batch 'payroll-calculation': field 'arguments' must be a JSON object",
    ),
    (
        "batch name",
        rename_batch("payroll-calculation", "Payroll_Calculation"),
        "batch 'Payroll_Calculation': name must match",
    ),
    ("batch name too long", rename_batch("report-export", "r" * 33), f"batch '{'r' * 33}': name must match"),
    (
        "empty description",
        set_value(*PAYROLL, "description", ""),
        "batch 'payroll-calculation': field 'description' must be a non-empty string",
    ),
    (
        "task definition",
        set_value(*PAYROLL, "task_definition", "batchgate payroll"),
        "field 'task_definition' ('batchgate payroll') must match",
    ),
    (
        "container",
        set_value(*PAYROLL, "container", "pay roll"),
        "batch 'payroll-calculation': field 'container' ('pay roll') must match",
    ),
    (
        "zero cpu",
        set_value(*PAYROLL, "cpu", 0),
        "batch 'payroll-calculation': field 'cpu' must be an integer of at least 1, got 0",
    ),
    (
        "cpu as text",
        set_value(*PAYROLL, "cpu", "1024"),
        "field 'cpu' must be an integer of at least 1, got \"1024\"",
    ),
    (
        "cpu as boolean",
        set_value(*PAYROLL, "cpu", True),
        "field 'cpu' must be an integer of at least 1, got true",
    ),
    (
        "negative memory",
        set_value(*PAYROLL, "memory", -2048),
        "field 'memory' must be an integer of at least 1",
    ),
    (
        "memory too large for cpu",
        set_value(*REPORTS, "memory", 4096),
        "batch 'report-export': cpu 256 with memory 4096 is not a valid Fargate task size",
    ),
    (
        "cpu not a Fargate size",
        set_value(*PAYROLL, "cpu", 1000),
        "cpu 1000 with memory 2048 is not a valid Fargate task size",
    ),
    ("empty command", set_value(*PAYROLL, "command", []), "field 'command' must not be empty"),
    ("command not strings", set_value(*PAYROLL, "command", ["python", 3]), "field 'command' must be a list"),
    (
        "pattern does not compile",
        set_value(*PAYROLL, "arguments", "pattern", "[0-9"),
        "batch 'payroll-calculation': field 'arguments.pattern' is not a valid regular expression",
    ),
    (
        "min above max",
        set_value(*PAYROLL, "arguments", "min_count", 3),
        "field 'arguments.min_count' (3) is greater than 'arguments.max_count' (2)",
    ),
    (
        "negative min",
        set_value(*PAYROLL, "arguments", "min_count", -1),
        "'arguments.min_count' must be an integer",
    ),
    (
        "zero max length",
        set_value(*PAYROLL, "arguments", "max_length", 0),
        "field 'arguments.max_length' must be an integer of at least 1, got 0",
    ),
    ("zero timeout", set_value(*PAYROLL, "timeout_seconds", 0), "field 'timeout_seconds' must be an integer"),
    (
        "zero attempts",
        set_value(*PAYROLL, "max_attempts", 0),
        "field 'max_attempts' must be an integer from 1 to 10, got 0",
    ),
    ("too many attempts", set_value(*PAYROLL, "max_attempts", 11), "from 1 to 10, got 11"),
    (
        "unknown launch class",
        set_value(*PAYROLL, "launch_class", "urgent"),
        "batch 'payroll-calculation': field 'launch_class': unknown launch class 'urgent' "
        "(known: bulk, interactive, standard)",
    ),
    (
        "environment name",
        set_value(*PAYROLL, "environment", ["LOG-LEVEL"]),
        "field 'environment': 'LOG-LEVEL' must match",
    ),
    (
        "reserved environment name",
        set_value(*PAYROLL, "environment", ["BATCHGATE_JOB_ID"]),
        "batch 'payroll-calculation': field 'environment': BATCHGATE_JOB_ID is reserved",
    ),
    ("AWS environment name", set_value(*PAYROLL, "environment", ["AWS_REGION"]), "AWS_REGION is reserved"),
    (
        "unknown strategy",
        set_value(*BULK, "strategies", ["SPOT", "FARGATE"]),
        "launch class 'bulk': field 'strategies': 'SPOT' is not one of EC2, FARGATE, FARGATE_SPOT",
    ),
    (
        "no strategies",
        set_value(*BULK, "strategies", []),
        "launch class 'bulk': field 'strategies' must not be empty",
    ),
    (
        "repeated strategy",
        set_value(*BULK, "strategies", ["FARGATE", "FARGATE"]),
        "field 'strategies' lists a value twice",
    ),
    (
        "unknown preference",
        set_value(*BULK, "allowed_preferences", ["LAMBDA"]),
        "field 'allowed_preferences': 'LAMBDA' is not one of",
    ),
    (
        "unknown launch class field",
        set_value(*BULK, "weight", 2),
        "launch class 'bulk': unknown field 'weight'",
    ),
    ("launch class name", set_value("launch_classes", "Bulk", {}), "launch class 'Bulk': name must match"),
]


@pytest.mark.parametrize(
    ("mutation", "fragment"),
    [pytest.param(mutation, fragment, id=case) for case, mutation, fragment in INVALID_CATALOGS],
)
def test_invalid_catalog_is_refused_with_a_precise_reason(
    tmp_path: Path, mutation: Mutation, fragment: str
) -> None:
    document = packaged_document()
    mutation(document)
    path = write_catalog(tmp_path, document)
    with pytest.raises(CatalogError) as raised:
        load_catalog(path)
    message = str(raised.value)
    assert fragment in message
    assert message.startswith(f"catalog {path}: ")


def test_unreadable_and_malformed_files_are_catalog_errors(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot be read"):
        load_catalog(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"version": 1,')
    with pytest.raises(CatalogError, match="not valid JSON"):
        load_catalog(broken)
    with pytest.raises(CatalogError, match="the document must be a JSON object, got array"):
        load_catalog(write_catalog(tmp_path, []))


def test_environment_is_optional_and_then_allows_nothing(tmp_path: Path) -> None:
    document = packaged_document()
    del document["batches"]["report-export"]["environment"]
    spec = load_catalog(write_catalog(tmp_path, document)).batches["report-export"]
    assert spec.environment == frozenset()
    assert spec.environment_problem({"LOG_LEVEL": "DEBUG"}) == (
        "environment variable LOG_LEVEL not allowed (allowed: none)"
    )


@pytest.mark.parametrize(
    ("batch", "arguments", "problem"),
    [
        ("payroll-calculation", ["2026-11"], None),
        ("payroll-calculation", ["2026-11", "acme:jp-01"], None),
        ("payroll-calculation", [], "expects 1 to 2 arguments, got 0"),
        ("payroll-calculation", ["2026-11", "acme", "extra"], "expects 1 to 2 arguments, got 3"),
        ("payroll-calculation", ["2026-11", "x y"], "argument 2 ('x y') does not match ^[A-Za-z0-9_.:-]+$"),
        ("payroll-calculation", ["2026-11\n"], "argument 1 ('2026-11\\n') does not match"),
        ("payroll-calculation", ["a" * 65], "argument 1 is 65 characters long; the limit is 64"),
        ("payroll-calculation", ["a" * 64], None),
        ("attendance-import", ["uploads/2026/11/acme-attendance.csv"], None),
        ("attendance-import", [], "expects exactly 1 argument, got 0"),
        ("attendance-import", ["../etc/passwd", "x"], "expects exactly 1 argument, got 2"),
        ("attendance-import", ["uploads/a b.csv"], "argument 1 ('uploads/a b.csv') does not match"),
        ("report-export", ["headcount", "2026-11", "csv"], None),
        ("report-export", ["headcount", "$(id)"], "argument 2 ('$(id)') does not match"),
        # Options and parent paths, though the patterns allow "-" and ".": refused by default.
        ("payroll-calculation", ["--dry-run"], "argument 1 ('--dry-run') starts with '-'"),
        ("payroll-calculation", ["2026-11", "-x"], "argument 2 ('-x') starts with '-'"),
        ("attendance-import", ["../etc/passwd"], "argument 1 ('../etc/passwd') has a '..' path segment"),
        ("attendance-import", ["uploads/../../secrets.csv"], "has a '..' path segment"),
        ("attendance-import", ["uploads/.."], "has a '..' path segment"),
        ("report-export", ["headcount", "dir=.."], "argument 2 ('dir=..') has a '..' path segment"),
        ("attendance-import", ["uploads/v1..v2/acme...csv"], None),
    ],
)
def test_argument_rules(batch: str, arguments: list[str], problem: str | None) -> None:
    spec = load_catalog().batches[batch]
    found = spec.argument_problem(arguments)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_a_batch_opts_in_to_options_and_parent_paths(tmp_path: Path) -> None:
    document = packaged_document()
    arguments = document["batches"]["attendance-import"]["arguments"]
    arguments.update(allow_options=True, allow_parent_paths=True)
    spec = load_catalog(write_catalog(tmp_path, document)).batches["attendance-import"]
    assert spec.argument_problem(["--verbose"]) is None
    assert spec.argument_problem(["../shared/file.csv"]) is None
    assert spec.argument_problem(["a b"]) is not None  # the pattern still applies


@pytest.mark.parametrize(
    "command",
    [
        ["sh", "-c", "export $1"],
        ["/bin/bash", "-c", "run"],
        ["bash", "--norc", "-ec", "run"],
        ["/usr/bin/env", "zsh", "-c", "run"],
        ["busybox", "sh", "-c", "run"],
    ],
)
def test_a_shell_script_command_needs_the_shell_mark(tmp_path: Path, command: list[str]) -> None:
    document = packaged_document()
    document["batches"]["report-export"]["command"] = command
    with pytest.raises(CatalogError, match=r"batch 'report-export': field 'command' .* \"shell\": true"):
        load_catalog(write_catalog(tmp_path, document))
    document["batches"]["report-export"]["shell"] = True
    assert load_catalog(write_catalog(tmp_path, document)).batches["report-export"].command == tuple(command)


@pytest.mark.parametrize(
    "command", [["sh", "/app/export.sh"], ["bash", "-e", "/app/export.sh"], ["python", "-c", "print(1)"]]
)
def test_a_shell_running_a_script_file_needs_no_mark(tmp_path: Path, command: list[str]) -> None:
    document = packaged_document()
    document["batches"]["report-export"]["command"] = command
    assert load_catalog(write_catalog(tmp_path, document)).batches["report-export"].command == tuple(command)


def test_catalog_flags_are_booleans(tmp_path: Path) -> None:
    document = packaged_document()
    document["batches"]["report-export"]["arguments"]["allow_options"] = "yes"
    with pytest.raises(CatalogError, match=r"'arguments\.allow_options' must be true or false"):
        load_catalog(write_catalog(tmp_path, document))


@pytest.mark.parametrize(
    ("environment", "problem"),
    [
        ({}, None),
        ({"LOG_LEVEL": "DEBUG", "PAYROLL_DRY_RUN": "1"}, None),
        (
            {"DATABASE_URL": "x"},
            "environment variable DATABASE_URL not allowed (allowed: LOG_LEVEL, PAYROLL_DRY_RUN)",
        ),
        ({"B": "1", "A": "2", "LOG_LEVEL": "INFO"}, "environment variables A, B not allowed"),
        ({"BATCHGATE_JOB_ID": "bg-forged"}, "environment variable BATCHGATE_JOB_ID not allowed"),
    ],
)
def test_environment_rules(environment: dict[str, str], problem: str | None) -> None:
    spec = load_catalog().batches["payroll-calculation"]
    found = spec.environment_problem(environment)
    assert (found is None) == (problem is None)
    if problem is not None:
        assert found is not None and problem in found
