"""The boto3 clients of the functions, made the same way by every adapter.

A container makes one client per service and its adapters share it: a client costs tens of
milliseconds of model loading at a cold start, and boto3 clients are thread-safe. A client only a rare
path needs (a retry's relaunch message, a throttled record's back-off) is made on that path's first use
instead, so most containers never pay for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_sqs import SQSClient

# Every client: the standard retry mode (retries throttling and transient errors with jittered
# back-off, and a retry quota that stops a storm of retries against a failing service) and short
# timeouts instead of botocore's 60 s: a Lambda waiting on a hung connection holds a whole SQS batch
# hostage. botocore's own retries are safe for RunTask because every RunTask carries a clientToken, and
# for the job table because its writes are conditional.
CONNECT_TIMEOUT_SECONDS = 5
RETRY_ATTEMPTS = 3


def _standard(read_timeout: int) -> Config:
    return Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=read_timeout,
        retries={"mode": "standard", "max_attempts": RETRY_ATTEMPTS},
    )


ECS_CLIENT_CONFIG = _standard(read_timeout=20)
DYNAMODB_CLIENT_CONFIG = _standard(read_timeout=10)
# Above SQS's longest long poll (ReceiveMessage WaitTimeSeconds 20), so that a receive is never cut.
SQS_CLIENT_CONFIG = _standard(read_timeout=30)

# botocore's default pool. A client shared by more threads than its pool has connections opens a new
# connection (a TLS handshake) for each request beyond it and throws it away after: a client gets at
# least as many connections as the threads that use it at once.
DEFAULT_MAX_CONNECTIONS = 10


def dynamodb_client(threads: int = DEFAULT_MAX_CONNECTIONS) -> DynamoDBClient:
    return boto3.client("dynamodb", config=DYNAMODB_CLIENT_CONFIG.merge(_pool(threads)))


def ecs_client(threads: int = DEFAULT_MAX_CONNECTIONS) -> ECSClient:
    return boto3.client("ecs", config=ECS_CLIENT_CONFIG.merge(_pool(threads)))


def sqs_client() -> SQSClient:
    return boto3.client("sqs", config=SQS_CLIENT_CONFIG)


def events_client() -> EventBridgeClient:
    return boto3.client("events")


def _pool(threads: int) -> Config:
    return Config(max_pool_connections=max(DEFAULT_MAX_CONNECTIONS, threads))


class OnFirstUse[ClientT]:
    """A client made by `make` when first asked for, once, however many threads ask at the same time."""

    def __init__(self, make: Callable[[], ClientT]) -> None:
        self._make = make
        self._made: ClientT | None = None
        self._lock = threading.Lock()

    @classmethod
    def given(cls, client: ClientT | None, make: Callable[[], ClientT]) -> OnFirstUse[ClientT]:
        """`client` when one is passed in (tests, the CLI), else one made by `make` on first use."""
        return cls(lambda: client) if client is not None else cls(make)

    def __call__(self) -> ClientT:
        made = self._made
        if made is None:
            with self._lock:
                if self._made is None:
                    self._made = self._make()
                made = self._made
        return made
