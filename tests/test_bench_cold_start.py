"""The cold-start benchmark's floors: what a handler needs before batchgate's own code. A floor that
imported something its handler does not would make batchgate's own code look cheaper than it is."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import cold_start
from bench.cold_start import (
    BASELINE,
    FLOORS,
    FUNCTIONS,
    WITH_BATCH,
    WITH_CLIENTS,
    WITH_POWERTOOLS,
    WITH_STREAM_BATCH,
    Measurement,
    Subject,
    python_command,
    subjects,
)
from tests.import_probe import ImportProbe

LIST_MODULES = "; import json, sys; print(json.dumps(sorted(sys.modules)))"


@pytest.fixture(scope="module")
def by_name() -> dict[str, Subject]:
    return {subject.name: subject for subject in subjects(None)}


class ModulesAfter:
    """sys.modules after the subject's statement runs in its (or another subject's) Lambda environment,
    as in a fresh interpreter: a child of `probe` per pair (tests/import_probe.py), read by every test
    that asks (the module is one xdist group)."""

    def __init__(self, probe: ImportProbe) -> None:
        self._probe = probe
        self._found: dict[tuple[str, str], frozenset[str]] = {}

    def of(self, subject: Subject, environment_of: Subject | None = None) -> set[str]:
        environment = environment_of or subject
        key = (subject.name, environment.name)
        if key not in self._found:
            printed = self._probe.run(
                subject.statement + LIST_MODULES, environment.folder, environment.environment
            )
            self._found[key] = frozenset(json.loads(printed))
        return set(self._found[key])


@pytest.fixture(scope="module")
def modules_after() -> Iterator[ModulesAfter]:
    with ImportProbe(python_command(None)) as probe:
        yield ModulesAfter(probe)


pytestmark = pytest.mark.xdist_group("cold-start-subjects")


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_floor_imports_only_what_its_handler_imports(
    by_name: dict[str, Subject], modules_after: ModulesAfter, function: str
) -> None:
    handler = modules_after.of(by_name[function])
    floor = modules_after.of(by_name[FLOORS[function]], environment_of=by_name[function])

    assert floor < handler
    # The floor is the handler's Powertools, X-Ray SDK included, and none of batchgate's domain.
    assert {
        "aws_lambda_powertools.tracing.tracer",
        "aws_xray_sdk.core",
        "batchgate.adapters.aws_clients",
    } <= floor
    floor_batchgate = {name for name in floor if name.startswith("batchgate.")}
    assert not floor_batchgate - {"batchgate.adapters", "batchgate.adapters.aws_clients"}
    service = {"HistoryFunction": "history_feed"}.get(function, function.removesuffix("Function").lower())
    assert f"batchgate.services.{service}" in handler - floor


def test_only_the_batch_processing_functions_pay_for_the_batch_utility(
    by_name: dict[str, Subject], modules_after: ModulesAfter
) -> None:
    batch = "aws_lambda_powertools.utilities.batch"
    assert set(FLOORS) == set(FUNCTIONS)
    assert [function for function in FUNCTIONS if FLOORS[function] == WITH_BATCH] == ["DispatchFunction"]
    assert [function for function in FUNCTIONS if FLOORS[function] == WITH_STREAM_BATCH] == [
        "HistoryFunction"
    ]
    assert batch in modules_after.of(by_name["DispatchFunction"])
    assert batch in modules_after.of(by_name["HistoryFunction"])
    assert batch not in modules_after.of(by_name["TrackFunction"])
    assert batch not in modules_after.of(by_name[BASELINE])


def test_the_history_floor_makes_only_the_dynamodb_client(
    by_name: dict[str, Subject], modules_after: ModulesAfter
) -> None:
    floor = modules_after.of(by_name[WITH_STREAM_BATCH], environment_of=by_name["HistoryFunction"])
    assert "aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event" in floor
    assert "batchgate.adapters.ecs" not in modules_after.of(by_name["HistoryFunction"])


def measured(seconds: dict[str, list[float]]) -> Measurement:
    names = [BASELINE, WITH_CLIENTS, WITH_POWERTOOLS, WITH_BATCH, WITH_STREAM_BATCH, *FUNCTIONS]
    subjects = [Subject(name, "", Path("."), {}, seconds[name]) for name in names]
    return Measurement(subjects, {name: [("app", 0.05)] for name in FUNCTIONS}, [], "no build here")


# The bare import and the floors, each round; round 2 ran on a machine twice as slow.
FLOORS_TWICE_AS_SLOW_IN_ROUND_2 = {
    BASELINE: [0.200, 0.400, 0.200],
    WITH_CLIENTS: [0.240, 0.480, 0.240],
    WITH_POWERTOOLS: [0.260, 0.520, 0.260],
    WITH_BATCH: [0.280, 0.560, 0.280],
    WITH_STREAM_BATCH: [0.250, 0.500, 0.250],
}


def test_the_report_gives_each_rounds_ratio_and_each_handlers_own_code() -> None:
    # Round 2 ran on a machine twice as slow, for every subject.
    report = cold_start.report(
        measured(
            {
                **FLOORS_TWICE_AS_SLOW_IN_ROUND_2,
                "DispatchFunction": [0.360, 0.720, 0.360],
                "TrackFunction": [0.290, 0.580, 0.290],
                "HistoryFunction": [0.270, 0.540, 0.270],
                "SweepFunction": [0.300, 0.600, 0.300],
            }
        )
    )
    rows = [row for row in report.splitlines() if row.startswith("| cold start")]

    # Judged: each handler's import less its floor, round by round, against that round's boto3.
    assert rows[0].endswith(
        "| cold start: own code of the DispatchFunction handler (its import above its floor) / "
        "bare import boto3 | ≤ 0.15x | 0.40x (80 ms vs 200 ms) | 2.67 | MISS |"
    )
    assert rows[1].endswith("| ≤ 0.15x | 0.15x (30 ms vs 200 ms) | 1.00 | PASS |")
    assert rows[2].endswith("| ≤ 0.15x | 0.10x (20 ms vs 200 ms) | 0.67 | PASS |")
    assert rows[3].endswith("| ≤ 0.15x | 0.20x (40 ms vs 200 ms) | 1.33 | MISS |")
    # Reported only: the whole import against bare boto3, against boto3 with the clients, the floors.
    assert rows[4].endswith(
        "import of the DispatchFunction handler / bare import boto3 | - | 1.80x (360 ms vs 200 ms) | - | "
        "reported |"
    )
    assert "TrackFunction handler / import boto3 + the DynamoDB and ECS clients | - | 1.21x" in rows[9]
    assert rows[12].endswith(
        "(the DispatchFunction handler's floor) / bare import boto3 | - | 1.40x | - | reported |"
    )
    assert rows[14].endswith(
        "batch utility (DynamoDB streams) (the HistoryFunction handler's floor) / bare import boto3 | - | "
        "1.25x | - | reported |"
    )
    assert [row.endswith("| reported |") for row in rows[:16]] == [False] * 4 + [True] * 12


def test_own_code_is_judged_against_the_same_rounds_boto3() -> None:
    # Round 2 ran on a machine twice as slow: its own code and its boto3 both doubled.
    report = cold_start.report(
        measured(
            {
                **FLOORS_TWICE_AS_SLOW_IN_ROUND_2,
                "DispatchFunction": [0.300, 0.600, 0.320],
                "TrackFunction": [0.280, 0.560, 0.300],
                "HistoryFunction": [0.270, 0.540, 0.270],
                "SweepFunction": [0.280, 0.560, 0.290],
            }
        )
    )
    rows = [row for row in report.splitlines() if row.startswith("| cold start: own code")]

    assert [row.split(" | ")[2] for row in rows] == [
        "0.10x (40 ms vs 200 ms)",
        "0.10x (40 ms vs 200 ms)",
        "0.10x (20 ms vs 200 ms)",
        "0.10x (30 ms vs 200 ms)",
    ]
    assert all(row.endswith("| PASS |") for row in rows)
