"""The handlers' Powertools set-up as it behaves in Lambda (tracing on)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_tracer_patches_only_botocore_in_lambda(tmp_path: Path) -> None:
    """X-Ray subsegments for AWS calls come from patching botocore; patching every library the X-Ray
    SDK knows (sqlite3, httplib, requests, ...) would only import them at cold start."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("POWERTOOLS_", "AWS_"))
    }
    environment |= {
        "AWS_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": "batchgate-track",
        "LAMBDA_TASK_ROOT": str(tmp_path),
        "POWERTOOLS_SERVICE_NAME": "batchgate",
        "POWERTOOLS_METRICS_NAMESPACE": "Batchgate",
    }
    script = (
        "import json, sys; import batchgate.adapters.telemetry; "
        "from aws_xray_sdk.core import patcher; "
        "print(json.dumps({'patched': sorted(patcher._PATCHED_MODULES), "
        "'sqlite3': 'sqlite3' in sys.modules, 'http.client': 'http.client' in sys.modules}))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    seen = json.loads(completed.stdout.strip().splitlines()[-1])
    assert seen["patched"] == ["botocore"]
    assert seen["sqlite3"] is False


def test_an_invocation_with_no_metrics_logs_no_warning() -> None:
    """The sweep with nothing to do and CLI commands publish no metrics: Powertools' warning about it is
    noise in every such log."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("POWERTOOLS_")}
    environment |= {"POWERTOOLS_SERVICE_NAME": "batchgate", "POWERTOOLS_METRICS_NAMESPACE": "Batchgate"}
    flushed = subprocess.run(
        [
            sys.executable,
            "-W",
            "default",
            "-c",
            "from batchgate.adapters.telemetry import metrics; metrics.flush_metrics()",
        ],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "No application metrics" not in flushed.stderr + flushed.stdout
