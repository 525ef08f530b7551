"""Job events Lambda: the job table's stream -> one EventBridge event per job status change.

The batch's events are put first (batchgate.services.job_events); then each record is reported failed
or not (ReportBatchItemFailures), so Lambda delivers the failed ones again and, when they keep failing,
names them in the job events dead-letter queue (the mapping's on-failure destination).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from batchgate.adapters.telemetry import logger, metrics, tracer
from batchgate.services.job_events import JobEventPublisher
from batchgate.services.settings import Settings

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
publisher = JobEventPublisher.from_settings(Settings.from_environment())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    outcome = publisher.publish(event.get("Records") or [])

    def report(record: DynamoDBRecord) -> None:
        outcome.check(record.raw_event)

    return process_partial_response(event=event, record_handler=report, processor=processor, context=context)
