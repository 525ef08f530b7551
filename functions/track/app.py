"""Track Lambda: ECS Task State Change event (EventBridge) -> the job's state in the job table.

An exception fails the invocation: Lambda retries it asynchronously, then sends it to the on-failure
destination queue, so a task event is never silently lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3  # noqa: F401  (first, at the top of the frame stack: docs/contracts-internal.md, Cold start)
from batchgate.adapters.telemetry import logger, metrics, tracer
from batchgate.services.settings import Settings
from batchgate.services.track import Tracker

if TYPE_CHECKING:
    # Annotations only: its module is not loaded at init.
    from aws_lambda_powertools.utilities.typing import LambdaContext

tracker = Tracker.from_settings(Settings.from_environment())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    return {"result": tracker.track(event).value}
