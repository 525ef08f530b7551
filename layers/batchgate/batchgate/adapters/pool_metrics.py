"""The warm pool worker's CloudWatch metrics (namespace `Batchgate`, dimension `Pool`).

- PoolBusyRatio: busy slots / slots of the task (0-1), every heartbeat: what the pool's scaling follows;
- PoolHeartbeats: 1 per heartbeat (a pool whose sum drops to 0 has no answering task);
- PoolImageStale: 1 when a batch's task definition runs another image than the task, else 0.

The worker passes its client in (the Lambda layer keeps no CloudWatch model: no function calls it).
"""

from __future__ import annotations

from typing import Any, Protocol

NAMESPACE = "Batchgate"


class PutsMetricData(Protocol):
    def put_metric_data(self, **request: Any) -> Any: ...


class PoolMetrics:
    def __init__(self, pool: str, client: PutsMetricData) -> None:
        self.pool = pool
        self._client = client

    def heartbeat(self, busy_ratio: float, image_stale: bool) -> None:
        dimensions = [{"Name": "Pool", "Value": self.pool}]
        self._client.put_metric_data(
            Namespace=NAMESPACE,
            MetricData=[
                {
                    "MetricName": "PoolBusyRatio",
                    "Dimensions": dimensions,
                    "Value": busy_ratio,
                    "Unit": "None",
                },
                {"MetricName": "PoolHeartbeats", "Dimensions": dimensions, "Value": 1.0, "Unit": "Count"},
                {
                    "MetricName": "PoolImageStale",
                    "Dimensions": dimensions,
                    "Value": 1.0 if image_stale else 0.0,
                    "Unit": "Count",
                },
            ],
        )
