"""Work per job: every AWS call and DynamoDB write unit of a job's whole life, counted on the real
handlers' clients.

One job goes submit -> SUCCEEDED in process: the sample's first submit message (events/), given a tenant
(the dearer case: the tenant index's one write), as an SQS event through the dispatch handler, then the
sample task state change events (PROVISIONING, PENDING, RUNNING, STOPPED exit 0), rewritten for the task
dispatch started, through the track handler, then the job table's stream records of those writes through
the history handler, delivered by the local stack's stream poller as the template's event source mapping
would (its filter included; the poller's own stream reads are Lambda's, not the function's, and are not
counted). Each function is a container with its own counted session. A first job meets cold caches
(history, task definition); a second job in the same containers shows the steady state.

Write units are counted, not read from DynamoDB (the product does not ask for ReturnConsumedCapacity):
each write call of the request log, and ceil(item size / 1 KB) per PutItem, the item's size computed as
DynamoDB bills it (see bench._aws_calls.write_units); and the writes each PutItem makes in the job
table's global secondary indexes, from the item before and after it (bench._aws_calls.index_write_units).

Run with `python -m bench` (all benchmarks) or `python -m bench.work_per_job`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from types import ModuleType

import boto3
from batchgate.domain.jobs import JobStatus, job_id_for
from batchgate.ops.local.stream_poller import StreamPacing, StreamPoller
from moto import mock_aws

from bench._aws_calls import ApiCall, CallCounter, TableKeys, index_write_units, write_units
from bench._figures import at_most, figures_table
from bench._in_process import (
    DISPATCH,
    HISTORY,
    REGION,
    TRACK,
    InProcessStack,
    build_stack,
    invoke,
    life_events,
    load_function,
    plain_session,
    quiet_functions,
    sample_event,
    sqs_event,
)

MAX_RUN_TASK_PER_ATTEMPT = 1
MAX_DISPATCH_WRITES_PER_ATTEMPT = 2
MAX_TRACK_WRITES_PER_EVENT = 1
MAX_HISTORY_WRITES_PER_ATTEMPT = 1
# Write units of a one-attempt job's whole life, its table's indexes included (54 when both indexes
# projected every attribute).
MAX_WRITE_UNITS_PER_JOB = 30
# The job's tenant: its entry in jobs-by-tenant is written once (a job without a tenant has none).
TENANT = "acme"
# The stream poller without its pauses: the benchmark drains the stream after each job.
NO_PAUSES = StreamPacing.without_pauses()


@dataclass(frozen=True)
class FunctionWork:
    function: str
    calls: list[ApiCall]
    events: int  # units of work: messages for dispatch, task events for track, stream records for history

    def counts(self) -> Counter[str]:
        return Counter(call.operation for call in self.calls)

    def writes(self, tables: dict[str, str], kind: str) -> list[ApiCall]:
        return [call for call in self.calls if call.is_write and tables.get(call.table or "") == kind]


@dataclass(frozen=True)
class JobWork:
    label: str
    dispatch: FunctionWork
    track: FunctionWork
    history: FunctionWork
    attempts: int

    @property
    def functions(self) -> tuple[FunctionWork, ...]:
        return (self.dispatch, self.track, self.history)


@dataclass(frozen=True)
class Containers:
    """One container per function (its handler module and counted session), and the history
    function's stream event source mapping."""

    modules: dict[str, ModuleType]
    counters: dict[str, CallCounter]
    stream: StreamPoller


def _one_job(stack: InProcessStack, label: str, key: str, containers: Containers) -> JobWork:
    modules, counters = containers.modules, containers.counters
    message = json.loads(sample_event("sqs-submit-batch.json")["Records"][0]["body"])
    message["idempotency_key"] = f"work-per-job-{key}"
    message["tenant"] = TENANT
    for counter in counters.values():
        counter.clear()
    response = invoke(modules[DISPATCH], sqs_event([json.dumps(message)], key))
    if response != {"batchItemFailures": []}:
        raise RuntimeError(f"dispatch answered {response}")
    table = stack.table()
    job = table.get(job_id_for(message["batch"], message["idempotency_key"]))
    if job is None or job.status is not JobStatus.DISPATCHED:
        raise RuntimeError(f"dispatch left {job} for {message}")
    events = life_events(job, stack)
    for event in events:
        invoke(modules[TRACK], event)
    final = table.get(job.job_id)
    if final is None or final.status is not JobStatus.SUCCEEDED:
        raise RuntimeError(f"job {job.job_id} ended {final.status if final else None}")
    records = drain(containers.stream)
    return JobWork(
        label,
        FunctionWork(DISPATCH, counters[DISPATCH].calls, 1),
        FunctionWork(TRACK, counters[TRACK].calls, len(events)),
        FunctionWork(HISTORY, counters[HISTORY].calls, records),
        len(final.attempts),
    )


def drain(stream: StreamPoller) -> int:
    """Deliver every record the stream holds now to the history handler; how many were delivered."""
    delivered = 0
    while (result := stream.poll_once()).received:
        if result.failed or result.error:
            raise RuntimeError(f"the history function failed on the stream: {result}")
        delivered += result.received
    return delivered


def job_stream(stack: InProcessStack, history: ModuleType) -> StreamPoller:
    """The template's stream event source mapping of the history function, feeding `history` (the job
    events function reads the same stream and writes no table: its PutEvents are not counted here)."""
    [source] = [source for source in stack.resources.stream_sources if source.function == HISTORY]
    return StreamPoller(
        boto3.client("dynamodbstreams", region_name=REGION),
        boto3.client("sqs", region_name=REGION),
        source,
        lambda event: invoke(history, event),
        region=REGION,
        function_arn=stack.function(HISTORY).arn,
        pacing=NO_PAUSES,
    )


def measure() -> tuple[list[JobWork], dict[str, str], dict[str, TableKeys]]:
    with mock_aws(), quiet_functions():
        stack = build_stack()
        modules: dict[str, ModuleType] = {}
        counters: dict[str, CallCounter] = {}
        for function in (DISPATCH, TRACK, HISTORY):
            session = plain_session()
            counters[function] = CallCounter(session)
            modules[function] = load_function(stack, function, session)
        containers = Containers(modules, counters, job_stream(stack, modules[HISTORY]))
        jobs = [
            _one_job(stack, label, key, containers)
            for label, key in (("first job, cold containers", "cold"), ("next job, warm", "warm"))
        ]
        return jobs, stack.table_names(), stack.table_keys()


def _calls_cell(work: FunctionWork) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(work.counts().items()))


def report(jobs: list[JobWork], tables: dict[str, str], keys: dict[str, TableKeys]) -> str:
    # Every write of the run in order (dispatch, track, history, job after job): an index write
    # depends on the item before it.
    ordered = [call for job in jobs for work in job.functions for call in work.calls]
    index_units = dict(zip(map(id, ordered), index_write_units(ordered, keys), strict=True))
    rows = []
    units = {DISPATCH: "message", TRACK: "events", HISTORY: "stream records"}
    for job in jobs:
        for work in job.functions:
            job_writes, history_writes = work.writes(tables, "job"), work.writes(tables, "history")
            unit = units[work.function]
            rows.append(
                f"| {job.label} | {work.function} ({work.events} {unit}) "
                f"| {_calls_cell(work)} | {len(work.calls)} | {len(job_writes)} / {len(history_writes)} "
                f"| {sum(map(write_units, job_writes))} + {sum(index_units[id(c)] for c in job_writes)} "
                f"/ {sum(map(write_units, history_writes))} |"
            )
    steady = jobs[-1]
    attempts = steady.attempts
    run_tasks = steady.dispatch.counts()["RunTask"] / attempts
    dispatch_writes = len(steady.dispatch.writes(tables, "job"))
    # The job item's creation happens once per job (for a rejected message too), not per attempt.
    per_attempt = (dispatch_writes - 1) / attempts
    track_events = steady.track.events
    track_job_writes = len(steady.track.writes(tables, "job")) / track_events
    track_all_writes = len([call for call in steady.track.calls if call.is_write]) / track_events
    history_table_writes = len(steady.history.writes(tables, "history"))
    history_per_attempt = history_table_writes / attempts
    history_other_writes = (
        len([call for call in steady.history.calls if call.is_write]) - history_table_writes
    )
    total_calls = sum(len(work.calls) for work in steady.functions)
    steady_writes = [call for work in steady.functions for call in work.calls if call.is_write]
    total_units = sum(map(write_units, steady_writes))
    total_index_units = sum(index_units[id(call)] for call in steady_writes)
    indexes = sum(len(table.indexes) for table in keys.values())
    figures = [
        at_most(
            "dispatch: RunTask calls per attempt",
            run_tasks,
            MAX_RUN_TASK_PER_ATTEMPT,
            f"≤ {MAX_RUN_TASK_PER_ATTEMPT}",
            f"{run_tasks:g}",
        ),
        at_most(
            "dispatch: job-table writes per attempt (after the job's creation)",
            per_attempt,
            MAX_DISPATCH_WRITES_PER_ATTEMPT,
            f"≤ {MAX_DISPATCH_WRITES_PER_ATTEMPT}",
            f"{per_attempt:g} (+1 creating the job: {dispatch_writes} for a one-attempt job)",
        ),
        at_most(
            "track: job-table writes per task event",
            track_job_writes,
            MAX_TRACK_WRITES_PER_EVENT,
            f"≤ {MAX_TRACK_WRITES_PER_EVENT}",
            f"{track_job_writes:g}",
        ),
        at_most(
            "track: writes per task event, all tables",
            track_all_writes,
            MAX_TRACK_WRITES_PER_EVENT,
            f"≤ {MAX_TRACK_WRITES_PER_EVENT}",
            f"{track_all_writes:g}",
        ),
        at_most(
            "history: history-table writes per finished attempt (from the job table's stream)",
            history_per_attempt,
            MAX_HISTORY_WRITES_PER_ATTEMPT,
            f"≤ {MAX_HISTORY_WRITES_PER_ATTEMPT}",
            f"{history_per_attempt:g} ({steady.history.events} stream records delivered, "
            f"{history_other_writes} writes elsewhere)",
        ),
        at_most(
            "AWS calls and write units per job, submit -> SUCCEEDED (warm)",
            total_units + total_index_units,
            MAX_WRITE_UNITS_PER_JOB,
            f"≤ {MAX_WRITE_UNITS_PER_JOB} WCU",
            f"{total_calls} calls, {total_units + total_index_units} WCU ({total_units} in the tables, "
            f"{total_index_units} in the job table's {indexes} indexes)",
        ),
    ]
    lines = [
        "## Work per job (`bench/work_per_job.py`)",
        "",
        "One job's whole life, submit -> SUCCEEDED, through the real dispatch, track and history "
        "handlers in process (in-process moto): the sample's first submit message with a tenant (its "
        "entry in jobs-by-tenant is written once; a job without a tenant has none), then the sample task "
        "events PROVISIONING, PENDING, RUNNING, STOPPED (exit 0) rewritten for the task dispatch started, "
        "then the job table's stream records of the job's writes, delivered to the history handler as "
        "the template's event source mapping delivers them (MODIFY only). Every call counted on the "
        "handlers' own clients (botocore `before-parameter-build`); the stream reads are the mapping's, "
        "not the function's. Write units: "
        "counted from the requests, ceil(item size / 1 KB) per PutItem with the item size as DynamoDB "
        "bills it (not read back with ReturnConsumedCapacity), plus what each PutItem writes in the job "
        "table's global secondary indexes, from the template's projections: one write as the item "
        "enters an index or stays in it with an attribute the index holds changed, none when it "
        "changed nothing the index holds, two when its index key changes (a status change in "
        "jobs-by-status), each ceil(entry size / 1 KB).",
        "",
        figures_table(figures),
        "",
        "| job | function | AWS calls | total | writes job / history table "
        "| WCU job table + its indexes / history table |",
        "|---|---|---|---:|---|---|",
        *rows,
        "",
        "- Dispatch per job: the job item's conditional creation, the attempt written before RunTask, "
        "RunTask, the task recorded; the first job of a container also reads each batch's history (one "
        "Query per batch per minute, however many threads plan at once).",
        "- Track per task event: one GetItem and one conditional PutItem of the job, nothing else; once "
        "per task definition per container a DescribeTaskDefinition (log pointer).",
        "- History per finished attempt: a GetItem and a conditional PutItem of the history table "
        "(plan_launch's input); the job's other writes reach it as stream records and cost no call.",
        "",
    ]
    return "\n".join(lines)


def run() -> str:
    return report(*measure())


if __name__ == "__main__":
    print(run())
