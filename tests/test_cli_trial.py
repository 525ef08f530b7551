"""The `batchgate` CLI as a new user met it: results alone on stdout, closed pipes, AWS CLI habits, typos
in batch names, and what each listing leaves out."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import pytest
from batchgate.adapters.telemetry import logger as service_logger
from batchgate.domain.jobs import JobStatus

from tests.cli_support import CliHarness, harness, listed_job

__all__ = ["harness"]  # the fixture, imported for pytest


class _ProcessStdout:
    """The process's stdout as the Powertools handler holds it in a real run of the command (a test
    runner swaps sys.stdout per command)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def service_logs_on_stdout() -> Any:
    handler = service_logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(_ProcessStdout())
    yield
    if previous is not None:
        handler.setStream(previous)


# --- 1. nothing but the result on stdout --------------------------------------------------------------


def test_cancel_json_is_the_only_thing_on_stdout(harness: CliHarness, service_logs_on_stdout: Any) -> None:
    harness.ok("submit", "payroll-calculation", "2026-11", "--idempotency-key", "payroll-2026-11-acme")
    [job_id] = harness.dispatch_queued()
    result = harness.run("cancel", job_id, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "CANCELLED"
    assert '"message":"job cancelled"' in result.stderr
    # The Lambda functions' handler is left writing where it did.
    assert isinstance(service_logger.registered_handler, logging.StreamHandler)
    assert isinstance(service_logger.registered_handler.stream, _ProcessStdout)
