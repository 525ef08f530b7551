"""What choosing a launch strategy costs per job, next to what launching costs.

- `plan_launch` alone (pure): per-call time over the catalog's batches with history and capacity.
- The whole planning path of dispatch with warm caches: history summaries (HistoryTable, cached) +
  EC2 free capacity (Ec2Capacity, cached) + plan_launch, per job, and the AWS calls it makes per job
  (counted on the boto3 clients' `before-call` events), next to the calls of the first, cold job.
- A reference: one RunTask call against in-process moto (a lower bound of a real RunTask, which takes
  tens to hundreds of milliseconds over the network).

Run with `python -m bench` (all benchmarks, results in bench/results.md) or `python -m bench.plan_launch`.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")

import boto3
from batchgate.adapters.ec2_capacity import Ec2Capacity
from batchgate.adapters.history_table import HistoryTable
from batchgate.domain.catalog import load_catalog
from batchgate.domain.latency_sketch import AttemptObservation
from batchgate.domain.strategy import plan_launch
from batchgate.ops.template import load_template, table_definition
from botocore.stub import Stubber
from moto import mock_aws

from bench._aws_calls import CallCounter
from bench._figures import Figure, figures_table
from bench._in_process import ROOT

PLAN_CALLS = 20_000
PATH_JOBS = 5_000
RUN_TASK_CALLS = 200
PROVIDER = "cp-ec2"
CLUSTER = "batchgate-bench"


def _timed(function: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return samples


def _capacity_client() -> tuple[Any, Stubber]:
    """ECS answering ListContainerInstances / DescribeContainerInstances once (moto cannot place
    tasks on a custom EC2 capacity provider); any further call would fail the stub."""
    client = boto3.client("ecs", region_name="us-east-1")
    stubber = Stubber(client)
    arn = "arn:aws:ecs:us-east-1:123456789012:container-instance/batchgate-bench/{}"
    stubber.add_response(
        "list_container_instances", {"containerInstanceArns": [arn.format(n) for n in range(3)]}
    )
    stubber.add_response(
        "describe_container_instances",
        {
            "containerInstances": [
                {
                    "containerInstanceArn": arn.format(n),
                    "capacityProviderName": PROVIDER,
                    "status": "ACTIVE",
                    "agentConnected": True,
                    "remainingResources": [
                        {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
                        {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096},
                    ],
                }
                for n in range(3)
            ]
        },
    )
    stubber.activate()
    return client, stubber


def _moto_run_task_seconds() -> list[float]:
    ecs = boto3.client("ecs", region_name="us-east-1")
    ec2 = boto3.client("ec2", region_name="us-east-1")
    cluster = ecs.create_cluster(clusterName=CLUSTER)["cluster"]["clusterArn"]
    ecs.register_task_definition(
        family="bench",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[{"name": "c", "image": "bench:latest", "memory": 512, "essential": True}],
    )
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    group = ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    counter = iter(range(10**9))

    def run() -> None:
        ecs.run_task(
            cluster=cluster,
            taskDefinition="bench",
            count=1,
            startedBy="bg-bench",
            clientToken=f"bench-{next(counter)}",
            capacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}],
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": [subnet],
                    "securityGroups": [group],
                    "assignPublicIp": "DISABLED",
                }
            },
        )

    run()  # warm-up
    return _timed(run, RUN_TASK_CALLS)


def run() -> str:
    catalog = load_catalog()
    specs = [catalog.batches[name] for name in catalog.names]
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        template = load_template(ROOT / "template.yaml")
        dynamodb.create_table(TableName="bench-history", **table_definition(template, "HistoryTable"))
        history = HistoryTable("bench-history", dynamodb, cache_seconds=3600)
        for spec in specs:
            for strategy, start, run_time in (("EC2", 12, 14), ("FARGATE", 48, 15), ("FARGATE_SPOT", 55, 15)):
                for _ in range(5):
                    history.record(
                        spec.name,
                        AttemptObservation(strategy, True, start_seconds=start, run_seconds=run_time),
                    )
        ecs_client, stubber = _capacity_client()
        capacity = Ec2Capacity(CLUSTER, PROVIDER, ecs_client, ttl_seconds=3600)
        counter = CallCounter(dynamodb, ecs_client)

        def plan_job(index: int) -> object:
            spec = specs[index % len(specs)]
            return plan_launch(
                spec,
                ec2_capacity_provider=PROVIDER,
                history=history.summaries(spec.name),
                capacity=capacity.snapshot(),
            )

        # Cold: the first job of each batch reads its history; the first job reads capacity.
        for index in range(len(specs)):
            plan_job(index)
        cold_calls = len(counter.calls)
        cold_kinds = sorted({call.operation for call in counter.calls})
        counter.clear()
        jobs = iter(range(10**9))
        path = _timed(lambda: plan_job(next(jobs)), PATH_JOBS)
        warm_calls = len(counter.calls)
        stubber.assert_no_pending_responses()

        summaries = {spec.name: history.summaries(spec.name) for spec in specs}
        snapshot = capacity.snapshot()
        pure_index = iter(range(10**9))

        def pure() -> object:
            spec = specs[next(pure_index) % len(specs)]
            return plan_launch(
                spec, ec2_capacity_provider=PROVIDER, history=summaries[spec.name], capacity=snapshot
            )

        pure_samples = _timed(pure, PLAN_CALLS)
        run_task = _moto_run_task_seconds()

    def us(samples: list[float], q: float) -> float:
        ordered = sorted(samples)
        return ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1e6

    pure_p50, path_p50, moto_p50 = us(pure_samples, 0.5), us(path, 0.5), us(run_task, 0.5)
    example = plan_job(1)
    warm_per_job = f"{warm_calls / PATH_JOBS:g}"
    rows = [
        ("plan_launch alone (pure)", PLAN_CALLS, pure_p50, us(pure_samples, 0.99), "0"),
        ("history + capacity + plan_launch, warm caches", PATH_JOBS, path_p50, us(path, 0.99), warm_per_job),
        ("one RunTask on in-process moto (reference)", RUN_TASK_CALLS, moto_p50, us(run_task, 0.99), "1"),
    ]
    # Calls per second: how many of them one thread makes back to back (the timer's own cost included).
    path_rate, pure_rate = PATH_JOBS / sum(path), PLAN_CALLS / sum(pure_samples)
    figures = [
        Figure(
            "plan_launch calls/s, warm history and capacity caches (one thread)",
            "-",
            f"{path_rate:,.0f}/s (plan_launch alone {pure_rate:,.0f}/s)",
        ),
    ]
    lines = [
        "## plan_launch: the cost of choosing a strategy (`bench/plan_launch.py`)",
        "",
        "Per job, measured in one run, in-process (no network). AWS calls counted on the boto3 clients.",
        "",
        figures_table(figures),
        "",
        "| what | runs | p50 µs | p99 µs | AWS calls per job |",
        "|---|---:|---:|---:|---:|",
        *(f"| {name} | {runs} | {p50:.1f} | {p99:.1f} | {calls} |" for name, runs, p50, p99, calls in rows),
        "",
        f"- Planning with warm caches takes {path_p50 / moto_p50:.3f}x the time of one in-process moto "
        f"RunTask (p50 {path_p50:.1f} µs vs {moto_p50:.1f} µs); plan_launch alone "
        f"{pure_p50 / moto_p50:.3f}x.",
        f"- Cold caches: {cold_calls} AWS calls for the first {len(specs)} jobs ({', '.join(cold_kinds)}): "
        "one history Query per batch per cache period, one capacity read per cache period (10 s by default).",
        f"- Mean of the warm path: {statistics.fmean(path) * 1e6:.1f} µs per job.",
        f"- Example reason: `{getattr(example, 'reason', '')}`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
