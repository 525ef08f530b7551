"""Finding the stack: CloudFormation outputs by --stack or samconfig.toml, the local stack's state file,
endpoints, and explicit overrides; exercised through the CLI against moto."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from batchgate.domain.jobs import JobStatus
from batchgate.ops.stack_outputs import AwsSession, ConfigurationError, LocalState, Target, read_samconfig

from tests.cli_support import CliHarness, harness, listed_job
from tests.conftest import REGION

__all__ = ["harness"]

SAMCONFIG = """
version = 0.1

[default.deploy.parameters]
stack_name = "batchgate"
region = "us-east-1"

[dev.global.parameters]
stack_name = "batchgate-dev"

[dev.deploy.parameters]
region = "us-east-1"
capabilities = "CAPABILITY_IAM"

[prod.deploy.parameters]
stack_name = "batchgate-prod"
region = "ap-northeast-1"
profile = "prod-ops"
"""


def create_output_stack(harness: CliHarness, name: str, history: bool = True) -> None:
    """A CloudFormation stack whose outputs name the harness's resources, as template.yaml's do
    (without `history`: as a stack deployed before the history function)."""
    outputs = {
        "JobTableName": harness.stack.settings.table_name,
        "JobsQueueUrl": harness.queue_url,
        "JobsDeadLetterQueueUrl": harness.jobs_dlq_url,
        "TrackDeadLetterQueueUrl": harness.track_dlq_url,
        "TrackFunctionName": harness.track_function,
    }
    if history:
        outputs["HistoryDeadLetterQueueUrl"] = harness.history_dlq_url
        outputs["HistoryFunctionName"] = harness.history_function
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"{name}-x"}}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=name, TemplateBody=json.dumps(template)
    )


def test_stack_outputs_name_the_resources(harness: CliHarness) -> None:
    create_output_stack(harness, "batchgate-dev")
    job = harness.add(listed_job(1, JobStatus.SUCCEEDED))
    result = harness.run(
        "--stack", "batchgate-dev", "--region", REGION, "show", job.job_id, "--json", target=False
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["job_id"] == job.job_id
    dlqs = harness.run("dlq", "list", "--json", "--stack", "batchgate-dev", "--region", REGION, target=False)
    assert [queue["queue"] for queue in json.loads(dlqs.stdout)["queues"]] == ["jobs", "track", "history"]
    session = AwsSession(Target(stack="batchgate-dev", region=REGION))
    assert session.resource("history_function") == harness.history_function


def test_all_queues_of_a_stack_without_the_history_function(harness: CliHarness) -> None:
    create_output_stack(harness, "batchgate-old", history=False)
    target = ["--stack", "batchgate-old", "--region", REGION]
    dlqs = harness.run("dlq", "list", "--json", *target, target=False)
    assert [queue["queue"] for queue in json.loads(dlqs.stdout)["queues"]] == ["jobs", "track"]
    history = harness.run("dlq", "list", "--queue", "history", *target, target=False)
    assert history.exit_code == 2
    assert (
        "cannot find the history dead-letter queue" in history.stderr
        and "--history-dlq-url" in history.stderr
    )


def test_samconfig_environment_gives_the_stack_name(harness: CliHarness, tmp_path: Path) -> None:
    create_output_stack(harness, "batchgate-dev")
    (tmp_path / "samconfig.toml").write_text(SAMCONFIG)  # the harness runs in tmp_path
    harness.add(listed_job(1, JobStatus.FAILED))
    result = harness.run("--config-env", "dev", "jobs", "--json", target=False)
    assert result.exit_code == 0, result.stderr
    assert [row["status"] for row in json.loads(result.stdout)["jobs"]] == ["FAILED"]
    # "default" is used when nothing is given, and its stack does not exist here.
    missing = harness.run("jobs", target=False)
    assert missing.exit_code == 2 and "stack batchgate not found in us-east-1" in missing.stderr
    unknown = harness.run("--config-env", "staging", "jobs", target=False)
    assert (
        unknown.exit_code == 2
        and "has no environment 'staging' (it has: default, dev, prod)" in unknown.stderr
    )


def test_read_samconfig_merges_global_and_deploy_parameters(tmp_path: Path) -> None:
    path = tmp_path / "samconfig.toml"
    path.write_text(SAMCONFIG)
    dev = read_samconfig(path, "dev")
    assert (dev.stack_name, dev.region, dev.profile) == ("batchgate-dev", "us-east-1", None)
    prod = read_samconfig(path, "prod")
    assert (prod.stack_name, prod.region, prod.profile) == ("batchgate-prod", "ap-northeast-1", "prod-ops")


def test_explicit_samconfig_environment_sets_the_region(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "samconfig.toml"
    path.write_text(SAMCONFIG.replace('profile = "prod-ops"\n', ""))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    session = AwsSession(Target(config_env="prod", config_file=str(path)))
    assert session.region == "ap-northeast-1" and session.stack_name == "batchgate-prod"
    assert (
        AwsSession(Target(config_env="prod", config_file=str(path), region="eu-west-1")).region == "eu-west-1"
    )


def test_local_state_file(harness: CliHarness, tmp_path: Path) -> None:
    state = tmp_path / "local.json"
    state.write_text(
        json.dumps(
            {
                "endpoint_url": None,
                "region": REGION,
                "table_name": harness.stack.settings.table_name,
                "queue_url": harness.queue_url,
                "dlq_urls": {"jobs": harness.jobs_dlq_url, "track": harness.track_dlq_url},
                "cluster": "batchgate-local",
            }
        )
    )
    job = harness.add(listed_job(1, JobStatus.RUNNING))
    result = harness.run("--local", "--local-state", str(state), "jobs", "--json", target=False)
    assert result.exit_code == 0, result.stderr
    assert [row["job_id"] for row in json.loads(result.stdout)["jobs"]] == [job.job_id]
    missing = harness.run("--local", "--local-state", str(tmp_path / "nope.json"), "jobs", target=False)
    assert missing.exit_code == 2 and "start the local stack first" in missing.stderr


def test_local_state_accepts_dlq_urls_as_a_list() -> None:
    state = LocalState.from_dict(
        {
            "endpoint_url": "http://127.0.0.1:4566",
            "region": "us-east-1",
            "dlq_urls": ["http://h/q/batchgate-jobs-dlq", "http://h/q/batchgate-track-dlq"],
        }
    )
    assert state.jobs_dlq_url == "http://h/q/batchgate-jobs-dlq"
    assert state.track_dlq_url == "http://h/q/batchgate-track-dlq"


def test_local_state_names_the_history_function() -> None:
    state = LocalState.from_dict({"history_function": "batchgate-local-history"})
    assert state.resources() == {"history_function": "batchgate-local-history"}


def test_endpoint_comes_from_the_option_the_local_state_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("BATCHGATE_ENDPOINT_URL", "http://127.0.0.1:5000")
    session = AwsSession(Target())
    assert session.endpoint_url == "http://127.0.0.1:5000"
    assert session.client("dynamodb").meta.endpoint_url == "http://127.0.0.1:5000"
    assert session.client("dynamodb") is session.client("dynamodb")  # built once per command
    explicit = AwsSession(Target(endpoint_url="http://localhost:4566"))
    assert explicit.client("sqs").meta.endpoint_url == "http://localhost:4566"
    state = tmp_path / "local.json"
    state.write_text(json.dumps({"endpoint_url": "http://127.0.0.1:4999", "region": "ap-northeast-1"}))
    local = AwsSession(Target(local=True, local_state=str(state)))
    assert local.endpoint_url == "http://127.0.0.1:4999" and local.region == "ap-northeast-1"
    credentials = local._boto.get_credentials()  # the local stack takes any; real ones never go there
    assert credentials is not None and credentials.access_key == "batchgate-local"


def test_missing_resource_names_the_option_that_gives_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    session = AwsSession(Target(overrides={"table_name": "t"}))
    assert session.resource("table_name") == "t"
    with pytest.raises(ConfigurationError, match=r"no stack given to find the jobs queue in.*--queue-url"):
        session.resource("queue_url")
