"""A warm pool's work queue as its worker reads it: receive at most as many offers as free slots,
delete one once its claim is decided, or hand one back at once (visibility 0) for another task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from batchgate.adapters.aws_clients import OnFirstUse, sqs_client

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

# ReceiveMessage returns at most 10 messages a call.
MAX_MESSAGES_PER_RECEIVE = 10


@dataclass(frozen=True)
class WorkMessage:
    """A work offer received from a pool's queue, with what deleting it needs."""

    body: str
    receipt_handle: str
    receive_count: int


class PoolWorkQueue:
    def __init__(self, queue_url: str, client: SQSClient | None = None) -> None:
        self.queue_url = queue_url
        self._client = OnFirstUse.given(client, sqs_client)

    def receive(self, max_messages: int, wait_seconds: int) -> list[WorkMessage]:
        """At most `max_messages` (no prefetch beyond them), long polling up to `wait_seconds`."""
        count = max(1, min(MAX_MESSAGES_PER_RECEIVE, max_messages))
        response = self._client().receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=max(0, min(20, wait_seconds)),
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [
            WorkMessage(
                body=message.get("Body", ""),
                receipt_handle=message["ReceiptHandle"],
                receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
            )
            for message in response.get("Messages", [])
        ]

    def delete(self, message: WorkMessage) -> None:
        self._client().delete_message(QueueUrl=self.queue_url, ReceiptHandle=message.receipt_handle)

    def hand_back(self, message: WorkMessage) -> None:
        """Visible again at once: a stopping task leaves an offer it received to the other tasks."""
        self._client().change_message_visibility(
            QueueUrl=self.queue_url, ReceiptHandle=message.receipt_handle, VisibilityTimeout=0
        )
