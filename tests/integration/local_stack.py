"""The harness of the local stack's integration tests: `batchgate local up` started in its own process,
and what the tests read from it over HTTP (the job table, the queues, the logs)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from batchgate.adapters.job_table import JobTable
from batchgate.client import BatchClient
from batchgate.domain.jobs import Attempt, Job, JobStatus

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_sqs import SQSClient

ROOT = Path(__file__).resolve().parents[2]
BATCHGATE = str(Path(sys.executable).parent / "batchgate")
TIMEOUT_SECONDS = 3  # report-export's timeout in this stack
STARTUP_SECONDS = 60.0
JOB_SECONDS = 30.0


@dataclass
class Stack:
    state: dict[str, Any]
    state_path: Path
    session: boto3.session.Session

    @property
    def endpoint(self) -> str:
        return str(self.state["endpoint_url"])

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint)  # type: ignore[call-overload]

    @property
    def sqs(self) -> SQSClient:
        client: SQSClient = self.client("sqs")
        return client

    @property
    def ecs(self) -> ECSClient:
        client: ECSClient = self.client("ecs")
        return client

    @property
    def logs(self) -> CloudWatchLogsClient:
        client: CloudWatchLogsClient = self.client("logs")
        return client

    @property
    def events(self) -> EventBridgeClient:
        client: EventBridgeClient = self.client("events")
        return client

    @property
    def table(self) -> JobTable:
        return JobTable(self.state["table_name"], self.client("dynamodb"))

    def submit(self, batch: str, arguments: list[str], key: str) -> str:
        receipt = BatchClient(self.state["queue_url"], self.sqs).submit(batch, arguments, idempotency_key=key)
        assert receipt.job_id_hint is not None
        return receipt.job_id_hint

    def send_raw(self, body: str) -> str:
        return self.sqs.send_message(QueueUrl=self.state["queue_url"], MessageBody=body)["MessageId"]

    def wait_for(self, job_id: str, done: set[JobStatus] | None = None) -> Job:
        """The job once it reaches one of `done` (default: any terminal status)."""
        return self.wait_until(job_id, lambda job: job.status in done if done else job.status.is_terminal)

    def wait_until(self, job_id: str, condition: Callable[[Job], bool], seconds: float = JOB_SECONDS) -> Job:
        deadline = time.monotonic() + seconds
        job = None
        while time.monotonic() < deadline:
            job = self.table.get(job_id)
            if job is not None and condition(job):
                return job
            time.sleep(0.2)
        pytest.fail(f"job {job_id} did not get there in {seconds}s; last seen: {job}")

    def log_lines(self, job: Job, attempt: Attempt | None = None) -> list[str]:
        attempt = attempt or job.attempt
        assert attempt is not None and attempt.log_group and attempt.log_stream
        events = self.logs.get_log_events(logGroupName=attempt.log_group, logStreamName=attempt.log_stream)
        return [event["message"] for event in events["events"]]


def short_timeout_catalog(directory: Path) -> Path:
    document = json.loads(resources.files("batchgate").joinpath("catalog.json").read_text())
    document["batches"]["report-export"]["timeout_seconds"] = TIMEOUT_SECONDS
    document["batches"]["attendance-import"]["retry"] = {
        "rules": [{"action": "RETRY", "exit_codes": [75]}],
        "base_delay_seconds": 1,
    }
    path = directory / "catalog.json"
    path.write_text(json.dumps(document))
    return path


def wait_for_state(process: subprocess.Popen[bytes], state_path: Path, output: Path) -> dict[str, Any]:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"batchgate local up exited with {process.returncode}:\n{output.read_text()}")
        if state_path.is_file():
            state: dict[str, Any] = json.loads(state_path.read_text())
            return state
        time.sleep(0.2)
    pytest.fail(f"batchgate local up did not start in {STARTUP_SECONDS}s:\n{output.read_text()}")


@contextmanager
def running_stack(
    directory: Path, arguments: list[str], environment: dict[str, str] | None = None
) -> Iterator[Stack]:
    """`batchgate local up ARGUMENTS` in its own process until the block ends; then it must stop
    cleanly, leaving no state file behind."""
    state_path, output = directory / "local.json", directory / "up.log"
    command = [BATCHGATE, "local", "up", *arguments, "--state-file", str(state_path)]
    with output.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=environment)
    try:
        state = wait_for_state(process, state_path, output)
        session = boto3.session.Session(
            region_name=state["region"], aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        yield Stack(state=state, state_path=state_path, session=session)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, output.read_text()
    assert not state_path.exists(), "the stack left its state file behind"
