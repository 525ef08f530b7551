"""Powertools Logger, Metrics and Tracer shared by the handlers; configured by the template's Globals
(POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE, POWERTOOLS_LOG_LEVEL)."""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

# An invocation with nothing to count (a sweep with nothing to do, a CLI command) is normal: Powertools'
# warning about it would only fill the logs.
EMPTY_METRICS_WARNING = "No application metrics to publish"
warnings.filterwarnings("ignore", message=EMPTY_METRICS_WARNING, category=UserWarning)

logger = Logger()
metrics = Metrics()
# AWS calls are what a trace needs; patching every library the X-Ray SDK knows only slows cold starts.
tracer = Tracer(patch_modules=("botocore",))


def count(name: str, value: int = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def record_start_latency(strategy: str, seconds: float) -> None:
    """Start latency (task created -> container started) with the strategy as a dimension."""
    with single_metric(
        name="StartLatency", unit=MetricUnit.Seconds, value=seconds, namespace=metrics.namespace
    ) as metric:
        metric.add_dimension(name="service", value=str(metrics.service))
        metric.add_dimension(name="strategy", value=strategy)
