"""Fargate prices and billing rules, for cost estimates (the stats report, the strategy engine, whatif).

Fargate bills each task per second from the start of its image pull until it stops, with a one-minute
minimum, at a price per vCPU-hour and per GB-hour that depends on the region. Fargate Spot prices vary
over time; they are approximated here as 70% below on-demand ("up to 70%" is what AWS advertises).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MINIMUM_BILLED_SECONDS = 60
SPOT_DISCOUNT = 0.70
FARGATE = "FARGATE"
FARGATE_SPOT = "FARGATE_SPOT"


@dataclass(frozen=True)
class Price:
    """USD per vCPU-hour and per GB-hour (Linux, x86)."""

    vcpu_hour: float
    gb_hour: float


# On-demand Fargate prices as published for Linux/x86; Spot is derived from these.
ON_DEMAND_PRICES: dict[str, Price] = {
    "us-east-1": Price(vcpu_hour=0.04048, gb_hour=0.004445),
    "ap-northeast-1": Price(vcpu_hour=0.05056, gb_hour=0.005536),
}
DEFAULT_PRICE_REGION = "us-east-1"


@dataclass(frozen=True)
class TaskSize:
    """A batch's task size as the catalog declares it: cpu units (1024 = 1 vCPU) and memory in MiB."""

    cpu: int
    memory: int

    @property
    def vcpus(self) -> float:
        return self.cpu / 1024

    @property
    def gigabytes(self) -> float:
        return self.memory / 1024


def price_for(region: str, strategy: str) -> Price | None:
    """The price of one strategy in one region; None when no estimate is possible (EC2, unknown
    strategy). A region without a listed price uses us-east-1's (see `price_is_listed`)."""
    base = ON_DEMAND_PRICES.get(region, ON_DEMAND_PRICES[DEFAULT_PRICE_REGION])
    if strategy == FARGATE:
        return base
    if strategy == FARGATE_SPOT:
        factor = 1 - SPOT_DISCOUNT
        return Price(vcpu_hour=base.vcpu_hour * factor, gb_hour=base.gb_hour * factor)
    return None


def price_is_listed(region: str) -> bool:
    return region in ON_DEMAND_PRICES


def billed_duration(seconds: float) -> int:
    """Seconds Fargate bills for a task that ran `seconds` from image pull start to stop: rounded up
    to a whole second, at least one minute."""
    return max(MINIMUM_BILLED_SECONDS, math.ceil(max(seconds, 0.0)))
