"""What the benchmarks hook into boto3 clients: an API call counter, an injected per-request latency,
and the DynamoDB write units of the writes counted.

Both hook botocore's event system, so they work on any client, Stubber- or moto-answered, and on a
whole `boto3.Session`: a session's handlers are copied into every client it creates afterwards, which
is how the real handlers' own clients (built once per container) get them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

# DynamoDB write operations, and what they write: one item, or a list of them.
DYNAMODB_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
WRITE_UNIT_BYTES = 1024
_deserializer = TypeDeserializer()


def _events_of(target: Any) -> Any:
    """The event hooks of a client (`client.meta.events`) or of a session (`session.events`)."""
    meta = getattr(target, "meta", None)
    return meta.events if meta is not None and hasattr(meta, "events") else target.events


@dataclass(frozen=True)
class ApiCall:
    service: str  # the event name's service id: "dynamodb", "ecs", "sqs"
    operation: str  # "PutItem", "RunTask"
    params: Mapping[str, Any]  # the call's parameters, as the caller passed them

    @property
    def name(self) -> str:
        return f"{self.service}:{self.operation}"

    @property
    def table(self) -> str | None:
        name = self.params.get("TableName")
        return str(name) if name is not None else None

    @property
    def is_write(self) -> bool:
        return self.service == "dynamodb" and self.operation in DYNAMODB_WRITES


class CallCounter:
    """Every API call made by the clients (or sessions) it is attached to, in order; thread-safe."""

    def __init__(self, *targets: Any) -> None:
        self._lock = threading.Lock()
        self._calls: list[ApiCall] = []
        for target in targets:
            self.attach(target)

    def attach(self, target: Any) -> None:
        # First, so that it also sees calls a botocore Stubber answers (it hooks before-call).
        _events_of(target).register_first("before-parameter-build", self._record)

    def _record(self, params: Mapping[str, Any], model: Any, event_name: str, **_: Any) -> None:
        service = event_name.split(".")[1]
        with self._lock:
            self._calls.append(ApiCall(service, model.name, dict(params)))

    @property
    def calls(self) -> list[ApiCall]:
        with self._lock:
            return list(self._calls)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    def counts(self) -> Counter[str]:
        """Calls per `service:Operation`."""
        return Counter(call.name for call in self.calls)

    def writes(self, table: str | None = None) -> list[ApiCall]:
        return [call for call in self.calls if call.is_write and (table is None or call.table == table)]


class LatencyInjector:
    """Sleeps `seconds` before every HTTP request a client sends (botocore's `before-send`), as if the
    service were that far away; counts the requests it delayed. moto answers in that same event, after
    or before this handler: botocore calls every handler of it."""

    def __init__(self, seconds: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self.seconds = seconds
        self._sleep = sleep
        self._lock = threading.Lock()
        self.requests = 0

    def attach(self, target: Any) -> None:
        _events_of(target).register("before-send", self._delay)

    def _delay(self, **_: Any) -> None:
        with self._lock:
            self.requests += 1
        if self.seconds > 0:
            self._sleep(self.seconds)


# Item sizes as DynamoDB bills them (Developer Guide, "Item sizes and formats"): attribute name bytes
# plus value bytes; numbers take 1 byte per 2 significant digits plus 1; lists and maps 3 bytes plus
# 1 per element.


def attribute_value_size(value: Mapping[str, Any]) -> int:
    (kind, content), *_ = value.items()
    if kind == "S":
        return len(str(content).encode())
    if kind == "N":
        return _number_size(str(content))
    if kind == "B":
        return len(content)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(item).encode()) for item in content)
    if kind == "NS":
        return sum(_number_size(str(item)) for item in content)
    if kind == "BS":
        return sum(len(item) for item in content)
    if kind == "L":
        return 3 + sum(1 + attribute_value_size(item) for item in content)
    if kind == "M":
        return 3 + sum(1 + len(name.encode()) + attribute_value_size(item) for name, item in content.items())
    raise ValueError(f"unknown DynamoDB attribute type {kind}")


def _number_size(text: str) -> int:
    digits = str(Decimal(text).normalize()).lstrip("-").replace(".", "").lstrip("0") or "0"
    if "E" in digits:  # 1E+3 after normalize: only the significant digits count
        digits = digits.split("E")[0]
    return math.ceil(len(digits) / 2) + 1


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    return sum(len(name.encode()) + attribute_value_size(value) for name, value in item.items())


def write_units(call: ApiCall) -> int:
    """Write capacity units of one write, from its request: ceil(item size / 1 KB) for a PutItem (and
    per put of a batch, twice in a transaction); 1 for an UpdateItem or DeleteItem, whose size the
    request does not tell (a lower bound). A replacing PutItem is billed on the larger of the old and
    new item: the new one, for job items, which only grow."""
    params = call.params
    if call.operation == "PutItem":
        return _item_units(params["Item"])
    if call.operation in ("UpdateItem", "DeleteItem"):
        return 1
    if call.operation == "BatchWriteItem":
        requests: Iterable[Mapping[str, Any]] = (
            request for table_requests in params["RequestItems"].values() for request in table_requests
        )
        return sum(_item_units(r["PutRequest"]["Item"]) if "PutRequest" in r else 1 for r in requests)
    if call.operation == "TransactWriteItems":
        return 2 * sum(_item_units(i["Put"]["Item"]) if "Put" in i else 1 for i in params["TransactItems"])
    raise ValueError(f"{call.operation} is not a DynamoDB write")


def _item_units(item: Mapping[str, Mapping[str, Any]]) -> int:
    return max(1, math.ceil(item_size(item) / WRITE_UNIT_BYTES))


@dataclass(frozen=True)
class SecondaryIndex:
    keys: tuple[str, ...]  # the index's key attributes
    projected: frozenset[str] | None  # attributes copied into it besides the keys; None: all (ALL)


@dataclass(frozen=True)
class TableKeys:
    """What decides a table's index writes: its primary key and its global secondary indexes."""

    key: tuple[str, ...]
    indexes: tuple[SecondaryIndex, ...] = ()

    @classmethod
    def described(cls, table: Mapping[str, Any]) -> TableKeys:
        """From DescribeTable's `Table`."""
        indexes = []
        for index in table.get("GlobalSecondaryIndexes", []):
            projection = index.get("Projection", {})
            kind = projection.get("ProjectionType", "ALL")
            projected = None if kind == "ALL" else frozenset(projection.get("NonKeyAttributes", ()))
            indexes.append(SecondaryIndex(tuple(k["AttributeName"] for k in index["KeySchema"]), projected))
        return cls(tuple(k["AttributeName"] for k in table["KeySchema"]), tuple(indexes))


def index_write_units(calls: Iterable[ApiCall], tables: Mapping[str, TableKeys]) -> list[int]:
    """The global secondary index write units of each call, in order (0 for all but PutItem on a table
    with indexes), by DynamoDB's rules: an item entering an index is one write, leaving it one, staying
    with the same index key one when an attribute the index holds changed and none when none did, and
    changing its index key two (delete, then put); each ceil(entry size / 1 KB). The item before a
    write is the previous counted write of the same key, so `calls` must hold every write to these
    tables, in order, all of which succeeded."""
    before: dict[tuple[str, tuple[str, ...]], Mapping[str, Mapping[str, Any]]] = {}
    units = []
    for call in calls:
        keys = tables.get(call.table or "") if call.is_write else None
        if keys is None or not keys.indexes:
            units.append(0)
            continue
        if call.operation != "PutItem":
            raise ValueError(f"{call.operation} on {call.table}: its index writes are not counted")
        item = call.params["Item"]
        primary = (call.table or "", tuple(_key_text(item[name]) for name in keys.key))
        old = before.get(primary)
        units.append(sum(_index_units(index, keys.key, old, item) for index in keys.indexes))
        before[primary] = item
    return units


def _key_text(value: Mapping[str, Any]) -> str:
    ((kind, raw),) = value.items()
    return f"{kind}:{raw}"


def _index_units(
    index: SecondaryIndex,
    table_key: tuple[str, ...],
    old: Mapping[str, Mapping[str, Any]] | None,
    new: Mapping[str, Mapping[str, Any]],
) -> int:
    def entry(item: Mapping[str, Mapping[str, Any]] | None) -> Mapping[str, Mapping[str, Any]] | None:
        if item is None or any(name not in item for name in index.keys):
            return None  # not in the index (a sparse index skips items without its keys)
        if index.projected is None:
            return item
        kept = {*table_key, *index.keys, *index.projected}
        return {name: value for name, value in item.items() if name in kept}

    was, will = entry(old), entry(new)
    if was is None:
        return _item_units(will) if will is not None else 0
    if will is None:
        return _item_units(was)
    same_key = all(_key_text(was[name]) == _key_text(will[name]) for name in index.keys)
    if not same_key:
        return _item_units(was) + _item_units(will)
    return 0 if _same_entry(was, will) else _item_units(will)


def _same_entry(was: Mapping[str, Mapping[str, Any]], will: Mapping[str, Mapping[str, Any]]) -> bool:
    """The index entry holds the same attributes with the same values (numbers compared as numbers)."""
    return set(was) == set(will) and all(_value(was[name]) == _value(will[name]) for name in was)


def _value(attribute: Mapping[str, Any]) -> Any:
    return _deserializer.deserialize(dict(attribute))  # type: ignore[arg-type]
