"""The jobs queue as batchgate itself writes to it: relaunch messages (batchgate.domain.relaunch),
dispatch's delayed checks of warm offers (batchgate.domain.warm) and schedules' slots."""

from __future__ import annotations

from typing import TYPE_CHECKING

from batchgate.adapters.aws_clients import OnFirstUse, sqs_client
from batchgate.domain.backoff import MAX_DELAY_SECONDS
from batchgate.domain.relaunch import KIND_ATTRIBUTE, RETRY_KIND, WARM_CHECK_KIND

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from batchgate.domain.relaunch import Relaunch
    from batchgate.domain.warm import WorkOffer


class JobsQueue:
    def __init__(self, queue_url: str, client: SQSClient | None = None) -> None:
        self.queue_url = queue_url
        self._client = OnFirstUse.given(client, sqs_client)

    def send_relaunch(self, relaunch: Relaunch, delay_seconds: int = 0) -> None:
        self._send(relaunch.body(), RETRY_KIND, delay_seconds)

    def send_warm_check(self, offer: WorkOffer, delay_seconds: int) -> None:
        """The check of a warm offer, back to dispatch after the pool's `offer_seconds`."""
        self._send(offer.body(), WARM_CHECK_KIND, delay_seconds)

    def send_submit(self, body: str) -> str:
        """A submit message as the application sends it (a schedule's slot run by hand or by the local
        scheduler): its SQS message id."""
        return self._client().send_message(QueueUrl=self.queue_url, MessageBody=body)["MessageId"]

    def _send(self, body: str, kind: str, delay_seconds: int) -> None:
        self._client().send_message(
            QueueUrl=self.queue_url,
            MessageBody=body,
            DelaySeconds=max(0, min(MAX_DELAY_SECONDS, int(delay_seconds))),
            MessageAttributes={KIND_ATTRIBUTE: {"DataType": "String", "StringValue": kind}},
        )
