"""Dispatch Lambda: SQS batch of submit messages -> job items and ECS tasks.

Records are dispatched concurrently on a bounded thread pool (RunTask is I/O bound); a record whose
launch must be retried is reported as a batch item failure and returns to the queue on its own. A
throttled launch is put back on the queue by the dispatcher, as a delayed relaunch of its attempt. The
check of a warm offer (batchgate-kind=warm-check) comes back through the same queue.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import boto3  # noqa: F401  (first, at the top of the frame stack: docs/contracts-internal.md, Cold start)
from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from batchgate.adapters.telemetry import logger, metrics, tracer
from batchgate.domain.relaunch import RETRY_KIND, WARM_CHECK_KIND, message_kind
from batchgate.services.dispatch import Dispatcher, DispatchResult
from batchgate.services.settings import Settings

if TYPE_CHECKING:
    # Annotations only: its module is not loaded at init.
    from aws_lambda_powertools.utilities.typing import LambdaContext

processor = AsyncBatchProcessor(event_type=EventType.SQS)
dispatcher = Dispatcher.from_settings(Settings.from_environment())
pool = ThreadPoolExecutor(max_workers=dispatcher.settings.dispatch_concurrency)


def dispatch_record(record: SQSRecord) -> DispatchResult:
    logger.thread_safe_append_keys(message_id=record.message_id)
    try:
        # batchgate's own messages carry batchgate-kind: retry (a retry's next attempt, a lost launch)
        # or warm-check (the check of a warm offer); submit messages have none.
        kind = message_kind(record.raw_event.get("messageAttributes"))
        if kind == RETRY_KIND:
            return dispatcher.relaunch(record.body)
        if kind == WARM_CHECK_KIND:
            return dispatcher.check_warm(record.body)
        return dispatcher.dispatch(record.message_id, record.body, record.attributes.get("SentTimestamp"))
    finally:
        logger.thread_safe_clear_keys()


async def handle_record(record: SQSRecord) -> DispatchResult:
    return await asyncio.get_running_loop().run_in_executor(pool, dispatch_record, record)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return async_process_partial_response(
        event=event, record_handler=handle_record, processor=processor, context=context
    )
