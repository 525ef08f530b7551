"""The SAM CLI accepts the template and builds it: `sam validate --lint` and `sam build`.

`sam build` installs the layer's requirements from PyPI, so it needs network access to PyPI; it builds
into a temporary directory and never touches the repository's .aws-sam/.
"""

from __future__ import annotations

import json
import marshal
import os
import shutil
import subprocess
import sys
from pathlib import Path

import layer_build
import pytest
from samcli.lib.providers.sam_function_provider import SamFunctionProvider  # type: ignore[import-untyped]
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider  # type: ignore[import-untyped]

from tests.test_layer_build import locked_pins

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
# The virtual environment's bin: sam itself, and the python3.12 that `sam build` looks for on PATH.
VENV_BIN = Path(sys.executable).parent
VALIDATE_TIMEOUT = 300
BUILD_TIMEOUT = 1200
POWERTOOLS_VERSION = "3.37.0"


def sam_environment(**variables: str) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(
        SAM_CLI_TELEMETRY="0",
        AWS_DEFAULT_REGION="us-east-1",
        PATH=os.pathsep.join([str(VENV_BIN), environment.get("PATH", "")]),
        **variables,
    )
    return environment


def sam_executable() -> str:
    found = shutil.which("sam", path=sam_environment()["PATH"])
    assert found, f"sam is not installed in {VENV_BIN} (make install)"
    return found


def run_sam(
    arguments: list[str], timeout: int, cwd: Path = ROOT, environment: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sam_executable(), *arguments],
        cwd=cwd,
        env=environment or sam_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_sam_validate_lint_is_clean() -> None:
    result = run_sam(["validate", "--lint", "--template-file", str(ROOT / "template.yaml")], VALIDATE_TIMEOUT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "is a valid SAM Template" in output, output


@pytest.mark.parametrize("architecture", [None, "x86_64"])
def test_sam_cli_gives_the_functions_and_the_layer_the_architecture_parameter(
    architecture: str | None,
) -> None:
    overrides = {"Architecture": architecture} if architecture else {}
    stacks, _ = SamLocalStackProvider.get_stacks(str(ROOT / "template.yaml"), parameter_overrides=overrides)
    functions = list(SamFunctionProvider(stacks).get_all())
    assert len(functions) == 5
    for function in functions:
        assert function.architectures == [architecture or "arm64"], function.name
        # What sam build builds the layer for (its build graph) and checks against the functions'.
        assert [layer.build_architecture for layer in function.layers] == [architecture or "arm64"], (
            function.name
        )


# The layer's Makefile learns the architecture from BATCHGATE_LAYER_ARCHITECTURE (arm64 unless set).
@pytest.mark.parametrize(
    ("architecture", "extension"),
    [(None, "aarch64"), ("x86_64", "x86_64")],
    ids=["default-arm64", "x86_64"],
)
def test_sam_build_packages_the_layer_and_both_functions(
    tmp_path: Path, architecture: str | None, extension: str
) -> None:
    build_dir = tmp_path / "build"
    architecture_options = ["--parameter-overrides", f"Architecture={architecture}"] if architecture else []
    environment = sam_environment(BATCHGATE_LAYER_ARCHITECTURE=architecture) if architecture else None
    result = run_sam(
        [
            "build",
            "--template-file",
            str(ROOT / "template.yaml"),
            "--build-dir",
            str(build_dir),
            "--base-dir",
            str(ROOT),
            "--cache-dir",
            str(tmp_path / "cache"),
            # The repository's build settings (cached, parallel); run from tmp_path because sam build
            # keeps its dependency cache in .aws-sam/ under the working directory.
            "--config-file",
            str(ROOT / "samconfig.toml"),
            *architecture_options,
        ],
        BUILD_TIMEOUT,
        cwd=tmp_path,
        environment=environment,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (build_dir / "template.yaml").is_file()

    layer = build_dir / "BatchgateLayer" / "python"
    assert (layer / "batchgate" / "__init__.py").is_file()
    # Package data the handlers load at import time.
    assert (layer / "batchgate" / "catalog.json").is_file()
    assert (layer / "batchgate" / "schemas" / "submit-message-v1.json").is_file()
    # The runtime only: ops tooling and the application's client never run in Lambda.
    assert {path.name for path in (layer / "batchgate").iterdir() if not path.name.startswith("__")} == {
        "adapters",
        "catalog.json",
        "domain",
        "py.typed",
        "schemas",
        "services",
    }
    assert (layer / "aws_lambda_powertools" / "__init__.py").is_file()
    assert (layer / f"aws_lambda_powertools-{POWERTOOLS_VERSION}.dist-info").is_dir()
    assert (layer / "aws_xray_sdk").is_dir()  # the [tracer] extra
    assert (layer / "fastjsonschema").is_dir()  # the [validation] extra
    # boto3 and botocore ship together at the pinned versions, so the layer never pairs the
    # runtime's boto3 with another botocore.
    shipped = {path.name.split("-")[0]: path.name for path in layer.glob("boto*-*.dist-info")}
    pins = locked_pins(ROOT / "layers" / "batchgate" / "requirements.txt")
    assert shipped == {name: f"{name}-{pins[name][0]}.dist-info" for name in ("boto3", "botocore")}

    # layer_build.py: the architecture's wheels, the models of the services the package calls, and
    # bytecode Lambda uses from a read-only /opt (hash-based, with the deployed paths).
    assert [path.name for path in layer.glob("wrapt/_wrappers.*.so")] == [
        f"_wrappers.cpython-312-{extension}-linux-gnu.so"
    ]
    data = layer / "botocore" / "data"
    models = {path.name for path in data.iterdir() if path.is_dir()}
    assert models == layer_build.BOTOCORE_SERVICES
    # Their models without documentation, unzipped; endpoints.json with their entries only.
    assert not list(data.glob("*/*/*.gz")) and not list(data.glob("*/*/examples-1.json"))
    assert '"documentation"' not in (data / "ecs" / "2014-11-13" / "service-2.json").read_text()
    aws = json.loads((data / "endpoints.json").read_text())["partitions"][0]
    # Keyed by endpoint prefix, which is the service name except for DynamoDB Streams.
    prefixes = {"dynamodbstreams": "streams.dynamodb"}
    assert set(aws["services"]) == {prefixes.get(name, name) for name in layer_build.BOTOCORE_SERVICES}
    assert sorted(path.name for path in layer.iterdir() if path.is_file()) == [
        "six.py",
        "typing_extensions.py",
    ]
    sources = list(layer.rglob("*.py"))
    assert len(sources) > 500
    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-312.pyc"
        header = pyc.read_bytes()[:16]
        assert int.from_bytes(header[4:8], "little") == 0b01, pyc
    jobs_pyc = (layer / "batchgate" / "domain" / "__pycache__" / "jobs.cpython-312.pyc").read_bytes()
    assert marshal.loads(jobs_pyc[16:]).co_filename == "/opt/python/batchgate/domain/jobs.py"

    for function in ("DispatchFunction", "TrackFunction", "HistoryFunction", "SweepFunction"):
        assert (build_dir / function / "app.py").is_file(), function
