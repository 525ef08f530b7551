"""Builds the BatchgateLayer for Lambda: `sam build` runs it through this folder's Makefile.

What it adds to a plain `pip install` of the requirements, and why:
- Only what requirements.txt locks: every package pinned with the hashes of its files
  (`--require-hashes`), so a build installs exactly the wheels that were reviewed, or fails.
- Wheels for the layer's platform (the template's Architecture: arm64 by default, or x86_64; CPython
  3.12), whatever machine builds it. The lock holds the hashes of every wheel of each release, so both
  platforms install from it.
- botocore keeps the models of the services the batchgate package calls, not all ~400: creating the
  first client lists every model folder, and the zip Lambda downloads shrinks by about two thirds.
- Creating a client parses endpoints.json (1.2 MB, every service's endpoints) and the service's model,
  mostly API documentation that only docstrings read. endpoints.json keeps the kept services, and
  their models lose the documentation and are stored unzipped: each function's first client is made
  in about half the time.
- Every module is compiled to bytecode. /opt is read-only in Lambda, so without .pyc files each cold
  start compiles everything it imports again. The bytecode is hash-based and unchecked, because `sam
  build` zips files with no timestamps (1980-01-01): timestamp-based .pyc would never match their
  sources there. Paths in the bytecode are /opt/python/..., where Lambda puts the layer, so tracebacks
  name the files ops can find.

Run: python3.12 layer_build.py ARTIFACTS_DIR [arm64|x86_64]
"""

from __future__ import annotations

import compileall
import gzip
import json
import py_compile
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
PACKAGE = HERE / "batchgate"
# Where Lambda extracts a layer; Python layers keep their packages in python/ under it.
DEPLOYED_SITE = "/opt/python"
# template.yaml's Architecture parameter (the functions' and the layer's) -> the wheels' platform tag.
PLATFORMS = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}
DEFAULT_ARCHITECTURE = "arm64"
RUNTIME_VERSION = (3, 12)
# The services the layer's part of the package creates clients for (a test keeps this in step with
# the code).
BOTOCORE_SERVICES = frozenset({"dynamodb", "ecs", "events", "sqs"})
# Parts of the package that never run in Lambda.
NOT_SHIPPED = ("ops", "client.py", "worker")
# Model keys that only botocore's documentation (docstrings, generated docs) reads.
DOCUMENTATION_KEYS = frozenset({"documentation", "documentationUrl"})
# Read by botocore's documentation only.
EXAMPLES = "examples-1.json"
SERVICE_MODELS = ("service-2.json", "service-2.json.gz")


def pip_platform(architecture: str) -> tuple[str, ...]:
    """pip's options for wheels that run on Lambda's python3.12 runtime of that architecture."""
    if architecture not in PLATFORMS:
        raise SystemExit(f"unknown architecture {architecture!r}: one of {', '.join(PLATFORMS)}")
    return ("--platform", PLATFORMS[architecture], "--implementation", "cp", "--python-version", "3.12")


def install_requirements(
    site: Path, requirements: Path = REQUIREMENTS, architecture: str = DEFAULT_ARCHITECTURE
) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--only-binary=:all:",
            "--require-hashes",
            *pip_platform(architecture),
            "--target",
            str(site),
            "-r",
            str(requirements),
        ],
        check=True,
    )
    # Console scripts of the requirements (jmespath's): nothing in Lambda runs them.
    shutil.rmtree(site / "bin", ignore_errors=True)


def copy_package(site: Path, package: Path = PACKAGE) -> None:
    """Copies the runtime part of the package: what the functions import. Ops tooling (`ops/`) and the
    application's client never run in Lambda."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", *NOT_SHIPPED)
    shutil.copytree(package, site / package.name, ignore=ignore, dirs_exist_ok=True)


def prune_botocore_models(site: Path, keep: Iterable[str] = BOTOCORE_SERVICES) -> list[str]:
    """Removes the model folders of services not in `keep`; returns the services removed. The shared
    files (endpoints.json, partitions.json, retry and default settings) stay."""
    data = site / "botocore" / "data"
    kept = set(keep)
    missing = sorted(kept - {path.name for path in data.iterdir() if path.is_dir()})
    if missing:
        raise SystemExit(f"botocore has no model for {', '.join(missing)}")
    removed = sorted(path.name for path in data.iterdir() if path.is_dir() and path.name not in kept)
    for name in removed:
        shutil.rmtree(data / name)
    return removed


def read_model(path: Path) -> Any:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as model:
        return json.load(model)


def without_documentation(model: Any) -> Any:
    """The model with every documentation string removed. Only string values go: a structure member
    that happens to be named "documentation" is a shape reference (an object) and stays."""
    if isinstance(model, dict):
        return {
            key: without_documentation(value)
            for key, value in model.items()
            if not (key in DOCUMENTATION_KEYS and isinstance(value, str))
        }
    if isinstance(model, list):
        return [without_documentation(value) for value in model]
    return model


def slim_service_models(site: Path) -> set[str]:
    """Rewrites every kept model file as plain JSON without documentation (botocore reads `.json`
    before `.json.gz`) and drops the examples; returns the services' endpoint prefixes, the keys of
    their entries in endpoints.json."""
    prefixes: set[str] = set()
    for path in sorted((site / "botocore" / "data").glob("*/*/*.json*")):
        if path.name == EXAMPLES:
            path.unlink()
            continue
        model = without_documentation(read_model(path))
        if path.name in SERVICE_MODELS:
            prefixes.add(model["metadata"]["endpointPrefix"])
        path.unlink()
        path.with_name(path.name.removesuffix(".gz")).write_text(json.dumps(model, separators=(",", ":")))
    return prefixes


def prune_endpoints(site: Path, endpoint_prefixes: Iterable[str]) -> None:
    """Keeps the entries of the given services in every partition of endpoints.json. The partitions'
    regions and defaults stay: they resolve any region."""
    path = site / "botocore" / "data" / "endpoints.json"
    endpoints = read_model(path)
    kept = set(endpoint_prefixes)
    for partition in endpoints["partitions"]:
        partition["services"] = {name: entry for name, entry in partition["services"].items() if name in kept}
    path.write_text(json.dumps(endpoints, separators=(",", ":")))


def compile_bytecode(site: Path, deployed: str = DEPLOYED_SITE) -> None:
    if sys.version_info[:2] != RUNTIME_VERSION:
        # Bytecode is specific to the interpreter's minor version: it must be Lambda's.
        raise SystemExit(f"the layer must be compiled by Python {'.'.join(map(str, RUNTIME_VERSION))}")
    compiled = compileall.compile_dir(
        site,
        ddir=deployed,
        quiet=1,
        workers=0,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    if not compiled:
        raise SystemExit(f"could not compile every module under {site}")


def build_layer(artifacts: Path, architecture: str = DEFAULT_ARCHITECTURE) -> None:
    site = artifacts / "python"
    install_requirements(site, architecture=architecture)
    copy_package(site)
    prune_botocore_models(site)
    prune_endpoints(site, slim_service_models(site))
    compile_bytecode(site)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    build_layer(Path(sys.argv[1]), *sys.argv[2:])
