"""EventBridge PutEvents on one bus: the only module that puts events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from batchgate.adapters.aws_clients import OnFirstUse, events_client

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

# PutEvents' limits: entries per call and bytes per call (batchgate.domain.job_events.entry_size).
PUT_EVENTS_ENTRIES = 10
PUT_EVENTS_BYTES = 256 * 1024


class EventBus:
    def __init__(self, bus_name: str, client: EventBridgeClient | None = None) -> None:
        self.bus_name = bus_name
        # Made on first use: the sweep holds a bus it rarely puts on (a missed scheduled run).
        self._client = OnFirstUse.given(client, events_client)

    @property
    def region(self) -> str:
        return str(self._client().meta.region_name or "us-east-1")

    def put(self, entries: Sequence[dict[str, Any]]) -> list[str | None]:
        """One PutEvents call (at most PUT_EVENTS_ENTRIES entries): per entry, None when EventBridge
        took it, else its error code. A call that fails as a whole fails every entry with its error."""
        try:
            response = self._client().put_events(Entries=list(entries))  # type: ignore[arg-type]
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code") or "ClientError")
            return [code] * len(entries)
        except BotoCoreError as error:
            return [type(error).__name__] * len(entries)
        results = list(response.get("Entries") or [])
        if len(results) != len(entries):
            # PutEvents answers one result per entry, in order; anything else cannot be trusted.
            return ["IncompleteResponse"] * len(entries)
        return [str(result["ErrorCode"]) if result.get("ErrorCode") else None for result in results]
