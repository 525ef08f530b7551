"""History Lambda: the job table's stream -> each finished attempt in the history table.

Records fold in stream order; the first that fails is reported with every record after it
(ReportBatchItemFailures), so Lambda resumes the shard at it and nothing is folded twice. Records
that keep failing are named in the history dead-letter queue (the mapping's on-failure destination).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3  # noqa: F401  (first, at the top of the frame stack: docs/contracts-internal.md, Cold start)
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from batchgate.adapters.telemetry import logger, metrics, tracer
from batchgate.services.history_feed import HistoryFeed
from batchgate.services.settings import Settings

if TYPE_CHECKING:
    # Annotations only: its module is not loaded at init.
    from aws_lambda_powertools.utilities.typing import LambdaContext

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
feed = HistoryFeed.from_settings(Settings.from_environment())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    fold = feed.in_order()

    def fold_record(record: DynamoDBRecord) -> int:
        return fold(record.raw_event)

    return process_partial_response(
        event=event, record_handler=fold_record, processor=processor, context=context
    )
