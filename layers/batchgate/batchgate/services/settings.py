"""Deployment settings, read once per container from the environment the template sets."""

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from batchgate.domain.schedule_delivery import MISSED_AFTER_SECONDS


class Settings(NamedTuple):
    """The deployment's settings, from the function's environment. A NamedTuple: immutable, and its
    class costs a cold start no generated methods (docs/contracts-internal.md, Cold start)."""

    table_name: str
    cluster: str
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    assign_public_ip: str = "DISABLED"
    ec2_capacity_provider: str | None = None
    dispatch_concurrency: int = 10
    job_retention_days: int = 90
    catalog_path: str | None = None
    # The launch strategy engine (docs/strategy.md): measured history, and the queue's concurrency that
    # bounds how many dispatch containers share ECS's launch rate.
    history_table_name: str | None = None
    dispatch_max_concurrency: int = 2
    # The jobs queue: where track and the sweep send a job's next attempt (batchgate.domain.relaunch).
    jobs_queue_url: str | None = None
    # The warm lane (docs/warm-lane.md): the pools' heartbeat table and each pool's work queue.
    pool_table_name: str | None = None
    pool_queue_urls: Mapping[str, str] = MappingProxyType({})
    # "<stack name>-pool-": a task whose group is "service:" + this + a pool's name is a pool task.
    pool_service_prefix: str | None = None
    # Where job state change events go (docs/events.md): the account's default bus unless named.
    event_bus_name: str = "default"
    # Schedules (docs/schedules.md): the slots the sweep reported missed or late.
    schedule_table_name: str | None = None
    # A slot with no job this long after its time is a missed run (longer than Scheduler's retries).
    schedule_missed_after_seconds: int = MISSED_AFTER_SECONDS

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        missing = [name for name in ("JOB_TABLE_NAME", "ECS_CLUSTER") if not env.get(name)]
        if missing:
            raise RuntimeError(f"missing environment variables: {', '.join(missing)}")
        return cls(
            table_name=env["JOB_TABLE_NAME"],
            cluster=env["ECS_CLUSTER"],
            subnets=_split(env.get("ECS_SUBNETS", "")),
            security_groups=_split(env.get("ECS_SECURITY_GROUPS", "")),
            assign_public_ip=env.get("ECS_ASSIGN_PUBLIC_IP") or "DISABLED",
            ec2_capacity_provider=env.get("EC2_CAPACITY_PROVIDER") or None,
            dispatch_concurrency=int(env.get("DISPATCH_CONCURRENCY") or 10),
            job_retention_days=int(env.get("JOB_RETENTION_DAYS") or 90),
            catalog_path=env.get("BATCHGATE_CATALOG") or None,
            history_table_name=env.get("HISTORY_TABLE_NAME") or None,
            dispatch_max_concurrency=int(env.get("DISPATCH_MAX_CONCURRENCY") or 2),
            jobs_queue_url=env.get("JOBS_QUEUE_URL") or None,
            pool_table_name=env.get("POOL_TABLE_NAME") or None,
            pool_queue_urls=parse_pool_queue_urls(env.get("POOL_QUEUE_URLS") or ""),
            pool_service_prefix=env.get("POOL_SERVICE_PREFIX") or None,
            event_bus_name=env.get("EVENT_BUS_NAME") or "default",
            schedule_table_name=env.get("SCHEDULE_TABLE_NAME") or None,
            schedule_missed_after_seconds=int(
                env.get("SCHEDULE_MISSED_AFTER_SECONDS") or MISSED_AFTER_SECONDS
            ),
        )


def parse_pool_queue_urls(value: str) -> Mapping[str, str]:
    """POOL_QUEUE_URLS: "pool=url,pool=url" (a queue URL has no comma)."""
    urls = {}
    for entry in _split(value):
        pool, separator, url = entry.partition("=")
        if not separator or not pool.strip() or not url.strip():
            raise RuntimeError(f"POOL_QUEUE_URLS: {entry!r} is not pool=url")
        urls[pool.strip()] = url.strip()
    return urls


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())
