"""One moto account per test process, set up once and cleaned cheaply between tests.

Building moto's EC2 backend (the default VPC, its subnets and security groups) takes most of a second,
and `mock_aws()` rebuilds it at every start and stop. Here it is built once per process (per xdist
worker) and kept aside between tests; every other service (DynamoDB, SQS, ECS, logs, ...) starts empty
in every test, as with a fresh `mock_aws()`. What tests do to EC2 (ECS tasks add network interfaces)
is undone after each test, so no test sees another's state.

Clients share one boto3 session (`boto3.DEFAULT_SESSION` while a test is mocked): loading a service's
model once per process instead of once per test.

The mock intercepts botocore's requests only. moto's own start also routes the `requests` library's calls
to AWS addresses into moto, registering some 25,000 URL patterns each time (about 10 ms per test); no code
here sends an AWS request through `requests`, and without the patterns one would fail, not pass unmocked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto.core.base_backend import BackendDict
from moto.core.model_instances import reset_model_data
from moto.core.models import MockAWS, botocore_stubber
from moto.dynamodb.models import dynamodb_backends
from moto.ec2.models import ec2_backends

ACCOUNT = "123456789012"
# The service backends in use (moto's own list, which its reset goes through).
IN_USE: list[Any] = vars(BackendDict)["_instances"]


@dataclass
class MotoWorld:
    """The EC2 part of the account (default VPC, subnets, security groups), built on first use."""

    region: str
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    session: boto3.session.Session | None = None
    _ec2: Any = None
    _enis: dict[str, set[str]] = field(default_factory=dict)

    @contextmanager
    def mocked(self) -> Iterator[None]:
        """moto on, with the world in place and every other service empty; as it was after."""
        outermost = MockAWS._nested_count == 0
        mock = BotocoreMock()
        mock.start(reset=False)
        try:
            if outermost:
                _clear_services()
                self._attach()
            if self.session is None:
                self.session = boto3.session.Session()
            boto3.DEFAULT_SESSION = self.session  # restored when the mock stops
            yield
        finally:
            if outermost:
                self._detach()
            mock.stop(remove_data=False)
            if outermost:
                _clear_services()
                reset_model_data()

    def stored_item(self, table_name: str, key: dict[str, Any]) -> dict[str, Any] | None:
        """A DynamoDB item as moto holds it, in the wire format GetItem returns it in (`key` too), read
        without a GetItem: moto's request parsing and response serialization are most of a GetItem's
        cost, and a test that reads an item after every one of thousands of examples pays them each time.
        """
        item = dynamodb_backends[ACCOUNT][self.region].get_item(table_name, key)
        if item is None:
            return None
        attributes: dict[str, Any] = item.to_json()["Attributes"]
        return attributes

    def _attach(self) -> None:
        if self._ec2 is None:
            ec2 = ec2_backends[ACCOUNT]  # the default VPC is built here, once
            backend = ec2[self.region]
            self.subnets = tuple(subnet.id for subnet in backend.describe_subnets())[:2]
            self.security_groups = tuple(group.id for group in backend.describe_security_groups())[:1]
            self._ec2 = ec2
        else:
            dict.__setitem__(ec2_backends, ACCOUNT, self._ec2)
            if ec2_backends not in IN_USE:
                IN_USE.append(ec2_backends)
        self._enis = {region: set(backend.enis) for region, backend in self._ec2.items()}

    def _detach(self) -> None:
        """Undo what the test did to EC2 (the network interfaces of ECS tasks) and put the world aside,
        out of reach of a plain `mock_aws()`'s reset."""
        for region, backend in self._ec2.items():
            kept = self._enis.get(region)
            if kept is None:
                # A region first used by this test: built again when next needed.
                dict.__delitem__(self._ec2, region)
                continue
            for eni_id in set(backend.enis) - kept:
                del backend.enis[eni_id]
        dict.pop(ec2_backends, ACCOUNT, None)
        if not ec2_backends and ec2_backends in IN_USE:
            IN_USE.remove(ec2_backends)


class BotocoreMock(MockAWS):
    """`mock_aws()` for botocore's clients: moto's stubber on and off, its `requests` patterns untouched."""

    def _enable_patching(self, reset: bool = True) -> None:
        botocore_stubber.enabled = True
        if reset:
            self.reset()

    def _disable_patching(self, remove_data: bool) -> None:
        botocore_stubber.enabled = False
        if remove_data:
            self.reset()
            reset_model_data()


def _clear_services() -> None:
    """Every service but the world's EC2 account back to empty, without building anything again."""
    for backends in list(IN_USE):
        if backends is ec2_backends:
            for account in [account for account in backends if account != ACCOUNT]:
                dict.__delitem__(backends, account)
            continue
        backends.clear()
        IN_USE.remove(backends)
