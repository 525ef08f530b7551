"""Fuzzing: whatever arrives on the jobs queue or from EventBridge, the batch never crashes as a whole and
every bad submit message ends REJECTED with a reason (or, for a forged relaunch, in the DLQ).

Thousands of cases in seconds: the dispatcher runs in-process against one moto table with an ECS
double that starts nothing (a valid message's launch is not what is under test here)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from batchgate.adapters.ecs import EcsTasks, LaunchOutcome
from batchgate.adapters.job_table import KEY_ATTRIBUTE, from_attributes
from batchgate.domain.jobs import Job, JobStatus, job_id_for
from batchgate.domain.messages import RejectedMessage, parse_submit_message
from batchgate.domain.relaunch import MAX_DEFERRALS, InvalidRelaunchMessage, Relaunch
from batchgate.domain.task_events import InvalidTaskEvent, TaskStateChange
from batchgate.services.dispatch import Dispatcher, DispatchResult
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import MOTO, Stack, create_stack_resources, event_fixture
from tests.reliability.conftest import TALLY

MESSAGE_NUMBERS = itertools.count()
VALID = {
    "schema_version": 1,
    "batch": "payroll-calculation",
    "arguments": ["2026-11"],
    "environment": {"LOG_LEVEL": "INFO"},
    "idempotency_key": "k",
    "priority": 5,
}


class NoEcs(EcsTasks):
    """RunTask answers with a task; nothing is started."""

    def __init__(self) -> None:
        self.cluster = "arn:aws:ecs:us-east-1:123456789012:cluster/batchgate-dev"
        self.launched = 0

    def run_task(self, request: dict[str, Any]) -> LaunchOutcome:
        self.launched += 1
        return LaunchOutcome(
            task_arn=f"arn:aws:ecs:us-east-1:123456789012:task/batchgate-dev/{self.launched:032x}"
        )

    def tasks_started_by(self, started_by: str) -> list[dict[str, Any]]:
        return []


@pytest.fixture(scope="module")
def fuzz_stack() -> Any:
    with MOTO.mocked():
        yield create_stack_resources(table_name="batchgate-fuzz-jobs")


# Every Unicode general category: letters, marks, numbers, punctuation, symbols, separators and "C"
# (Cc control characters, Cf format, Cs surrogates, Co private use, Cn unassigned). JSON-encoded with
# ensure_ascii, a lone surrogate becomes an escape such as "\ud83d" and a control character "\u001b".
ANY_CHARACTER = st.characters(categories=("L", "M", "N", "P", "S", "Z", "C"))
any_text = st.text(ANY_CHARACTER, max_size=40)
# Text as SQS can carry it in a body (no lone surrogate can cross it unescaped).
SQS_CHARACTER = st.characters(categories=("L", "M", "N", "P", "S", "Z", "Cc", "Cf", "Co", "Cn"))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(ANY_CHARACTER, max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
mutations = st.fixed_dictionaries(
    {},
    optional={
        "schema_version": json_values,
        "batch": st.sampled_from(["payroll-calculation", "attendance-import", "nope", "", "PAYROLL"])
        | json_values,
        "arguments": st.lists(st.text(ANY_CHARACTER, max_size=80), max_size=5) | json_values,
        "environment": st.dictionaries(
            st.text(ANY_CHARACTER, max_size=20), st.text(ANY_CHARACTER, max_size=20), max_size=3
        )
        | json_values,
        "idempotency_key": st.text(ANY_CHARACTER, max_size=300) | json_values,
        "priority": st.integers(-1000, 1000) | json_values,
        "deadline": st.sampled_from(["2020-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "yesterday"])
        | json_values,
        "strategy": st.sampled_from(["FARGATE", "FARGATE_SPOT", "EC2", "MOON"]) | json_values,
        "image": any_text,
        "task_definition": any_text,
    },
)
bodies = st.one_of(
    st.text(SQS_CHARACTER, max_size=300),
    st.binary(max_size=200).map(lambda raw: raw.decode("utf-8", "replace")),
    json_values.map(json.dumps),
    mutations.map(lambda changes: json.dumps({**VALID, **changes})),
    # Unescaped: every character but a lone surrogate as it is in the body.
    mutations.map(lambda changes: json.dumps({**VALID, **changes}, ensure_ascii=False)).filter(
        lambda body: not _has_lone_surrogate(body)
    ),
    st.integers(8000, 12000).map(lambda n: json.dumps({**VALID, "arguments": ["x" * n]})),
)


def _has_lone_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(char) <= 0xDFFF for char in text)


# The default run's counts, and the full run's (`make test-reliability`).
SUBMIT_EXAMPLES = (1000, 5000)
TASK_EVENT_EXAMPLES = (300, 1000)


def examples(counts: tuple[int, int]) -> list[Any]:
    default, full = counts
    return [default, pytest.param(full, marks=pytest.mark.reliability_full, id="full")]


@pytest.mark.parametrize("count", examples(SUBMIT_EXAMPLES))
def test_any_submit_message_ends_visible_and_never_crashes(fuzz_stack: Stack, count: int) -> None:
    @settings(max_examples=count, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies)
    def check(body: str) -> None:
        submit_body_ends_visible(fuzz_stack, body)

    check()


def submit_body_ends_visible(fuzz_stack: Stack, body: str) -> None:
    ecs = NoEcs()
    dispatcher = Dispatcher(
        catalog=fuzz_stack.catalog, table=fuzz_stack.table, ecs=ecs, settings=fuzz_stack.settings
    )
    message_id = f"fuzz-{next(MESSAGE_NUMBERS)}"  # SQS message ids are unique
    result = dispatcher.dispatch(message_id, body)  # an exception here fails the test: no crash allowed
    TALLY.add("fuzz: submit messages")
    TALLY.outcome("submit fuzz", result.value)
    assert result in (DispatchResult.DISPATCHED, DispatchResult.DUPLICATE, DispatchResult.REJECTED)
    if result is DispatchResult.REJECTED:
        # The job a rejected message is recorded as: keyed like dispatch keys it.
        try:
            parse_submit_message(body, fuzz_stack.catalog)
            batch, key = "-", message_id  # a passed deadline: rejected after parsing
        except RejectedMessage as rejected:
            batch, key = (rejected.batch or "-")[:64], rejected.idempotency_key or message_id
        job = stored_job(fuzz_stack, job_id_for(batch, key))
        if job is None:  # valid but past its deadline: the job of the message itself
            document = json.loads(body)
            job = stored_job(
                fuzz_stack, job_id_for(document["batch"], document.get("idempotency_key") or message_id)
            )
        if job is not None and job.message_id != message_id:
            # Its idempotency key names another message's job: that job stays as it is and the
            # refusal is recorded under this message's own id.
            job = stored_job(fuzz_stack, job_id_for(batch, message_id))
            TALLY.outcome("submit fuzz", "REJECTED (idempotency key already used by another job)")
        found = job is not None and job.status is JobStatus.REJECTED and bool(job.reason)
        TALLY.check("job visible", found)
        assert found, "a rejected message left no job with a reason"
    assert ecs.launched <= 1


def stored_job(fuzz_stack: Stack, job_id: str) -> Job | None:
    """The job as the table holds it, read the way JobTable.get reads it (the item in DynamoDB's wire
    format, turned into a Job) without the GetItem round trip through moto: that round trip is most of
    an example's cost, and the dispatcher's own reads still make it."""
    item = MOTO.stored_item(fuzz_stack.settings.table_name, {KEY_ATTRIBUTE: {"S": job_id}})
    return Job.from_item(from_attributes(item)) if item is not None else None


def test_a_stored_job_is_the_job_get_item_reads(fuzz_stack: Stack) -> None:
    """What the fuzz test reads instead of a GetItem is what a GetItem reads, for jobs whose items
    hold lists, maps, numbers and escapes."""
    dispatcher = Dispatcher(
        catalog=fuzz_stack.catalog, table=fuzz_stack.table, ecs=NoEcs(), settings=fuzz_stack.settings
    )
    messages = {
        "stored-1": json.dumps({**VALID, "idempotency_key": "stored", "priority": "high"}),
        "stored-2": json.dumps({**VALID, "idempotency_key": "stored", "arguments": [1, {"a": [None]}]}),
        "stored-3": json.dumps({**VALID, "idempotency_key": "stored-valid"}),
        "stored-4": "\u001b{not json\ud83d",
    }
    job_ids = [
        job_id_for("payroll-calculation", "stored"),
        job_id_for("payroll-calculation", "stored-2"),
        job_id_for("payroll-calculation", "stored-valid"),
        job_id_for("-", "stored-4"),
    ]
    for message_id, body in messages.items():
        dispatcher.dispatch(message_id, body)
    for job_id in job_ids:
        job = fuzz_stack.table.get(job_id)
        assert job is not None
        assert stored_job(fuzz_stack, job_id) == job
    assert stored_job(fuzz_stack, job_id_for("payroll-calculation", "never-sent")) is None


@settings(max_examples=1000, deadline=None)
@given(
    body=st.one_of(
        st.builds(
            lambda n, a: json.dumps({"job_id": f"bg-payroll-calculation-{n:020x}", "attempt": a}),
            st.integers(0, 2**64),
            st.integers(-5, 120),
        ),
        st.text(max_size=200),
        json_values.map(json.dumps),
        st.builds(lambda j, a: json.dumps({"job_id": j, "attempt": a}), json_values, json_values),
        st.builds(
            lambda n, d: json.dumps(
                {"job_id": f"bg-payroll-calculation-{n:020x}", "attempt": 1, "deferrals": d}
            ),
            st.integers(0, 2**64),
            st.one_of(st.integers(-5, MAX_DEFERRALS + 5), json_values),
        ),
    )
)
def test_a_relaunch_body_is_read_or_refused_never_misread(body: str) -> None:
    TALLY.add("fuzz: relaunch messages")
    try:
        relaunch = Relaunch.parse(body)
    except InvalidRelaunchMessage:
        TALLY.outcome("relaunch fuzz", "refused (to the DLQ)")
        return
    TALLY.outcome("relaunch fuzz", "read")
    assert relaunch.job_id.startswith("bg-") and 1 <= relaunch.attempt <= 100
    assert 0 <= relaunch.deferrals <= MAX_DEFERRALS
    assert Relaunch.parse(relaunch.body()) == relaunch


def test_forged_and_stale_relaunches_launch_nothing(stack: Stack) -> None:
    ecs = NoEcs()
    dispatcher = stack.dispatcher(ecs)
    with pytest.raises(InvalidRelaunchMessage):
        dispatcher.relaunch("{not json")
    assert (
        dispatcher.relaunch(Relaunch("bg-payroll-calculation-00000000000000000000", 1).body())
        is DispatchResult.DUPLICATE
    )
    TALLY.add("fuzz: relaunch messages", 2)
    assert ecs.launched == 0


@pytest.mark.parametrize("count", examples(TASK_EVENT_EXAMPLES))
def test_a_malformed_task_event_is_refused_clearly_or_read(count: int) -> None:
    @settings(max_examples=count, deadline=None)
    @given(changes=task_event_changes)
    def check(changes: dict[str, Any]) -> None:
        task_event_is_refused_clearly_or_read(changes)

    check()


task_event_changes = st.dictionaries(
    st.sampled_from(
        [
            "taskArn",
            "lastStatus",
            "version",
            "containers",
            "overrides",
            "startedBy",
            "detail-type",
            "createdAt",
            "stopCode",
        ]
    ),
    json_values,
    max_size=4,
)


def task_event_is_refused_clearly_or_read(changes: dict[str, Any]) -> None:
    event = event_fixture("task-stopped-exit-1.json")
    for key, value in changes.items():
        if key == "detail-type":
            event[key] = value
        else:
            event["detail"][key] = value
    TALLY.add("fuzz: task events")
    try:
        change = TaskStateChange.from_event(event)
    except InvalidTaskEvent:
        TALLY.outcome("task event fuzz", "refused (InvalidTaskEvent)")
        return
    except (TypeError, AttributeError, ValueError) as error:
        TALLY.outcome("task event fuzz", f"crashed: {type(error).__name__}")
        raise
    TALLY.outcome("task event fuzz", "read")
    assert isinstance(change.version, int)
