"""A function's cold start imports only what its handler uses: never the ops tooling in the same package
(CLI, stats report, what-if replay, local stack), whose imports a cold start would pay for nothing."""

from __future__ import annotations

import ast
import json
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.import_probe import ImportProbe

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ("dispatch", "track", "history", "sweep")
OPS_ONLY = (
    "batchgate.ops.cli",
    "batchgate.ops.stats",
    "batchgate.ops.job_views",
    "batchgate.ops.job_search",
    "batchgate.ops.whatif",
    "batchgate.ops.local",
    "click",
    "rich",
    "yaml",
    "moto",
)
# What a cold start loaded, the boto3 clients it made, by service, and the dataclasses of batchgate's
# modules it made: one run per function and environment, shared by the tests that read it (the module
# is one xdist group).
PROBE = """
import collections, dataclasses, json, sys, boto3
made = collections.Counter()
make = boto3.client
def counted(service, *args, **kwargs):
    made[service] += 1
    return make(service, *args, **kwargs)
boto3.client = counted
import app
classes = sorted(
    f"{value.__module__}.{value.__qualname__}"
    for name, module in list(sys.modules.items()) if name.startswith("batchgate")
    for value in vars(module).values()
    if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == name
)
print(json.dumps({"modules": sorted(sys.modules), "clients": made, "dataclasses": classes}))
"""
pytestmark = pytest.mark.xdist_group("handler-imports")


@dataclass(frozen=True)
class ColdStart:
    """What importing a function's handler loaded (`modules`) and made (`clients`, `dataclasses`)."""

    modules: list[str]
    clients: dict[str, int]
    dataclasses: list[str]


class ColdStarts:
    """Each function's cold start in Lambda's environment (stand-in credentials: clients are made,
    nothing is called), read once per function and environment: a child of `probe` per import, as a
    fresh interpreter would load it (tests/import_probe.py)."""

    def __init__(self, probe: ImportProbe) -> None:
        self._probe = probe
        self._found: dict[tuple[str, tuple[tuple[str, str], ...]], ColdStart] = {}

    def of(self, function: str, **variables: str) -> ColdStart:
        """The import of the function's handler; `variables` change its environment."""
        key = (function, tuple(sorted(variables.items())))
        if key not in self._found:
            found = json.loads(self.printed(function, PROBE, **variables))
            self._found[key] = ColdStart(
                modules=found["modules"], clients=found["clients"], dataclasses=found["dataclasses"]
            )
        return self._found[key]

    def printed(self, function: str, statement: str, **variables: str) -> str:
        """What `statement` prints beside the function's handler, in a fresh interpreter's state."""
        return self._probe.run(
            statement, ROOT / "functions" / function, handler_environment(function, variables)
        )


def handler_environment(function: str, variables: Mapping[str, str]) -> dict[str, str]:
    """Lambda's environment for the function's handler, changed by `variables`."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "functions" / function), str(ROOT / "layers" / "batchgate")]
        ),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "JOB_TABLE_NAME": "batchgate-jobs",
        "ECS_CLUSTER": "batchgate",
        "HISTORY_TABLE_NAME": "batchgate-history",
        "EC2_CAPACITY_PROVIDER": "batchgate-ec2",
        "JOBS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/batchgate-jobs",
        **variables,
    }


@pytest.fixture(scope="module")
def cold_starts() -> Iterator[ColdStarts]:
    with ImportProbe([sys.executable]) as probe:
        yield ColdStarts(probe)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_cold_start_imports_none_of_the_ops_tooling(cold_starts: ColdStarts, function: str) -> None:
    modules = cold_starts.of(function).modules
    assert "batchgate.adapters.telemetry" in modules  # the handler did import its own code
    imported = [name for name in modules if name.split(".")[0] in OPS_ONLY or name.startswith(OPS_ONLY)]
    assert imported == []


# Loaded on first use, or only where configured: a cold start that does not need them does not pay.
FIRST_USE = ("fastjsonschema", "aws_lambda_powertools.utilities.typing")
WHEN_CONFIGURED = (
    "batchgate.adapters.ec2_capacity",
    "batchgate.adapters.pool_table",
    "batchgate.services.warm_advice",
)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_cold_start_loads_neither_the_schema_compiler_nor_the_context_type(
    cold_starts: ColdStarts, function: str
) -> None:
    modules = cold_starts.of(function).modules
    assert "batchgate.adapters.telemetry" in modules
    assert [name for name in modules if name.startswith(FIRST_USE)] == []


def test_dispatch_loads_the_capacity_and_warm_adapters_only_when_configured(cold_starts: ColdStarts) -> None:
    bare = cold_starts.of("dispatch", EC2_CAPACITY_PROVIDER="").modules
    configured = cold_starts.of("dispatch", POOL_TABLE_NAME="batchgate-pools").modules

    assert "batchgate.services.dispatch" in bare
    assert [name for name in WHEN_CONFIGURED if name in bare] == []
    assert [name for name in WHEN_CONFIGURED if name not in configured] == []


# What reads and checks the catalog's schedules (docs/catalog.md): only the sweep among the functions.
SCHEDULES = ("batchgate.domain.schedules", "batchgate.domain.schedule_expressions", "zoneinfo")
# What a function never needs at its cold start (the warm lane configured), by function: the history
# function reads no catalog (its schedules and their time zones, retry policies) and takes no batch's
# slots; dispatch and track read no schedule; dispatch cancels a task, looks for the task of a resumed
# launch and applies no task event, and track applies a pool task's stop (with its heartbeat), on rare
# paths that import what they need. No function reads its package's files through importlib.resources'
# readers.
NOT_AT_INIT = {
    "dispatch": (
        "batchgate.services.cancel",
        "batchgate.domain.described_tasks",
        "batchgate.domain.task_events",
        "importlib.resources.readers",
        *SCHEDULES,
    ),
    "track": ("batchgate.domain.warm", "batchgate.domain.pools", "importlib.resources.readers", *SCHEDULES),
    "history": (
        "batchgate.domain.catalog",
        "batchgate.domain.schedules",
        "batchgate.domain.schedule_expressions",
        "zoneinfo",
        "batchgate.domain.retry_policy",
        "batchgate.domain.batch_slots",
    ),
}


@pytest.mark.parametrize("function", sorted(NOT_AT_INIT))
def test_a_cold_start_loads_only_what_its_function_uses(cold_starts: ColdStarts, function: str) -> None:
    modules = cold_starts.of(function, POOL_TABLE_NAME="batchgate-pools").modules
    assert "batchgate.adapters.telemetry" in modules
    assert [name for name in modules if name.startswith(NOT_AT_INIT[function])] == []


# The only dataclasses a cold start makes, by function. A dataclass generates and compiles its methods
# when its module is imported (a frozen one six of them, about a millisecond on Python 3.12): records
# are NamedTuples, wiring a dataclass without eq or repr (docs/contracts-internal.md, Cold start).
DATACLASSES_AT_INIT = {
    "dispatch": ["batchgate.domain.messages.SubmitMessage", "batchgate.services.dispatch.Dispatcher"],
    "track": ["batchgate.services.track.Tracker"],
    "history": [],
    "sweep": ["batchgate.services.schedule_watch.ScheduleWatch", "batchgate.services.sweep.Sweeper"],
}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_cold_start_makes_only_the_dataclasses_it_must(cold_starts: ColdStarts, function: str) -> None:
    assert cold_starts.of(function).dataclasses == DATACLASSES_AT_INIT[function]


def test_a_dispatch_cold_start_compiles_no_pattern_for_refused_messages(cold_starts: ColdStarts) -> None:
    statement = (
        "import app\n"
        "from batchgate.domain import masking\n"
        "print(masking._environment_key.cache_info().currsize)"
    )
    assert cold_starts.printed("dispatch", statement).strip() == "0"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_handler_imports_boto3_before_powertools_and_batchgate(function: str) -> None:
    # Imported from inside batchgate's own imports, a few frames deeper, botocore's import maps and
    # unmaps a frame stack chunk hundreds of times (docs/contracts-internal.md, Cold start).
    tree = ast.parse((ROOT / "functions" / function / "app.py").read_text(encoding="utf-8"))
    imported = [
        node.names[0].name if isinstance(node, ast.Import) else node.module or ""
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom))
    ]
    libraries = [
        name for name in imported if name.split(".")[0] in ("boto3", "aws_lambda_powertools", "batchgate")
    ]
    assert libraries[0] == "boto3"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_cold_start_makes_one_client_per_service(cold_starts: ColdStarts, function: str) -> None:
    # Every adapter of a handler shares its service's client: each extra one is model loading paid by
    # every cold start. With the pools configured, track and the sweep have two tables to share one.
    made = cold_starts.of(function, POOL_TABLE_NAME="batchgate-pools").clients
    assert made  # the handler did make its clients at init
    assert {service: count for service, count in made.items() if count != 1} == {}
