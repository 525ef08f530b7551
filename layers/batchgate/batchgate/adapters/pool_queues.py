"""The pools' work queues as dispatch writes to them: one WorkOffer per WARM attempt
(batchgate.domain.warm), sent to the queue of the attempt's pool (POOL_QUEUE_URLS)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from batchgate.adapters.aws_clients import OnFirstUse, sqs_client

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from batchgate.domain.warm import WorkOffer


class UnknownPoolQueue(LookupError):
    """The settings name no work queue for this pool: the offer cannot be sent."""


class PoolQueues:
    def __init__(self, queue_urls: Mapping[str, str], client: SQSClient | None = None) -> None:
        self.queue_urls = dict(queue_urls)
        self._client = OnFirstUse.given(client, sqs_client)

    def send_offer(self, pool: str, offer: WorkOffer) -> None:
        url = self.queue_urls.get(pool)
        if url is None:
            raise UnknownPoolQueue(f"no work queue configured for pool {pool}")
        self._client().send_message(QueueUrl=url, MessageBody=offer.body())
