"""The local AWS endpoint: a moto server in a child process, on 127.0.0.1 and a free port (see
`moto_server` for what it adds to moto).

A separate process rather than moto's in-process ThreadedMotoServer: every call crosses real HTTP as it
does in AWS, and the server never competes with the handlers and the executor for one interpreter.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from batchgate.ops.local.processes import die_with_parent, kill_process

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_logs import CloudWatchLogsClient
    from mypy_boto3_sqs import SQSClient

HOST = "127.0.0.1"
# moto's fixed account, and credentials it accepts (any value works; these are not secrets).
ACCOUNT_ID = "123456789012"
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
STARTUP_SECONDS = 30.0
PORT_ATTEMPTS = 3
# One client per service serves every thread of the stack (task runs, log shippers, pools, watchdog):
# enough connections that none waits for one or is discarded.
CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=30,
    retries={"mode": "standard", "max_attempts": 3},
    max_pool_connections=50,
)


class EndpointError(RuntimeError):
    """The moto server did not start."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class MotoEndpoint:
    """Starts and stops one moto server; `url` is where every local client points."""

    def __init__(self, log_path: Path | None = None, port: int | None = None) -> None:
        self._log_path = log_path
        self._port = port
        self._process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> str:
        for _ in range(PORT_ATTEMPTS):
            port = self._port or free_port()
            if self._launch(port):
                self.url = f"http://{HOST}:{port}"
                return self.url
            if self._port:
                break
        raise EndpointError(f"moto server did not start on {HOST} (see {self._log_path or 'its output'})")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        """Killed at once: the server keeps nothing beyond its memory, and the stack stops it last, when
        nothing reads it any more (a polite stop waited up to seconds for werkzeug's shutdown)."""
        if self._process is not None:
            kill_process(self._process)
            self._process = None

    def _launch(self, port: int) -> bool:
        output = self._log_path.open("ab") if self._log_path else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "batchgate.ops.local.moto_server", "-H", HOST, "-p", str(port)],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own session: a Ctrl-C must not take the endpoint away before the stack stops.
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - it only sets the parent-death signal
            )
        finally:
            if not isinstance(output, int):
                output.close()
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False  # most likely the port was taken between probing and binding
            try:
                with urllib.request.urlopen(f"http://{HOST}:{port}/moto-api/", timeout=1):
                    return True
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        self.stop()
        return False

    def __enter__(self) -> MotoEndpoint:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalAws:
    """boto3 clients for the local endpoint, with fake credentials: one per service, shared by every
    component and thread (a client is thread-safe; making one reads its service model and costs ~15 ms,
    and the stack asked for about fifty)."""

    def __init__(self, endpoint_url: str, region: str) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self._session = boto3.session.Session(
            region_name=region,
            aws_access_key_id=FAKE_CREDENTIALS["aws_access_key_id"],
            aws_secret_access_key=FAKE_CREDENTIALS["aws_secret_access_key"],
        )
        self._clients: dict[str, Any] = {}
        self._making = threading.Lock()  # a session is not thread-safe: clients are made one at a time

    def _client(self, service: str) -> Any:
        return self._session.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint_url,
            config=CLIENT_CONFIG,
        )

    def _shared(self, service: str) -> Any:
        with self._making:
            if service not in self._clients:
                self._clients[service] = self._client(service)
            return self._clients[service]

    def sqs(self) -> SQSClient:
        client: SQSClient = self._shared("sqs")
        return client

    def ecs(self) -> ECSClient:
        client: ECSClient = self._shared("ecs")
        return client

    def events(self) -> EventBridgeClient:
        client: EventBridgeClient = self._shared("events")
        return client

    def logs(self) -> CloudWatchLogsClient:
        client: CloudWatchLogsClient = self._shared("logs")
        return client

    def dynamodb(self) -> DynamoDBClient:
        client: DynamoDBClient = self._shared("dynamodb")
        return client

    # No type stubs are installed for these.
    def cloudwatch(self) -> Any:
        return self._shared("cloudwatch")

    def ec2(self) -> Any:
        return self._shared("ec2")

    def sns(self) -> Any:
        return self._shared("sns")

    def environment(self) -> dict[str, str]:
        """What a child process needs to reach the local endpoint with the SDK's defaults."""
        return sdk_environment(self.endpoint_url, self.region)


def sdk_environment(endpoint_url: str, region: str) -> dict[str, str]:
    """What any AWS SDK needs to reach the local endpoint: the region under both names (boto3 and the
    AWS CLI read AWS_DEFAULT_REGION, the JavaScript SDK v3 only AWS_REGION) and dummy credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
    }


def export_line(endpoint_url: str, region: str) -> str:
    """The shell line that points an application's SDK at the local endpoint."""
    return "export " + " ".join(
        f"{name}={value}" for name, value in sdk_environment(endpoint_url, region).items()
    )
