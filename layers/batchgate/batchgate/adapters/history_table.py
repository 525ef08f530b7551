"""The DynamoDB history table adapter: measured start latency, run time and success per (batch, strategy).

Key schema (template.yaml declares the same): hash `batch`, range `strategy`; one small item per pair
(see `batchgate.domain.latency_sketch`). The track Lambda writes it once per finished attempt with one
read and one conditional write (`version`; read again after a random pause when another finished attempt of
the pair got there first), the dispatch Lambda reads it with one Query per batch, cached for
`DEFAULT_CACHE_SECONDS` so that a burst of jobs of one batch reads it once. Never a scan.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from batchgate.adapters.aws_clients import dynamodb_client
from batchgate.adapters.job_table import ConcurrentUpdateError, from_attributes, to_attributes
from batchgate.adapters.write_conflicts import pause_after_conflict, tries_after_conflicts
from batchgate.domain.latency_sketch import (
    DEFAULT_HALF_LIFE_SECONDS,
    AttemptObservation,
    HistorySummary,
    StrategyHistory,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

HASH_ATTRIBUTE = "batch"
RANGE_ATTRIBUTE = "strategy"
VERSION_ATTRIBUTE = "version"
# The last attempt folded into the item (`record`'s fold key): a write whose response was lost is
# retried, fails its condition on the version it wrote, and finds its own key here instead of folding
# the attempt again.
LAST_FOLD_ATTRIBUTE = "last_fold"
DEFAULT_CACHE_SECONDS = 60.0


def _decimals(value: Any) -> Any:
    """DynamoDB takes no float: every float becomes a Decimal of its shortest repr."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {key: _decimals(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decimals(item) for item in value]
    return value


class HistoryTable:
    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient | None = None,
        *,
        half_life_seconds: float = DEFAULT_HALF_LIFE_SECONDS,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        pause: Callable[[int], None] = pause_after_conflict,
    ) -> None:
        self.table_name = table_name
        self._client: DynamoDBClient = client or dynamodb_client()
        self.half_life_seconds = half_life_seconds
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._pause = pause
        self._cache: dict[str, tuple[float, dict[str, HistorySummary]]] = {}
        self._lock = threading.Lock()
        self._refreshing: dict[str, threading.Lock] = {}  # batch -> held while its Query runs

    def get(self, batch: str, strategy: str) -> tuple[StrategyHistory, int]:
        """The stored history and its version (0 when there is none yet)."""
        history, version, _ = self._read(batch, strategy)
        return history, version

    def _read(self, batch: str, strategy: str) -> tuple[StrategyHistory, int, str | None]:
        """The stored history, its version and its last fold key."""
        response = self._client.get_item(
            TableName=self.table_name,
            Key={HASH_ATTRIBUTE: {"S": batch}, RANGE_ATTRIBUTE: {"S": strategy}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        if not item:
            return StrategyHistory(batch=batch, strategy=strategy), 0, None
        plain = from_attributes(item)
        last_fold = plain.get(LAST_FOLD_ATTRIBUTE)
        return (
            StrategyHistory.from_item(plain),
            int(plain.get(VERSION_ATTRIBUTE, 0)),
            str(last_fold) if last_fold is not None else None,
        )

    def record(
        self, batch: str, observation: AttemptObservation, tries: int = 8, *, fold_key: str | None = None
    ) -> StrategyHistory:
        """Add one finished attempt: read, fold in, write conditionally on the version read; after a
        lost write, pause (`batchgate.adapters.write_conflicts`) and read again. With a `fold_key` (the
        attempt's identity), an attempt that is already the item's last fold is not folded again."""
        for _ in tries_after_conflicts(tries, self._pause):
            current, version, last_fold = self._read(batch, observation.strategy)
            if fold_key is not None and last_fold == fold_key:
                return current
            updated = current.observe(observation, self._wall_clock(), self.half_life_seconds)
            item = {**updated.to_item(), VERSION_ATTRIBUTE: version + 1}
            if fold_key is not None:
                item[LAST_FOLD_ATTRIBUTE] = fold_key
            if version == 0:
                condition = "attribute_not_exists(#version)"
                values: dict[str, Any] = {}
            else:
                condition = "#version = :version"
                values = {":version": {"N": str(version)}}
            request: dict[str, Any] = {
                "TableName": self.table_name,
                "Item": to_attributes(_decimals(item)),
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#version": VERSION_ATTRIBUTE},
            }
            if values:
                request["ExpressionAttributeValues"] = values
            try:
                self._client.put_item(**request)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    continue
                raise
            return updated
        raise ConcurrentUpdateError(f"history {batch}/{observation.strategy}")

    def summaries(self, batch: str) -> Mapping[str, HistorySummary]:
        """Every strategy's summary for a batch (one Query), cached for `cache_seconds`. Concurrent
        callers of a batch whose cache is cold or stale wait for one Query instead of each making one."""
        with self._lock:
            refreshing = self._refreshing.setdefault(batch, threading.Lock())
        with refreshing:
            now = self._clock()
            with self._lock:
                cached = self._cache.get(batch)
            if cached is not None and now - cached[0] < self.cache_seconds:
                return cached[1]
            summaries = self._query(batch)
            with self._lock:
                self._cache[batch] = (now, summaries)
            return summaries

    def _query(self, batch: str) -> dict[str, HistorySummary]:
        summaries: dict[str, HistorySummary] = {}
        pages = self._client.get_paginator("query").paginate(
            TableName=self.table_name,
            KeyConditionExpression="#batch = :batch",
            ExpressionAttributeNames={"#batch": HASH_ATTRIBUTE},
            ExpressionAttributeValues={":batch": {"S": batch}},
        )
        for response in pages:
            for raw in response.get("Items", []):
                history = StrategyHistory.from_item(from_attributes(raw))
                summaries[history.strategy] = history.decayed_to(
                    self._wall_clock(), self.half_life_seconds
                ).summary()
        return summaries
