"""Back-off of a throttled SQS record: it returns to the queue after a delay that grows with its
receive count (exponential, capped, full jitter), set with ChangeMessageVisibility on its receipt handle.

The record is still reported as a batch item failure, so it is never lost: if the visibility change
fails, it simply comes back after the queue's own visibility timeout. The queue URL is derived from the
record's eventSourceARN and the client's endpoint, without a GetQueueUrl call.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from batchgate.aws_clients import OnFirstUse, sqs_client
from batchgate.launch_governor import backoff_seconds
from batchgate.strategy_settings import StrategySettings
from batchgate.telemetry import count, logger

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def queue_url(client: Any, event_source_arn: str) -> str:
    """arn:aws:sqs:<region>:<account>:<name> -> <endpoint>/<account>/<name>."""
    parts = event_source_arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError(f"not an SQS queue ARN: {event_source_arn}")
    account, name = parts[4], parts[5]
    return f"{client.meta.endpoint_url.rstrip('/')}/{account}/{name}"


class QueueBackoff:
    def __init__(
        self,
        settings: StrategySettings,
        client: SQSClient | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._client = OnFirstUse.given(client, sqs_client)
        self.settings = settings
        self._rand = rand

    def delay(
        self, event_source_arn: str, receipt_handle: str, receive_count: int, at_least: float = 0.0
    ) -> int:
        """Hide the record for its back-off; returns the seconds chosen (0 when the change failed)."""
        seconds = backoff_seconds(
            receive_count,
            base=self.settings.backoff_base_seconds,
            cap=self.settings.backoff_max_seconds,
            at_least=at_least,
            rand=self._rand,
        )
        try:
            client = self._client()
            client.change_message_visibility(
                QueueUrl=queue_url(client, event_source_arn),
                ReceiptHandle=receipt_handle,
                VisibilityTimeout=seconds,
            )
        except (ClientError, BotoCoreError, ValueError) as error:
            logger.warning("could not delay the throttled record", extra={"error": str(error)})
            return 0
        count("RecordsBackedOff")
        logger.info(
            "throttled: record delayed", extra={"delay_seconds": seconds, "receive_count": receive_count}
        )
        return seconds
