"""Sweep Lambda (scheduled): timeouts, stuck jobs, missed task events and lost launches.

Thin: the domain is batchgate.services.sweep. Emits the StuckJobs metric on every run (0 included), which the
StuckJobsAlarm watches. A run is bounded by the invocation's remaining time (less a margin): what it does
not reach is left for the next run (SweepDeferred).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3  # noqa: F401  (first, at the top of the frame stack: docs/contracts-internal.md, Cold start)
from batchgate.adapters.telemetry import logger, metrics, tracer
from batchgate.services.settings import Settings
from batchgate.services.sweep import Sweeper

if TYPE_CHECKING:
    # Annotations only: its module is not loaded at init.
    from aws_lambda_powertools.utilities.typing import LambdaContext

sweeper = Sweeper.from_settings(Settings.from_environment())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return sweeper.sweep(remaining_seconds=context.get_remaining_time_in_millis() / 1000).to_dict()
