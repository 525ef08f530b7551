"""batchgate.ops.pool_template: the template's warm pool sections rendered from any catalog, and the
command that checks and rewrites them (the packaged catalog's pools are checked in test_template.py)."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from batchgate.domain.catalog import Catalog, parse_catalog
from batchgate.ops import pool_template
from batchgate.ops.template import load_template

from tests.conftest import ROOT

TEMPLATE = ROOT / "template.yaml"


def packaged_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        resources.files("batchgate").joinpath("catalog.json").read_text(encoding="utf-8")
    )
    return document


def catalog_with(change: Any = None) -> Catalog:
    document = copy.deepcopy(packaged_document())
    if change is not None:
        change(document)
    return parse_catalog(document)


def add_short_jobs_pool(document: dict[str, Any]) -> None:
    """A second pool, always open (no schedule), for the reports batch."""
    document["pools"]["short-jobs"] = {
        "task_definition": "batchgate-reports",
        "container": "reports",
        "cpu": 512,
        "memory": 1024,
        "slots": 4,
        "capacity_provider": "FARGATE",
        "min_tasks": 1,
        "max_tasks": 3,
        "target_busy_ratio": 0.5,
    }
    document["batches"]["report-export"]["pool"] = "short-jobs"


def rendered(catalog: Catalog, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "template.yaml"
    path.write_text(pool_template.rewrite(TEMPLATE.read_text(), catalog))
    return load_template(path)


def test_every_pool_gets_its_own_resources_and_shares_the_stack_wide_ones(tmp_path: Path) -> None:
    template = rendered(catalog_with(add_short_jobs_pool), tmp_path)
    resources_ = template["Resources"]
    for prefix in ("PoolAttendance", "PoolShortJobs"):
        for suffix in ("Queue", "DeadLetterQueue", "TaskRole", "TaskDefinition", "Service", "ScalableTarget"):
            assert prefix + suffix in resources_, prefix + suffix
    assert "PoolShortJobsImage" in template["Parameters"]
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["POOL_QUEUE_URLS"] == {
        "Fn::Sub": "attendance=${PoolAttendanceQueue},short-jobs=${PoolShortJobsQueue}"
    }
    short = resources_["PoolShortJobsService"]["Properties"]
    assert short["ServiceName"] == {"Fn::Sub": "${AWS::StackName}-pool-short-jobs"}
    assert short["CapacityProviderStrategy"] == [{"CapacityProvider": "FARGATE", "Weight": 1}]
    assert short["DesiredCount"] == 1
    definition = resources_["PoolShortJobsTaskDefinition"]["Properties"]
    assert definition["RuntimePlatform"]["CpuArchitecture"] == "X86_64"  # the catalog's default
    # Always open: the pool's own bounds, no scheduled action.
    target = resources_["PoolShortJobsScalableTarget"]["Properties"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 3)
    assert "ScheduledActions" not in target
    policy = resources_["PoolShortJobsBusyRatioScaling"]["Properties"]
    assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 0.5
    statements = resources_["PoolShortJobsTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ]
    [claim] = [statement for statement in statements if statement["Sid"] == "ClaimAndReportJobs"]
    assert claim["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] == [
        "bg-report-export-" + "?" * 20
    ]


def test_a_catalog_without_pools_renders_none(tmp_path: Path) -> None:
    template = rendered(catalog_with(_drop_pools), tmp_path)
    assert not [name for name in template["Resources"] if name.startswith("Pool") and name != "PoolTable"]
    assert not [name for name in template["Parameters"] if name.endswith("Image")]
    assert template["Globals"]["Function"]["Environment"]["Variables"]["POOL_QUEUE_URLS"] == ""
    sids = [
        statement["Sid"]
        for statement in template["Resources"]["DispatchFunctionRole"]["Properties"]["Policies"][0][
            "PolicyDocument"
        ]["Statement"]
    ]
    assert "OfferWarmAttempts" not in sids
    assert "PoolQueueUrls" not in template["Outputs"]


def _drop_pools(document: dict[str, Any]) -> None:
    del document["pools"]
    for batch in document["batches"].values():
        batch.pop("pool", None)
        batch.pop("run_mode", None)


def test_rendering_is_stable() -> None:
    text = TEMPLATE.read_text()
    catalog = catalog_with(add_short_jobs_pool)
    once = pool_template.rewrite(text, catalog)
    assert pool_template.rewrite(once, catalog) == once
    assert pool_template.stale_sections(text, catalog) == [
        "parameters",
        "environment",
        "dispatch offers",
        "resources",
        "outputs",
    ]
    assert pool_template.stale_sections(once, catalog) == []


def test_a_change_to_a_pool_is_drift() -> None:
    def more_tasks(document: dict[str, Any]) -> None:
        document["pools"]["attendance"]["max_tasks"] = 6

    assert pool_template.stale_sections(TEMPLATE.read_text(), catalog_with(more_tasks)) == ["resources"]


def test_pools_whose_logical_ids_collide_are_refused() -> None:
    def colliding(document: dict[str, Any]) -> None:
        document["pools"]["day-1"] = copy.deepcopy(document["pools"]["attendance"])
        document["pools"]["day1"] = copy.deepcopy(document["pools"]["attendance"])

    with pytest.raises(pool_template.PoolTemplateError, match="same logical id PoolDay1"):
        pool_template.rewrite(TEMPLATE.read_text(), catalog_with(colliding))


def test_a_template_without_the_markers_is_refused() -> None:
    text = TEMPLATE.read_text().replace("# <<< generated from the catalog's pools: outputs\n", "")
    with pytest.raises(pool_template.PoolTemplateError, match="'outputs'"):
        pool_template.rewrite(text, catalog_with())


def test_the_command_checks_then_writes(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(TEMPLATE.read_text())
    catalog = tmp_path / "catalog.json"
    document = packaged_document()
    add_short_jobs_pool(document)
    catalog.write_text(json.dumps(document))
    said: list[str] = []
    arguments = ["--catalog", str(catalog), "--template", str(template)]

    assert pool_template.main(arguments, out=said.append) == 1
    assert "run python -m batchgate.ops.pool_template --write" in said[-1]
    assert template.read_text() == TEMPLATE.read_text()

    assert pool_template.main([*arguments, "--write"], out=said.append) == 0
    assert pool_template.main(arguments, out=said.append) == 0
    assert "match the catalog" in said[-1]
    assert "PoolShortJobsService" in load_template(template)["Resources"]
