"""Fargate prices and billing rules, for cost estimates (the stats report, the strategy engine, whatif).

Fargate bills each task per second from the start of its image pull until it stops, with a one-minute
minimum, at a price per vCPU-hour and per GB-hour that depends on the region and the CPU architecture
(Linux/X86 or Linux/ARM, the task definition's `runtimePlatform.cpuArchitecture`). Fargate Spot prices
vary over time; they are approximated here as 70% below on-demand ("up to 70%" is what AWS advertises),
for either architecture.
"""

import math
from typing import NamedTuple

MINIMUM_BILLED_SECONDS = 60
SPOT_DISCOUNT = 0.70
FARGATE = "FARGATE"
FARGATE_SPOT = "FARGATE_SPOT"
X86_64 = "X86_64"
ARM64 = "ARM64"


class Price(NamedTuple):
    """USD per vCPU-hour and per GB-hour (Linux, x86)."""

    vcpu_hour: float
    gb_hour: float


# On-demand Fargate prices as published for Linux/x86; Spot is derived from these.
ON_DEMAND_PRICES: dict[str, Price] = {
    "us-east-1": Price(vcpu_hour=0.04048, gb_hour=0.004445),
    "ap-northeast-1": Price(vcpu_hour=0.05056, gb_hour=0.005536),
}
# On-demand Fargate prices for Linux/ARM (Graviton), ~20% below x86 (https://aws.amazon.com/fargate/pricing/,
# "Linux/ARM"). us-east-1 as published: $0.03238 per vCPU-hour, $0.00356 per GB-hour (0.800x and 0.801x
# of x86). ap-northeast-1: x86's price x 0.8 rounded to the published precision, the same ratio; the
# page renders regional figures dynamically, check them there before relying on the fifth digit.
ARM_ON_DEMAND_PRICES: dict[str, Price] = {
    "us-east-1": Price(vcpu_hour=0.03238, gb_hour=0.00356),
    "ap-northeast-1": Price(vcpu_hour=0.04045, gb_hour=0.00443),
}
DEFAULT_PRICE_REGION = "us-east-1"


class TaskSize(NamedTuple):
    """A batch's task size as the catalog declares it: cpu units (1024 = 1 vCPU) and memory in MiB."""

    cpu: int
    memory: int

    @property
    def vcpus(self) -> float:
        return self.cpu / 1024

    @property
    def gigabytes(self) -> float:
        return self.memory / 1024


def price_for(
    region: str, strategy: str, architecture: str = X86_64, spot_discount: float = SPOT_DISCOUNT
) -> Price | None:
    """The price of one strategy in one region on one CPU architecture (X86_64 or ARM64); None when no
    estimate is possible (EC2, unknown strategy or architecture). A region without a listed price uses
    us-east-1's (see `price_is_listed`)."""
    table = {X86_64: ON_DEMAND_PRICES, ARM64: ARM_ON_DEMAND_PRICES}.get(architecture)
    if table is None:
        return None
    base = table.get(region, table[DEFAULT_PRICE_REGION])
    if strategy == FARGATE:
        return base
    if strategy == FARGATE_SPOT:
        factor = 1 - spot_discount
        return Price(vcpu_hour=base.vcpu_hour * factor, gb_hour=base.gb_hour * factor)
    return None


def hourly_price(price: Price, size: TaskSize) -> float:
    """USD per hour of one task of this size at this price."""
    return size.vcpus * price.vcpu_hour + size.gigabytes * price.gb_hour


def price_is_listed(region: str) -> bool:
    return region in ON_DEMAND_PRICES


def billed_duration(seconds: float) -> int:
    """Seconds Fargate bills for a task that ran `seconds` from image pull start to stop: rounded up
    to a whole second, at least one minute."""
    return max(MINIMUM_BILLED_SECONDS, math.ceil(max(seconds, 0.0)))
