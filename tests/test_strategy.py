from __future__ import annotations

import pytest
from batchgate.domain.catalog import load_catalog
from batchgate.domain.strategy import plan_launch

CATALOG = load_catalog()


@pytest.mark.parametrize(
    ("batch", "preference", "ec2", "strategy", "capacity_provider", "fallbacks", "reason_fragment"),
    [
        ("payroll-calculation", None, None, "FARGATE", "FARGATE", (), "catalog default"),
        ("report-export", None, None, "FARGATE_SPOT", "FARGATE_SPOT", ("FARGATE",), "launch class bulk"),
        ("attendance-import", None, "cp-ec2", "EC2", "cp-ec2", ("FARGATE",), "launch class interactive"),
        ("attendance-import", None, None, "FARGATE", "FARGATE", (), "no EC2 capacity provider"),
        (
            "payroll-calculation",
            "FARGATE_SPOT",
            None,
            "FARGATE_SPOT",
            "FARGATE_SPOT",
            ("FARGATE",),
            "preference",
        ),
        ("report-export", "EC2", "cp-ec2", "FARGATE_SPOT", "FARGATE_SPOT", ("FARGATE",), "not allowed"),
        ("report-export", "FARGATE", None, "FARGATE", "FARGATE", ("FARGATE_SPOT",), "message preference"),
    ],
)
def test_plan_follows_launch_class_and_allowed_preference(
    batch: str,
    preference: str | None,
    ec2: str | None,
    strategy: str,
    capacity_provider: str,
    fallbacks: tuple[str, ...],
    reason_fragment: str,
) -> None:
    spec = CATALOG.get(batch)
    assert spec is not None
    plan = plan_launch(spec, preference=preference, ec2_capacity_provider=ec2)
    assert (plan.strategy, plan.capacity_provider, plan.fallbacks) == (strategy, capacity_provider, fallbacks)
    assert reason_fragment in plan.reason


@pytest.mark.parametrize("batch", sorted(CATALOG.batches))
@pytest.mark.parametrize("preference", [None, "EC2", "FARGATE", "FARGATE_SPOT"])
@pytest.mark.parametrize("ec2", [None, "cp-ec2"])
def test_every_plan_keeps_an_on_demand_fallback(batch: str, preference: str | None, ec2: str | None) -> None:
    spec = CATALOG.get(batch)
    assert spec is not None
    plan = plan_launch(spec, preference=preference, ec2_capacity_provider=ec2)
    chain = (plan.strategy, *plan.fallbacks)
    assert "FARGATE" in chain
    assert len(set(chain)) == len(chain)
    allowed = set(spec.launch_class.strategies) | set(spec.launch_class.allowed_preferences) | {"FARGATE"}
    assert set(chain) <= allowed
    if ec2 is None:
        assert "EC2" not in chain
