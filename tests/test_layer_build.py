"""layer_build.py, the BatchgateLayer's build: botocore models kept, bytecode Lambda can use, package copy.

The whole build through `sam build` is checked in test_sam_cli.py."""

from __future__ import annotations

import ast
import json
import marshal
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import botocore
import botocore.session
import layer_build
import pytest
from botocore.exceptions import ClientError, ParamValidationError
from moto import mock_aws

from bench.cold_start import as_deployed

PACKAGE = Path(layer_build.__file__).parent / "batchgate"


def services_the_package_calls() -> set[str]:
    """Every service named by a `client("...")`-style call in the part of the package the layer ships."""
    services: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] in layer_build.NOT_SHIPPED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name.endswith("client") and isinstance(node.args[0].value, str):
                services.add(node.args[0].value)
    return services


def test_the_layer_keeps_the_model_of_every_service_the_package_calls() -> None:
    assert services_the_package_calls() == layer_build.BOTOCORE_SERVICES


def fake_botocore(site: Path, services: list[str]) -> Path:
    data = site / "botocore" / "data"
    for service in services:
        (data / service / "2020-01-01").mkdir(parents=True)
        (data / service / "2020-01-01" / "service-2.json.gz").write_bytes(b"model")
    for shared in ("endpoints.json", "partitions.json", "_retry.json", "sdk-default-configuration.json"):
        (data / shared).write_text("{}")
    return data


def test_pruning_removes_other_services_and_keeps_the_shared_files(tmp_path: Path) -> None:
    data = fake_botocore(tmp_path, ["dynamodb", "ec2", "ecs", "s3", "sqs"])

    removed = layer_build.prune_botocore_models(tmp_path, keep={"dynamodb", "ecs", "sqs"})

    assert removed == ["ec2", "s3"]
    assert sorted(path.name for path in data.iterdir()) == [
        "_retry.json",
        "dynamodb",
        "ecs",
        "endpoints.json",
        "partitions.json",
        "sdk-default-configuration.json",
        "sqs",
    ]


def test_pruning_refuses_a_service_botocore_does_not_have(tmp_path: Path) -> None:
    fake_botocore(tmp_path, ["dynamodb", "ecs"])
    with pytest.raises(SystemExit, match="botocore has no model for sqs"):
        layer_build.prune_botocore_models(tmp_path, keep={"dynamodb", "sqs"})
    # Nothing was removed on the way to the error.
    assert (tmp_path / "botocore" / "data" / "ecs").is_dir()


def test_documentation_strings_go_and_everything_else_stays() -> None:
    model = {
        "documentation": "<p>The service.</p>",
        "operations": {
            "RunTask": {
                "name": "RunTask",
                "documentation": "<p>Runs.</p>",
                "documentationUrl": "https://docs",
            }
        },
        "shapes": {
            "Task": {
                "type": "structure",
                "members": {
                    "taskArn": {"shape": "String", "documentation": "<p>The ARN.</p>"},
                    # A member named "documentation" is a shape reference, not a docstring.
                    "documentation": {"shape": "String"},
                },
                "documentation": "<p>A task.</p>",
            },
            "Tags": {"type": "list", "member": {"shape": "Tag"}},
        },
    }

    assert layer_build.without_documentation(model) == {
        "operations": {"RunTask": {"name": "RunTask"}},
        "shapes": {
            "Task": {
                "type": "structure",
                "members": {"taskArn": {"shape": "String"}, "documentation": {"shape": "String"}},
            },
            "Tags": {"type": "list", "member": {"shape": "Tag"}},
        },
    }


def slimmed_botocore_data(site: Path, services: list[str]) -> Path:
    """A copy of this environment's botocore data for `services`, slimmed as the layer build does."""
    source = Path(botocore.__file__).parent / "data"
    data = site / "botocore" / "data"
    data.mkdir(parents=True)
    for shared in source.glob("*.json"):
        shutil.copy(shared, data)
    for service in services:
        shutil.copytree(source / service, data / service)
    layer_build.prune_endpoints(site, layer_build.slim_service_models(site))
    return data


def test_slimmed_models_are_plain_json_without_examples_and_endpoints_keep_their_services(
    tmp_path: Path,
) -> None:
    data = slimmed_botocore_data(tmp_path, ["dynamodb", "ecs"])

    files = sorted(str(path.relative_to(data)) for path in data.glob("*/*/*"))
    assert files == [
        "dynamodb/2011-12-05/endpoint-rule-set-1.json",
        "dynamodb/2012-08-10/endpoint-rule-set-1.json",
        "dynamodb/2012-08-10/paginators-1.json",
        "dynamodb/2012-08-10/service-2.json",
        "dynamodb/2012-08-10/waiters-2.json",
        "ecs/2014-11-13/endpoint-rule-set-1.json",
        "ecs/2014-11-13/paginators-1.json",
        "ecs/2014-11-13/service-2.json",
        "ecs/2014-11-13/waiters-2.json",
    ]
    assert "documentation" not in (data / "ecs" / "2014-11-13" / "service-2.json").read_text()
    partitions = json.loads((data / "endpoints.json").read_text())["partitions"]
    assert {partition["partition"] for partition in partitions} >= {"aws", "aws-cn", "aws-us-gov"}
    for partition in partitions:
        assert set(partition["services"]) <= {"dynamodb", "ecs"}, partition["partition"]
        assert partition["regions"], partition["partition"]
    aws = next(partition for partition in partitions if partition["partition"] == "aws")
    assert set(aws["services"]) == {"dynamodb", "ecs"}


def test_clients_from_slimmed_models_resolve_endpoints_validate_and_parse_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = slimmed_botocore_data(tmp_path, ["dynamodb", "ecs"])
    # botocore reads AWS_DATA_PATH before its own data.
    monkeypatch.setenv("AWS_DATA_PATH", str(data))
    session = boto3.session.Session(botocore_session=botocore.session.Session())

    with mock_aws():
        dynamodb = session.client("dynamodb", region_name="eu-west-1")
        ecs = session.client("ecs", region_name="cn-north-1")
        # The models in use are the slimmed ones.
        assert dynamodb.meta.service_model.documentation == ""
        assert dynamodb.meta.endpoint_url == "https://dynamodb.eu-west-1.amazonaws.com"
        assert ecs.meta.endpoint_url == "https://ecs.cn-north-1.amazonaws.com.cn"

        dynamodb.create_table(
            TableName="jobs",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.put_item(TableName="jobs", Item={"pk": {"S": "job-1"}, "exit": {"N": "0"}})
        assert dynamodb.get_item(TableName="jobs", Key={"pk": {"S": "job-1"}})["Item"]["exit"] == {"N": "0"}
        with pytest.raises(ClientError) as missing:
            dynamodb.describe_table(TableName="absent")
        assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
        with pytest.raises(ParamValidationError, match="TableName"):
            dynamodb.get_item(Key={"pk": {"S": "job-1"}})  # type: ignore[call-arg]
        ecs_us = session.client("ecs", region_name="us-east-1")
        ecs_us.create_cluster(clusterName="batchgate")
        assert [arn.split("/")[-1] for arn in ecs_us.list_clusters()["clusterArns"]] == ["batchgate"]


def import_value(site: Path) -> str:
    """`sample.VALUE` imported as Lambda does: the files dated 1980, and nothing can be written."""
    as_deployed(site)
    completed = subprocess.run(
        [sys.executable, "-B", "-c", "import sample; print(sample.VALUE)"],
        cwd=site,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout.strip()


def test_bytecode_is_used_whatever_the_source_timestamps_and_names_the_deployed_path(tmp_path: Path) -> None:
    (tmp_path / "sample.py").write_text("VALUE = 'compiled'\n")
    layer_build.compile_bytecode(tmp_path, deployed="/opt/python")
    # The source changes after the build: only bytecode that is used as it is still says "compiled".
    (tmp_path / "sample.py").write_text("VALUE = 'source'\n")

    assert import_value(tmp_path) == "compiled"
    pyc = (tmp_path / "__pycache__" / f"sample.{sys.implementation.cache_tag}.pyc").read_bytes()
    assert int.from_bytes(pyc[4:8], "little") == 0b01  # hash-based, source never checked (PEP 552)
    assert marshal.loads(pyc[16:]).co_filename == "/opt/python/sample.py"


def test_without_the_build_bytecode_the_source_is_compiled_again(tmp_path: Path) -> None:
    # The contrast to the test above: a timestamp-based .pyc does not match 1980-dated files.
    (tmp_path / "sample.py").write_text("VALUE = 'compiled'\n")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tmp_path)], check=True)
    (tmp_path / "sample.py").write_text("VALUE = 'source'\n")

    assert import_value(tmp_path) == "source"


def test_compiling_refuses_another_python_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(layer_build, "RUNTIME_VERSION", (3, 11))
    with pytest.raises(SystemExit, match=r"compiled by Python 3\.11"):
        layer_build.compile_bytecode(tmp_path)


def test_the_package_is_copied_without_local_bytecode(tmp_path: Path) -> None:
    package = tmp_path / "source" / "batchgate"
    (package / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__pycache__" / "__init__.cpython-312.pyc").write_bytes(b"stale")
    (package / "catalog.json").write_text("{}")
    site = tmp_path / "python"

    layer_build.copy_package(site, package)

    assert sorted(path.name for path in (site / "batchgate").iterdir()) == ["__init__.py", "catalog.json"]


ROOT = Path(__file__).resolve().parent.parent
DEVELOPMENT_LOCK = ROOT / "requirements.lock"
# A locked requirement: its name (extras dropped), version and the hashes on its continuation lines.
LOCKED = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})*)", re.M
)


def locked_pins(path: Path) -> dict[str, tuple[str, int]]:
    """Every requirement of a lock file: normalised name -> (version, number of hashes)."""
    return {
        re.sub(r"[-_.]+", "-", name).lower(): (version, hashes.count("--hash="))
        for name, version, hashes in LOCKED.findall(path.read_text())
    }


def requirement_lines(path: Path) -> list[str]:
    """The requirements of a file without comments, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


@pytest.mark.parametrize("lock", [layer_build.REQUIREMENTS, DEVELOPMENT_LOCK], ids=["layer", "development"])
def test_every_locked_requirement_is_pinned_with_hashes(lock: Path) -> None:
    lines = requirement_lines(lock)
    pins = locked_pins(lock)
    assert len(pins) == len(lines) > 0  # nothing unpinned, no option lines that would loosen the lock
    assert all(hashes > 0 for _, hashes in pins.values()), pins


def test_the_layer_ships_the_development_versions_of_what_it_shares() -> None:
    layer, development = locked_pins(layer_build.REQUIREMENTS), locked_pins(DEVELOPMENT_LOCK)
    assert {"aws-lambda-powertools", "boto3", "botocore", "aws-xray-sdk", "fastjsonschema"} <= set(layer)
    assert {name: pin[0] for name, pin in layer.items()} == {name: development[name][0] for name in layer}


def test_the_layer_installs_only_hash_checked_requirements(tmp_path: Path) -> None:
    """pip refuses a requirement without a hash before it downloads anything."""
    unhashed = tmp_path / "requirements.txt"
    unhashed.write_text("six==1.17.0\n")
    with pytest.raises(subprocess.CalledProcessError):
        layer_build.install_requirements(tmp_path / "site", unhashed)
    assert not (tmp_path / "site" / "six.py").exists()


@pytest.mark.parametrize(
    ("architecture", "platform"), [("arm64", "manylinux2014_aarch64"), ("x86_64", "manylinux2014_x86_64")]
)
def test_each_architecture_installs_the_wheels_of_its_platform(architecture: str, platform: str) -> None:
    assert layer_build.pip_platform(architecture) == (
        "--platform",
        platform,
        "--implementation",
        "cp",
        "--python-version",
        "3.12",
    )


def test_an_unknown_architecture_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown architecture 'amd64'"):
        layer_build.pip_platform("amd64")


@pytest.mark.parametrize(("architecture", "extension"), [("arm64", "aarch64"), ("x86_64", "x86_64")])
def test_the_lock_holds_the_hashes_of_both_platforms_wheels(
    tmp_path: Path, architecture: str, extension: str
) -> None:
    """wrapt is the layer's one compiled requirement: its hash-checked wheel for each architecture."""
    wrapt = next(line for line in requirement_lines(layer_build.REQUIREMENTS) if line.startswith("wrapt=="))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(wrapt + "\n")
    layer_build.install_requirements(tmp_path / "site", requirements, architecture)
    assert [path.name for path in (tmp_path / "site" / "wrapt").glob("_wrappers.*.so")] == [
        f"_wrappers.cpython-312-{extension}-linux-gnu.so"
    ]
