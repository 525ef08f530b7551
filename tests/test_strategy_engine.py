"""plan_launch: the launch strategy engine, table-driven, plus a property over every input."""

from __future__ import annotations

from typing import Any

import pytest
from batchgate.adapters.ec2_capacity import CapacitySnapshot
from batchgate.domain.catalog import BatchSpec, load_catalog
from batchgate.domain.jobs import LaunchPlan
from batchgate.domain.latency_sketch import HistorySummary
from batchgate.domain.strategy import plan_launch
from batchgate.domain.strategy_settings import DEFAULT_STRATEGY_SETTINGS, StrategySettings
from hypothesis import given, settings
from hypothesis import strategies as st

CATALOG = load_catalog()
CP = "cp-ec2"
STRATEGIES = ("EC2", "FARGATE", "FARGATE_SPOT")


def spec(batch: str, **changes: Any) -> BatchSpec:
    found = CATALOG.get(batch)
    assert found is not None
    return found._replace(**changes) if changes else found


def free(*instances: tuple[int, int]) -> CapacitySnapshot:
    return CapacitySnapshot(CP, tuple(instances))


def measured(
    strategy: str, *, run_p95: float, start_p50: float, count: float = 20, **more: float
) -> HistorySummary:
    return HistorySummary(strategy=strategy, attempts=count, run_p95=run_p95, start_p50=start_p50, **more)  # type: ignore[arg-type]


FULL = free()  # the provider has no instance with room
ROOMY = free((4096, 8192), (2048, 4096))  # payroll (1024/2048): 4 + 2 = 6 slots
SHORT_HISTORY = {
    "EC2": measured("EC2", run_p95=14, start_p50=12),
    "FARGATE": measured("FARGATE", run_p95=15, start_p50=48),
}
LONG_HISTORY = {"FARGATE": measured("FARGATE", run_p95=3600, start_p50=48)}

CASES = [
    pytest.param(
        "attendance-import",
        {"capacity": ROOMY},
        ("EC2", "FARGATE"),
        ["fastest start", "slots free"],
        id="interactive warm EC2",
    ),
    pytest.param(
        "attendance-import", {"capacity": FULL}, ("FARGATE",), ["no EC2 slot free"], id="interactive no slot"
    ),
    pytest.param(
        "attendance-import",
        {},
        ("EC2", "FARGATE"),
        ["EC2 start p50 10 s vs Fargate 50 s"],
        id="interactive capacity unknown",
    ),
    pytest.param(
        "attendance-import",
        {"capacity": ROOMY, "history": LONG_HISTORY},
        ("FARGATE",),
        ["too long for EC2"],
        id="interactive too long for EC2",
    ),
    pytest.param(
        "payroll-calculation",
        {"capacity": ROOMY, "history": SHORT_HISTORY},
        ("EC2", "FARGATE"),
        ["p95 run 14 s", "EC2 start p50 12 s vs Fargate 48 s", "6 slots free"],
        id="standard short and warm",
    ),
    pytest.param(
        "payroll-calculation",
        {"capacity": ROOMY},
        ("FARGATE", "EC2"),
        ["catalog default", "(est.)"],
        id="standard cold start is not short",
    ),
    pytest.param(
        "payroll-calculation",
        {"capacity": FULL, "history": SHORT_HISTORY},
        ("FARGATE",),
        ["no EC2 slot free"],
        id="standard short but no slot",
    ),
    pytest.param(
        "payroll-calculation",
        {"capacity": ROOMY, "priority": 9},
        ("EC2", "FARGATE"),
        ["priority 9 plans for latency"],
        id="standard high priority plans for latency",
    ),
    pytest.param(
        "payroll-calculation",
        {"preference": "FARGATE_SPOT", "capacity": ROOMY},
        ("FARGATE_SPOT", "EC2", "FARGATE"),
        ["message preference"],
        id="standard spot preference honoured, on-demand last",
    ),
    pytest.param(
        "report-export",
        {"priority": 9},
        ("FARGATE", "FARGATE_SPOT"),
        ["priority 9 plans for latency", "fastest start: on-demand"],
        id="bulk high priority starts on on-demand Fargate",
    ),
    pytest.param(
        "report-export",
        {"priority": 9, "preference": "FARGATE_SPOT"},
        ("FARGATE_SPOT", "FARGATE"),
        ["message preference"],
        id="bulk high priority keeps an honoured Spot preference",
    ),
    pytest.param(
        "report-export", {}, ("FARGATE_SPOT", "FARGATE"), ["cheapest", "Spot start p50 55 s"], id="bulk spot"
    ),
    pytest.param(
        "report-export",
        {"previous_stop_code": "SpotInterruption"},
        ("FARGATE",),
        ["Spot interruption"],
        id="bulk after spot interruption",
    ),
    pytest.param(
        "report-export",
        {
            "history": {
                "FARGATE_SPOT": measured("FARGATE_SPOT", run_p95=600, start_p50=60, interruption_rate=0.5)
            }
        },
        ("FARGATE", "FARGATE_SPOT"),
        ["interruption rate 50% too high"],
        id="bulk spot too interrupted",
    ),
    pytest.param(
        "report-export",
        {"preference": "EC2", "capacity": ROOMY},
        ("FARGATE_SPOT", "FARGATE"),
        ["EC2 preference not allowed"],
        id="bulk EC2 preference refused",
    ),
    pytest.param(
        "attendance-import",
        {"ec2_capacity_provider": None},
        ("FARGATE",),
        ["no EC2 capacity provider configured"],
        id="no EC2 provider",
    ),
    pytest.param(
        "payroll-calculation",
        {"capacity": ROOMY, "history": {k: v._replace(attempts=1) for k, v in SHORT_HISTORY.items()}},
        ("FARGATE", "EC2"),
        ["(est.)"],
        id="thin history ignored",
    ),
]


@pytest.mark.parametrize(("batch", "kwargs", "chain", "fragments"), CASES)
def test_plan_launch_policy(
    batch: str, kwargs: dict[str, object], chain: tuple[str, ...], fragments: list[str]
) -> None:
    arguments: dict[str, object] = {"ec2_capacity_provider": CP, **kwargs}
    plan = plan_launch(spec(batch), **arguments)  # type: ignore[arg-type]
    assert plan.chain == chain, plan.reason
    for fragment in fragments:
        assert fragment in plan.reason, plan.reason
    assert plan.capacity_provider == (CP if plan.strategy == "EC2" else plan.strategy)
    assert (plan.cpu, plan.memory) == (spec(batch).cpu, spec(batch).memory)


def test_reason_names_the_figures_used() -> None:
    plan = plan_launch(
        spec("payroll-calculation"), ec2_capacity_provider=CP, capacity=ROOMY, history=SHORT_HISTORY
    )
    assert plan.reason.startswith(
        "EC2 (launch class standard, short run starts faster on warm EC2): "
        "p95 run 14 s, EC2 start p50 12 s vs Fargate 48 s, 6 slots free"
    )
    assert plan.inputs["capacity_slots"] == 6
    assert plan.inputs["run_source"] == "measured on EC2"
    assert plan.inputs["history"]["EC2"]["start_p50"] == 12


def test_catalog_expected_run_seconds_is_the_cold_start_estimate() -> None:
    quick = spec("payroll-calculation", expected_run_seconds=30)
    plan = plan_launch(quick, ec2_capacity_provider=CP, capacity=ROOMY)
    assert plan.strategy == "EC2"
    assert plan.inputs["run_source"] == "catalog expected_run_seconds"


def test_settings_move_the_thresholds() -> None:
    generous = StrategySettings(short_run_seconds=600)
    plan = plan_launch(
        spec("payroll-calculation"), ec2_capacity_provider=CP, capacity=ROOMY, settings=generous
    )
    assert plan.strategy == "EC2"
    assert StrategySettings.from_environment(
        {"BATCHGATE_STRATEGY_SHORT_RUN_SECONDS": "600"}
    ) == DEFAULT_STRATEGY_SETTINGS._replace(short_run_seconds=600.0)
    with pytest.raises(ValueError, match="HIGH_PRIORITY"):
        StrategySettings.from_environment({"BATCHGATE_STRATEGY_HIGH_PRIORITY": "high"})


def test_plan_survives_the_job_table_round_trip() -> None:
    plan = plan_launch(
        spec("payroll-calculation"), ec2_capacity_provider=CP, capacity=ROOMY, history=SHORT_HISTORY
    )
    from batchgate.adapters.job_table import from_attributes, to_attributes

    assert LaunchPlan.from_item(from_attributes(to_attributes(plan.to_item()))) == plan


def test_stored_inputs_replay_to_the_same_plan() -> None:
    """What a "whatif" tool does: rebuild the inputs from a stored plan and plan again, no AWS."""
    plan = plan_launch(
        spec("payroll-calculation"), ec2_capacity_provider=CP, capacity=ROOMY, history=SHORT_HISTORY
    )
    stored: dict[str, Any] = plan.inputs["history"]
    history = {name: HistorySummary.from_dict(item) for name, item in stored.items()}
    again = plan_launch(
        spec("payroll-calculation"), ec2_capacity_provider=CP, capacity=ROOMY, history=history
    )
    assert again == plan


summaries = st.builds(
    HistorySummary,
    strategy=st.sampled_from(STRATEGIES),
    attempts=st.floats(0, 200),
    interruption_rate=st.none() | st.floats(0, 1),
    start_p50=st.none() | st.floats(0.1, 600),
    run_p95=st.none() | st.floats(0.1, 86400),
    # The other fields keep their defaults: for a NamedTuple, builds() would draw them too.
    success_rate=st.none(),
    start_p95=st.none(),
    provisioning_p50=st.none(),
    pull_p50=st.none(),
    run_p50=st.none(),
    observed=st.just(0),
)


@settings(max_examples=400, deadline=None)
@given(
    batch=st.sampled_from(sorted(CATALOG.batches)),
    preference=st.none() | st.sampled_from(STRATEGIES),
    provider=st.none() | st.just(CP),
    priority=st.integers(0, 9),
    history=st.lists(summaries, max_size=3).map(lambda items: {item.strategy: item for item in items}),
    capacity=st.none()
    | st.lists(st.tuples(st.integers(0, 8192), st.integers(0, 32768)), max_size=4).map(
        lambda pairs: free(*pairs)
    ),
    previous=st.none()
    | st.sampled_from(["SpotInterruption", "EssentialContainerExited", "TaskFailedToStart"]),
)
def test_every_plan_uses_only_allowed_strategies_and_keeps_an_on_demand_fallback(
    *,
    batch: str,
    preference: str | None,
    provider: str | None,
    priority: int,
    history: dict[str, HistorySummary],
    capacity: CapacitySnapshot | None,
    previous: str | None,
) -> None:
    entry = spec(batch)
    plan = plan_launch(
        entry,
        preference=preference,
        ec2_capacity_provider=provider,
        priority=priority,
        history=history,
        capacity=capacity,
        previous_stop_code=previous,
    )
    chain = plan.chain
    launch_class = entry.launch_class
    allowed = set(launch_class.strategies) | {"FARGATE"}
    if preference in launch_class.allowed_preferences:
        allowed.add(preference)
    assert set(chain) <= allowed
    assert "FARGATE" in chain  # on-demand Fargate is always there to fall back on
    assert chain[0] == "FARGATE" or chain[-1] == "FARGATE"  # and nothing is tried after it
    honoured = preference in launch_class.allowed_preferences
    if priority >= DEFAULT_STRATEGY_SETTINGS.high_priority and not honoured:
        # Planned for latency: the fastest start, EC2 when it is in the chain, else on-demand.
        assert chain[0] == ("EC2" if "EC2" in chain else "FARGATE")
    assert len(set(chain)) == len(chain)
    if provider is None:
        assert "EC2" not in chain
    if previous == "SpotInterruption":
        assert "FARGATE_SPOT" not in chain
    if capacity is not None and capacity.slots(entry.cpu, entry.memory) == 0:
        assert "EC2" not in chain
    assert plan.reason.startswith(plan.strategy)
    assert (
        plan_launch(
            entry,
            preference=preference,
            ec2_capacity_provider=provider,
            priority=priority,
            history=history,
            capacity=capacity,
            previous_stop_code=previous,
        )
        == plan
    )  # pure
