"""The local stacks the integration tests share: starting one takes seconds, so each runs once per test
process, and the modules that use them form one xdist group (`make test` distributes by group), so that
one process starts each of them once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.local_stack import Stack, running_stack, short_timeout_catalog

# The modules whose tests use these stacks carry this mark.
LOCAL_STACK_GROUP = pytest.mark.xdist_group("local-stack")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`batchgate local up` as `make run` starts it (its warm pools included), with report-export's
    timeout lowered and the template's sweep run every second."""
    directory = tmp_path_factory.mktemp("local-stack")
    arguments = ["--catalog", str(short_timeout_catalog(directory)), "--schedule-seconds", "1"]
    with running_stack(directory, arguments) as started:
        yield started


@pytest.fixture(scope="session")
def closed_pool_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A local stack whose warm pools have no task (every warm job goes to ECS at once), without Docker."""
    directory = tmp_path_factory.mktemp("closed-pool-stack")
    arguments = ["--catalog", str(short_timeout_catalog(directory)), "--pool-tasks", "0", "--no-docker"]
    with running_stack(directory, arguments) as started:
        yield started
