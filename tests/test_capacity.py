"""Free EC2 capacity: read from ECS once per TTL, shared by threads, counted in slots per instance."""

from __future__ import annotations

import threading
from typing import Any

import boto3
from batchgate.adapters.ec2_capacity import CapacitySnapshot, Ec2Capacity
from botocore.stub import Stubber

CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/batchgate-dev"
ARN = "arn:aws:ecs:us-east-1:123456789012:container-instance/batchgate-dev/{}"


def instance(number: int, cpu: int, memory: int, provider: str = "cp-ec2", **more: Any) -> dict[str, Any]:
    return {
        "containerInstanceArn": ARN.format(number),
        "capacityProviderName": provider,
        "status": "ACTIVE",
        "agentConnected": True,
        "remainingResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": cpu},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
            {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22"]},
        ],
        **more,
    }


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def stubbed(responses: list[tuple[str, dict[str, Any]]]) -> tuple[Any, Stubber]:
    client = boto3.client("ecs", region_name="us-east-1")
    stubber = Stubber(client)
    for operation, response in responses:
        stubber.add_response(operation, response)
    stubber.activate()
    return client, stubber


def test_snapshot_counts_only_the_providers_connected_instances() -> None:
    client, stubber = stubbed(
        [
            (
                "list_container_instances",
                {"containerInstanceArns": [ARN.format(1), ARN.format(2)], "nextToken": "t"},
            ),
            ("list_container_instances", {"containerInstanceArns": [ARN.format(3), ARN.format(4)]}),
            (
                "describe_container_instances",
                {
                    "containerInstances": [
                        instance(1, 2048, 4096),
                        instance(2, 1024, 8192),
                        instance(3, 4096, 8192, provider="other"),
                        instance(4, 4096, 8192, agentConnected=False),
                    ]
                },
            ),
        ]
    )
    snapshot = Ec2Capacity(CLUSTER, "cp-ec2", client).snapshot()
    assert snapshot == CapacitySnapshot("cp-ec2", ((2048, 4096), (1024, 8192)))
    assert snapshot.slots(1024, 2048) == 2 + 1  # per instance: min(cpu fit, memory fit)
    assert snapshot.slots(512, 1024) == 4 + 2
    stubber.assert_no_pending_responses()


def test_second_call_within_the_ttl_makes_no_ecs_call() -> None:
    clock = Clock()
    client, stubber = stubbed(
        [
            ("list_container_instances", {"containerInstanceArns": [ARN.format(1)]}),
            ("describe_container_instances", {"containerInstances": [instance(1, 2048, 4096)]}),
        ]
    )
    capacity = Ec2Capacity(CLUSTER, "cp-ec2", client, ttl_seconds=10, clock=clock)
    first = capacity.snapshot()
    stubber.assert_no_pending_responses()  # the stub has no response left: any further call would fail
    clock.now = 9.9
    threads = [threading.Thread(target=capacity.snapshot) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert capacity.snapshot() is first
    # After the TTL it reads again.
    stubber.add_response("list_container_instances", {"containerInstanceArns": []})
    clock.now = 10.0
    assert capacity.snapshot() == CapacitySnapshot("cp-ec2", ())
    stubber.assert_no_pending_responses()


def test_more_than_100_instances_are_described_in_pages() -> None:
    arns = [ARN.format(n) for n in range(150)]
    client, stubber = stubbed(
        [
            ("list_container_instances", {"containerInstanceArns": arns}),
            (
                "describe_container_instances",
                {"containerInstances": [instance(n, 256, 512) for n in range(100)]},
            ),
            (
                "describe_container_instances",
                {"containerInstances": [instance(n, 256, 512) for n in range(100, 150)]},
            ),
        ]
    )
    assert Ec2Capacity(CLUSTER, "cp-ec2", client).snapshot().slots(256, 512) == 150
    stubber.assert_no_pending_responses()
