"""Free capacity of the EC2 capacity provider: how many tasks of a given size fit right now.

`CapacitySnapshot` is pure (plan_launch and a replay tool read it); `Ec2Capacity` reads it from ECS
(ListContainerInstances, then DescribeContainerInstances for up to 100 instances per call) and keeps it
for a few seconds, shared by the dispatch threads, so that a burst of jobs makes one set of calls.
"""

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from batchgate.adapters.aws_clients import ecs_client

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient

DESCRIBE_LIMIT = 100


class CapacitySnapshot(NamedTuple):
    """Free (cpu units, memory MiB) of each ACTIVE container instance of one capacity provider."""

    provider: str
    instances: tuple[tuple[int, int], ...] = ()

    def slots(self, cpu: int, memory: int) -> int:
        """How many tasks of this size fit, instance by instance (a task never spans instances)."""
        if cpu <= 0 or memory <= 0:
            return 0
        return sum(min(free_cpu // cpu, free_memory // memory) for free_cpu, free_memory in self.instances)

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "instances": [list(pair) for pair in self.instances]}


def _remaining(instance: dict[str, Any]) -> tuple[int, int]:
    values = {
        resource.get("name"): int(resource.get("integerValue", 0))
        for resource in instance.get("remainingResources", [])
    }
    return values.get("CPU", 0), values.get("MEMORY", 0)


class Ec2Capacity:
    """Free capacity of one cluster's EC2 capacity provider, cached for `ttl_seconds` (thread-safe:
    concurrent callers after expiry wait for one refresh instead of each calling ECS)."""

    def __init__(
        self,
        cluster: str,
        provider: str,
        client: "ECSClient | None" = None,
        *,
        ttl_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if client is None:
            client = ecs_client()
        self.cluster = cluster
        self.provider = provider
        self.ttl_seconds = ttl_seconds
        self._client: ECSClient = client
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, CapacitySnapshot] | None = None

    def snapshot(self) -> CapacitySnapshot:
        with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < self.ttl_seconds:
                return self._cached[1]
            snapshot = self._read()
            self._cached = (self._clock(), snapshot)
            return snapshot

    def _read(self) -> CapacitySnapshot:
        arns: list[str] = []
        pages = self._client.get_paginator("list_container_instances")
        for page in pages.paginate(cluster=self.cluster, status="ACTIVE"):
            arns.extend(page.get("containerInstanceArns", []))
        instances: list[tuple[int, int]] = []
        for start in range(0, len(arns), DESCRIBE_LIMIT):
            described = self._client.describe_container_instances(
                cluster=self.cluster, containerInstances=arns[start : start + DESCRIBE_LIMIT]
            )
            for instance in described.get("containerInstances", []):
                provider = instance.get("capacityProviderName")
                # An instance registered outside any capacity provider has no name: not ours to fill.
                if provider != self.provider or instance.get("status", "ACTIVE") != "ACTIVE":
                    continue
                if not instance.get("agentConnected", True):
                    continue
                instances.append(_remaining(dict(instance)))
        return CapacitySnapshot(provider=self.provider, instances=tuple(instances))
