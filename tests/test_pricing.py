"""batchgate.domain.pricing: Fargate's price list and billing rules."""

from __future__ import annotations

import pytest
from batchgate.domain import pricing


def test_unlisted_region_uses_us_east_1_prices() -> None:
    assert not pricing.price_is_listed("eu-west-1") and pricing.price_is_listed("ap-northeast-1")
    assert pricing.price_for("eu-west-1", "FARGATE") == pricing.ON_DEMAND_PRICES["us-east-1"]


def test_spot_is_seventy_percent_below_on_demand_and_ec2_has_no_task_price() -> None:
    spot = pricing.price_for("ap-northeast-1", "FARGATE_SPOT")
    assert spot is not None
    assert spot.vcpu_hour == pytest.approx(0.05056 * 0.3)
    assert spot.gb_hour == pytest.approx(0.005536 * 0.3)
    assert pricing.price_for("us-east-1", "EC2") is None


@pytest.mark.parametrize(("seconds", "billed"), [(-1.0, 60), (0.0, 60), (59.2, 60), (60.0, 60), (60.1, 61)])
def test_billing_rounds_up_to_a_second_with_a_one_minute_minimum(seconds: float, billed: int) -> None:
    assert pricing.billed_duration(seconds) == billed


def test_task_size_in_vcpus_and_gigabytes() -> None:
    size = pricing.TaskSize(cpu=512, memory=3072)
    assert (size.vcpus, size.gigabytes) == (0.5, 3.0)


def test_arm64_is_about_twenty_percent_below_x86_in_every_listed_region() -> None:
    for region in pricing.ON_DEMAND_PRICES:
        x86 = pricing.price_for(region, "FARGATE")
        arm = pricing.price_for(region, "FARGATE", pricing.ARM64)
        assert x86 is not None and arm is not None
        assert arm.vcpu_hour / x86.vcpu_hour == pytest.approx(0.8, abs=0.002)
        assert arm.gb_hour / x86.gb_hour == pytest.approx(0.8, abs=0.002)
    published = pricing.price_for("us-east-1", "FARGATE", pricing.ARM64)
    assert published == pricing.Price(vcpu_hour=0.03238, gb_hour=0.00356)


def test_spot_arm64_takes_the_spot_discount_off_the_arm64_price() -> None:
    spot = pricing.price_for("ap-northeast-1", "FARGATE_SPOT", pricing.ARM64)
    assert spot is not None and spot.vcpu_hour == pytest.approx(0.04045 * 0.3)
    assert pricing.price_for("us-east-1", "FARGATE", "SPARC") is None


def test_the_x86_default_is_what_callers_got_before_architectures() -> None:
    assert pricing.price_for("us-east-1", "FARGATE") == pricing.price_for("us-east-1", "FARGATE", "X86_64")
    assert pricing.price_for("us-east-1", "FARGATE") == pricing.Price(vcpu_hour=0.04048, gb_hour=0.004445)
