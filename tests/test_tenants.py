"""Tenants: the submit message's optional `tenant`, stored on the job, indexed (sparse, newest first),
carried on job events and notifications, and searched by the CLI (jobs, show, stats)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import boto3
import pytest
from batchgate.adapters.job_table import TENANT_INDEX, JobTable, to_attributes
from batchgate.client import BatchClient
from batchgate.domain.catalog import Catalog, load_catalog
from batchgate.domain.job_events import job_state_change
from batchgate.domain.jobs import JobStatus, job_id_for
from batchgate.domain.messages import TENANT_PATTERN, RejectedMessage, SubmitMessage, parse_submit_message
from batchgate.ops.job_search import JobFilter, JobSearch, nearest_of_tenant
from batchgate.services.dispatch import DispatchResult

from bench._aws_calls import ApiCall, TableKeys, index_write_units
from tests.cli_support import CliHarness, harness, listed_job
from tests.conftest import Stack
from tests.test_job_events import failed, job
from tests.test_table import CountingClient
from tests.test_template import load_template, properties, resolve_refs

__all__ = ["harness"]  # the fixture, imported for pytest


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def message(**fields: Any) -> str:
    return json.dumps(
        {"schema_version": 1, "batch": "report-export", "arguments": ["headcount"], "idempotency_key": "k-1"}
        | fields
    )


# --- the message ------------------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", ["acme", "a", "0-startup", "x" * 63, "acme-jp-2"])
def test_a_tenant_of_the_pattern_is_accepted_and_round_trips(catalog: Catalog, tenant: str) -> None:
    parsed = parse_submit_message(message(tenant=tenant), catalog)
    assert parsed.tenant == tenant
    assert json.loads(parsed.to_json())["tenant"] == tenant
    assert "tenant" not in json.loads(SubmitMessage("report-export", ("headcount",)).to_json())


@pytest.mark.parametrize(
    ("tenant", "reason"),
    [
        ("ACME", f"field 'tenant' must match pattern {TENANT_PATTERN} (got \"ACME\")"),
        ("-acme", f"field 'tenant' must match pattern {TENANT_PATTERN} (got \"-acme\")"),
        ("acme corp", f"field 'tenant' must match pattern {TENANT_PATTERN}"),
        ("", "field 'tenant' must be longer than or equal to 1 characters"),
        ("x" * 64, "field 'tenant' must be shorter than or equal to 63 characters"),
        (7, "field 'tenant' must be string (got 7)"),
        (None, "field 'tenant' must be string (got null)"),
    ],
)
def test_a_tenant_off_the_pattern_is_rejected_with_the_reason(
    catalog: Catalog, tenant: Any, reason: str
) -> None:
    with pytest.raises(RejectedMessage) as raised:
        parse_submit_message(message(tenant=tenant), catalog)
    assert reason in raised.value.reason
    assert raised.value.tenant is None  # never stored under a tenant that is not one


def test_a_rejected_message_keeps_its_valid_tenant(catalog: Catalog) -> None:
    with pytest.raises(RejectedMessage) as raised:
        parse_submit_message(message(tenant="acme", arguments=[]), catalog)
    assert raised.value.tenant == "acme"
    with pytest.raises(RejectedMessage) as schema:
        parse_submit_message(message(tenant="acme", priority=12), catalog)
    assert schema.value.tenant == "acme"


# --- dispatch and the table -------------------------------------------------------------------------


def test_dispatch_stores_the_tenant_and_rejects_a_bad_one(stack: Stack) -> None:
    assert stack.dispatcher().dispatch("m-1", message(tenant="acme")) is DispatchResult.DISPATCHED
    job_id = job_id_for("report-export", "k-1")
    stored = stack.table.get(job_id)
    assert stored is not None and stored.tenant == "acme"
    assert [found.job_id for found in stack.table.query(tenant="acme").jobs] == [job_id]

    bad = message(tenant="Acme Corp", idempotency_key="k-2")
    assert stack.dispatcher().dispatch("m-2", bad) is DispatchResult.REJECTED
    rejected = stack.table.get(job_id_for("report-export", "k-2"))
    assert rejected is not None and rejected.status is JobStatus.REJECTED and rejected.tenant is None
    assert rejected.reason == f"field 'tenant' must match pattern {TENANT_PATTERN} (got \"Acme Corp\")"

    unknown_argument = message(tenant="acme", arguments=[], idempotency_key="k-3")
    assert stack.dispatcher().dispatch("m-3", unknown_argument) is DispatchResult.REJECTED
    kept = stack.table.get(job_id_for("report-export", "k-3"))
    assert kept is not None and kept.tenant == "acme"  # found under its tenant too


def test_the_tenant_index_is_sparse(stack: Stack) -> None:
    with_tenant = listed_job(1)
    stack.table.create(with_tenant._replace(tenant="acme"))
    stack.table.create(listed_job(2))
    entries = boto3.client("dynamodb", region_name="us-east-1").scan(
        TableName=stack.table.table_name, IndexName=TENANT_INDEX
    )["Items"]
    assert [entry["job_id"]["S"] for entry in entries] == [with_tenant.job_id]
    assert set(entries[0]) == {"job_id", "tenant", "created_at", "batch"}
    assert stack.table.get(listed_job(2).job_id) is not None
    assert (
        "tenant"
        not in stack.table._client.get_item(  # no attribute at all, not a null
            TableName=stack.table.table_name, Key={"job_id": {"S": listed_job(2).job_id}}
        )["Item"]
    )


def test_the_tenant_index_costs_one_write_per_job_with_a_tenant_and_none_without(stack: Stack) -> None:
    """Counted as `make bench` counts (bench._aws_calls.index_write_units), on the table as the template
    declares it: over a job's life (status and attempt changes), its tenant entry is written once."""
    described = boto3.client("dynamodb", region_name="us-east-1").describe_table(
        TableName=stack.table.table_name
    )["Table"]
    keys = TableKeys.described(described)
    [tenant_index] = [index for index in keys.indexes if index.keys == ("tenant", "created_at")]
    only_tenant = {"jobs": dataclasses.replace(keys, indexes=(tenant_index,))}
    before = job(JobStatus.RUNNING)
    life = [before._replace(status=JobStatus.SUBMITTED, attempts=()), before, failed(before)]
    for tenant, expected in ((None, 0), ("acme", 1)):
        writes = [
            ApiCall("dynamodb", "PutItem", {"TableName": "jobs", "Item": to_attributes(step.to_item())})
            for step in (step._replace(tenant=tenant) for step in life)
        ]
        assert sum(index_write_units(writes, only_tenant)) == expected


def test_a_tenant_search_with_a_batch_reads_only_that_batch_by_key(stack: Stack) -> None:
    for number, batch in enumerate(["payroll-calculation", "report-export", "payroll-calculation"], start=1):
        stack.table.create(listed_job(number, batch=batch)._replace(tenant="acme"))
    stack.table.create(listed_job(4)._replace(tenant="globex"))
    client = CountingClient(boto3.client("dynamodb", region_name="us-east-1"))
    table = JobTable(stack.table.table_name, client)  # type: ignore[arg-type]
    page = table.query(tenant="acme", batch="payroll-calculation")
    assert [found.job_id for found in page.jobs] == [
        listed_job(1).job_id,
        listed_job(3).job_id,
    ]  # newest first
    assert client.asked == [listed_job(1).job_id, listed_job(3).job_id]
    with pytest.raises(ValueError, match="status or by tenant"):
        table.query(tenant="acme", status="FAILED")


def test_a_tenant_search_keeps_the_statuses_asked_for(stack: Stack) -> None:
    statuses = [JobStatus.FAILED, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.SUCCEEDED]
    for number, status in enumerate(statuses, start=1):
        stack.table.create(listed_job(number, status)._replace(tenant="acme"))
    search = JobSearch(stack.table)
    failed_only = JobFilter(statuses=(JobStatus.FAILED,), tenant="acme")
    page = search.page(failed_only, limit=1)
    assert [found.job_id for found in page.jobs] == [listed_job(1).job_id]
    assert page.next_token is not None
    rest = search.page(failed_only, limit=5, token=page.next_token)
    assert [found.job_id for found in rest.jobs] == [listed_job(3).job_id] and rest.next_token is None
    assert [found.job_id for found in search.each(failed_only)] == [
        listed_job(1).job_id,
        listed_job(3).job_id,
    ]
    assert len(list(search.each(JobFilter(tenant="acme")))) == 4


def test_the_nearest_job_of_a_tenant_and_batch_is_before_or_after_the_time(stack: Stack) -> None:
    # Queued 50, 30 and 10 minutes before 12:00; another tenant's job at 11:41, another batch's at 11:39.
    for minutes in (50, 30, 10):
        stack.table.create(listed_job(minutes)._replace(tenant="acme"))
    stack.table.create(listed_job(19)._replace(tenant="globex"))
    stack.table.create(listed_job(21, batch="report-export")._replace(tenant="acme"))

    def nearest(at: str) -> str | None:
        found = nearest_of_tenant(stack.table, "acme", "payroll-calculation", at)
        return found.job_id if found else None

    assert nearest("2026-11-28T11:39:00.000Z") == listed_job(30).job_id  # 9 min after, 11 min before
    assert nearest("2026-11-28T11:41:00.000Z") == listed_job(10).job_id  # 9 min before, 11 min after
    assert nearest("2026-11-28T11:40:00.000Z") == listed_job(30).job_id  # a tie: the earlier
    assert nearest("2026-11-28T09:00:00.000Z") == listed_job(50).job_id  # only after
    assert nearest("2026-11-29T09:00:00.000Z") == listed_job(10).job_id  # only before
    assert (
        nearest_of_tenant(stack.table, "initech", "payroll-calculation", "2026-11-28T11:40:00.000Z") is None
    )


# --- events and notifications -----------------------------------------------------------------------


def test_job_events_carry_the_tenant() -> None:
    before = job()._replace(tenant="acme")
    change = job_state_change(before, failed(before), "eu-west-1")
    assert change is not None and change.detail["tenant"] == "acme"
    plain = job_state_change(job(), failed(job()), "eu-west-1")
    assert plain is not None and plain.detail["tenant"] is None


def test_notifications_name_the_tenant(aws: None) -> None:
    """The template's notification rule and input transformer through moto's EventBridge (the topic
    replaced by a queue, as in test_job_notifications)."""
    template = load_template()
    rule = properties(template, "JobNotificationRule")
    transformer = resolve_refs(rule["Targets"][0]["InputTransformer"], {})
    events = boto3.client("events", region_name="eu-west-1")
    sqs = boto3.client("sqs", region_name="eu-west-1")
    url = sqs.create_queue(QueueName="notifications")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="notify", EventPattern=json.dumps(rule["EventPattern"]))
    events.put_targets(Rule="notify", Targets=[{"Id": "topic", "Arn": arn, "InputTransformer": transformer}])
    before = job()._replace(tenant="acme")
    change = job_state_change(before, failed(before), "eu-west-1")
    assert change is not None
    events.put_events(Entries=[change.entry("default")])  # type: ignore[list-item]
    [received] = sqs.receive_message(QueueUrl=url)["Messages"]
    text = json.loads(received["Body"])
    assert text.startswith("batchgate: job bg-payroll-calculation-1 of batch payroll-calculation")
    assert "(tenant acme) ended FAILED" in text


# --- the client -------------------------------------------------------------------------------------


def test_the_client_sends_the_tenant_and_refuses_a_bad_one(aws: None) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="tenant-jobs")["QueueUrl"]
    client = BatchClient(url, sqs)
    client.submit("report-export", ["headcount"], idempotency_key="k-1", tenant="acme")
    with pytest.raises(RejectedMessage, match="field 'tenant' must match pattern"):
        client.submit("report-export", ["headcount"], tenant="ACME")
    [sent] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert json.loads(sent["Body"])["tenant"] == "acme"


# --- the CLI ----------------------------------------------------------------------------------------


def test_jobs_lists_a_tenants_jobs_newest_first(harness: CliHarness) -> None:
    for number, batch in enumerate(["payroll-calculation", "report-export", "payroll-calculation"], start=1):
        harness.add(listed_job(number, batch=batch)._replace(tenant="acme"))
    harness.add(listed_job(4)._replace(tenant="globex"))
    harness.add(listed_job(5))
    document = harness.json("jobs", "--tenant", "acme")
    expected = [listed_job(1), listed_job(2, batch="report-export"), listed_job(3)]
    assert [row["job_id"] for row in document["jobs"]] == [listed.job_id for listed in expected]
    assert {row["tenant"] for row in document["jobs"]} == {"acme"}
    of_batch = harness.json("jobs", "--tenant", "acme", "--batch", "report-export")
    assert [row["job_id"] for row in of_batch["jobs"]] == [listed_job(2, batch="report-export").job_id]
    none = harness.ok("jobs", "--tenant", "initech")
    assert none.stdout.strip() == "No jobs found of tenant initech."
    bad = harness.run("jobs", "--tenant", "Acme")
    assert bad.exit_code == 2 and "'Acme' is not a tenant" in bad.stderr


def test_show_finds_the_job_of_a_tenant_and_batch_nearest_a_time(harness: CliHarness) -> None:
    for minutes in (50, 30, 10):
        harness.add(listed_job(minutes)._replace(tenant="acme"))
    harness.add(listed_job(12)._replace(tenant="globex"))
    arguments = ["show", "--tenant", "acme", "--batch", "payroll-calculation"]
    document = harness.json(*arguments, "--at", "2026-11-28T11:41:00Z")
    assert document["job_id"] == listed_job(10).job_id and document["tenant"] == "acme"
    result = harness.ok(*arguments, "--at", "2026-11-28T11:41:00Z")
    assert (
        "the job of tenant acme and batch payroll-calculation nearest 2026-11-28T11:41:00.000Z"
        in result.stderr
    )
    assert "tenant" in result.stdout and "acme" in result.stdout
    far = harness.run(*arguments, "--at", "2026-11-20T11:00:00Z")
    assert far.exit_code != 0 and "more than --within" in far.stderr
    assert harness.json(*arguments, "--at", "2026-11-20T11:00:00Z", "--within", "any")["job_id"] == (
        listed_job(50).job_id
    )
    missing = harness.run("show", "--tenant", "initech", "--batch", "payroll-calculation")
    assert (
        missing.exit_code != 0 and "no job of tenant initech and batch payroll-calculation" in missing.stderr
    )
    no_batch = harness.run("show", "--tenant", "acme")
    assert no_batch.exit_code == 2 and "give --tenant with --batch" in no_batch.stderr
    keyed = harness.run(*arguments, "--key", "listed-10")
    assert keyed.exit_code == 2 and "--tenant with --at" in keyed.stderr


def test_stats_counts_one_tenants_jobs(harness: CliHarness) -> None:
    harness.add(listed_job(1, JobStatus.FAILED)._replace(tenant="acme"))
    harness.add(listed_job(2)._replace(tenant="acme"))
    harness.add(listed_job(3)._replace(tenant="globex"))
    harness.add(listed_job(4))
    document = harness.json("stats", "--tenant", "acme")
    [row] = document["rows"]
    assert (row["jobs"], row["succeeded"], row["failed"]) == (2, 1, 1)
    assert document["tenant"] == "acme"
    assert harness.ok("stats", "--tenant", "initech").stdout.startswith("No jobs found of tenant initech")


def test_a_retry_keeps_the_tenant(stack: Stack) -> None:
    from batchgate.ops.resubmit import plan_retry

    original = stack.table.create(listed_job(1, JobStatus.FAILED)._replace(tenant="acme"))
    assert original is not None
    assert plan_retry(stack.table, original.job_id).submit_arguments()["tenant"] == "acme"


def test_submit_sends_the_tenant_and_refuses_a_bad_one(harness: CliHarness) -> None:
    harness.ok("submit", "report-export", "headcount", "--tenant", "acme", "--idempotency-key", "k-1")
    [body] = harness.queued_bodies()
    assert body["tenant"] == "acme"
    refused = harness.run("submit", "report-export", "headcount", "--tenant", "Acme")
    assert refused.exit_code == 2 and "field 'tenant' must match pattern" in refused.stderr
    assert harness.queued_bodies() == []
