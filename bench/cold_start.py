"""Cold start: what importing each handler module costs in a fresh process, against a bare
`import boto3` in the same run, and the size of what `sam build` packages.

`sam build` of template.yaml runs first, into a temporary folder (offline; the layer is built with
BuildMethod python3.12). Each sample is then a new interpreter that times one import (`import app`,
or `import boto3`) and nothing else, from what is deployed: the function's build folder and the
layer's python/ folder on its PYTHONPATH, no site-packages of this environment (`python -S`), the
function's environment from template.yaml (its Globals) and Lambda's own variables, so that
Powertools (and the X-Ray SDK behind Tracer) initialises as in Lambda. The four take turns, `RUNS`
times; medians. One more run with `python -X importtime` per handler tells where the time goes. If
`sam build` fails, the imports come from the source tree and this environment's site-packages, and
the section says so.

Package sizes: the files of each function and of the layer summed, and zipped as Lambda receives them.

Run with `python -m bench` (all benchmarks) or `python -m bench.cold_start`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from moto import mock_aws

from bench._figures import Figure, at_most, figures_table, median, spread
from bench._in_process import DISPATCH, REGION, ROOT, SWEEP, TRACK, build_stack

RUNS = 9
TARGET_RATIO = 1.5
BASELINE = "import boto3"
TIMED_IMPORT = (
    "import time; started = time.perf_counter(); import {module}; print(time.perf_counter() - started)"
)
LAYER = "BatchgateLayer"
FUNCTIONS = (DISPATCH, TRACK, SWEEP)
SAM_BUILD_TIMEOUT_SECONDS = 600
TOP_PACKAGES = 6


@dataclass
class Subject:
    name: str
    module: str
    folder: Path
    environment: dict[str, str]
    seconds: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class PackageSize:
    name: str
    files: int
    bytes: int
    zipped_bytes: int


@dataclass
class Measurement:
    subjects: list[Subject]
    breakdowns: dict[str, list[tuple[str, float]]]
    sizes: list[PackageSize]
    build_error: str | None


def lambda_environment(
    function: str, variables: Mapping[str, str], task_root: Path, layer: Path
) -> dict[str, str]:
    """What a Python Lambda process has: the function's variables and the runtime's own, nothing else
    of this shell. Lambda gives the execution role's credentials as variables; stand-ins here, so
    that creating a client resolves them at once and never asks an instance metadata endpoint."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "en_US.UTF-8",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "LAMBDA_TASK_ROOT": str(task_root),
        "PYTHONPATH": f"{task_root}{os.pathsep}{layer}",
        **variables,
    }


def subjects(build: Path | None) -> list[Subject]:
    """The baseline and the three handlers, from the build output (or the source tree without one)."""
    with mock_aws():
        stack = build_stack()
        environments = {function: stack.environment(function) for function in FUNCTIONS}
    layer = build / LAYER / "python" if build else ROOT / "layers" / "batchgate"
    handlers = []
    for function in FUNCTIONS:
        folder = build / function if build else stack.function(function).code_path
        environment = lambda_environment(function, environments[function], folder, layer)
        handlers.append(Subject(function, "app", folder, environment))
    dispatch = handlers[0]
    return [Subject(BASELINE, "boto3", dispatch.folder, dispatch.environment), *handlers]


def python_command(build: Path | None) -> list[str]:
    # Only what is deployed, when there is a build: none of this environment's site-packages.
    return [sys.executable, "-S"] if build else [sys.executable]


def timed_import(subject: Subject, python: list[str]) -> float:
    completed = subprocess.run(
        [*python, "-c", TIMED_IMPORT.format(module=subject.module)],
        cwd=subject.folder,
        env=subject.environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(completed.stdout.strip().splitlines()[-1])


def import_breakdown(subject: Subject, python: list[str]) -> list[tuple[str, float]]:
    """Self time per top-level package of one `-X importtime` run, largest first."""
    completed = subprocess.run(
        [*python, "-X", "importtime", "-c", f"import {subject.module}"],
        cwd=subject.folder,
        env=subject.environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return importtime_by_package(completed.stderr)[:TOP_PACKAGES]


def importtime_by_package(stderr: str) -> list[tuple[str, float]]:
    """`-X importtime` lines (`import time: self [us] | cumulative | name`) summed per top-level
    package, in seconds, largest first."""
    totals: Counter[str] = Counter()
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = (part.strip() for part in line[len("import time:") :].split("|"))
        totals[name.split(".")[0]] += int(self_us)
    return [(package, micros / 1e6) for package, micros in totals.most_common()]


def folder_size(folder: Path, scratch: Path) -> PackageSize:
    paths = [path for path in sorted(folder.rglob("*")) if path.is_file()]
    archive = scratch / f"{folder.name}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in paths:
            bundle.write(path, path.relative_to(folder))
    total = sum(path.stat().st_size for path in paths)
    return PackageSize(folder.name, len(paths), total, archive.stat().st_size)


def sam_build(build: Path) -> str | None:
    """`sam build` of the template into `build`; the reason when it fails."""
    sam = Path(sys.executable).with_name("sam")
    found = str(sam) if sam.exists() else shutil.which("sam")
    if found is None:
        return "sam is not installed"
    environment = {
        **os.environ,
        # sam build looks for python3.12 on PATH: the interpreter running this is one.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SAM_CLI_TELEMETRY": "0",
    }
    command = [found, "build", "--template-file", str(ROOT / "template.yaml"), "--build-dir", str(build)]
    try:
        subprocess.run(
            command,
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            check=True,
            timeout=SAM_BUILD_TIMEOUT_SECONDS,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
        output = getattr(error, "stderr", None) or getattr(error, "output", None) or ""
        last = str(output).strip().splitlines()[-1:] or [str(error)]
        return f"sam build failed: {last[0]}"
    return None


def measure() -> Measurement:
    with tempfile.TemporaryDirectory(prefix="batchgate-bench-build-") as scratch:
        build = Path(scratch) / "build"
        build_error = sam_build(build)
        built = None if build_error else build
        sizes = [folder_size(build / name, Path(scratch)) for name in (*FUNCTIONS, LAYER)] if built else []
        measured = subjects(built)
        python = python_command(built)
        for subject in measured:
            timed_import(subject, python)  # writes the .pyc files (Lambda's read-only /opt gets none)
        for _ in range(RUNS):
            for subject in measured:
                subject.seconds.append(timed_import(subject, python))
        breakdowns = {subject.name: import_breakdown(subject, python) for subject in measured[1:]}
    return Measurement(measured, breakdowns, sizes, build_error)


def _size(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def report(measurement: Measurement) -> str:
    baseline, *handlers = measurement.subjects
    base = median(baseline.seconds)
    source = (
        f"from the source tree and this environment's site-packages ({measurement.build_error})"
        if measurement.build_error
        else "from the `sam build` output (function folder + layer, `python -S`)"
    )
    figures = [
        at_most(
            f"cold start: import of the {subject.name} handler / bare import boto3",
            median(subject.seconds) / base,
            TARGET_RATIO,
            f"≤ {TARGET_RATIO}x",
            f"{median(subject.seconds) / base:.2f}x "
            f"({median(subject.seconds) * 1000:.0f} ms vs {base * 1000:.0f} ms)",
        )
        for subject in handlers
    ]
    if measurement.sizes:
        figures.append(
            Figure(
                "deployed package size, zipped (sam build)",
                "-",
                ", ".join(f"{size.name} {_size(size.zipped_bytes)}" for size in measurement.sizes),
            )
        )
    lines = [
        "## Cold start (`bench/cold_start.py`)",
        "",
        f"Fresh-process import time of each handler module, {source}, with the function's environment "
        f"from template.yaml and Lambda's runtime variables, against `{BASELINE}` from the same place "
        f"in the same run; the four take turns, {RUNS} runs each, median (min-max). The handler's "
        "import includes its module-level set-up: settings, the catalog and the boto3 clients it keeps "
        "for the container (the self time of `app` in the breakdown). Lambda's file system is "
        "read-only and the layer ships no .pyc files, so there every cold start also compiles the "
        "layer's modules: these times are a lower bound. The clients are made at import on purpose: "
        "Lambda runs the init phase on a full vCPU and the handler on a share proportional to its "
        "memory, so a client made on first use would cost the first invocation more than it saves "
        "here.",
        "",
        figures_table(figures),
        "",
        "| import | time | vs import boto3 | most self time (-X importtime, one run) |",
        "|---|---|---:|---|",
        f"| {BASELINE} | {spread(baseline.seconds, 1000, ' ms')} | 1.00x | |",
    ]
    for subject in handlers:
        top = ", ".join(
            f"{package} {seconds * 1000:.0f} ms" for package, seconds in measurement.breakdowns[subject.name]
        )
        lines.append(
            f"| {subject.name} `import app` | {spread(subject.seconds, 1000, ' ms')} | "
            f"{median(subject.seconds) / base:.2f}x | {top} |"
        )
    lines += ["", "Package sizes (`sam build` into a temporary folder):", ""]
    if measurement.sizes:
        lines += [
            "| artifact | files | unzipped | zipped |",
            "|---|---:|---:|---:|",
            *(
                f"| {size.name} | {size.files} | {_size(size.bytes)} | {_size(size.zipped_bytes)} |"
                for size in measurement.sizes
            ),
        ]
    else:
        lines.append(f"- not measured: {measurement.build_error}")
    lines.append("")
    return "\n".join(lines)


def run() -> str:
    return report(measure())


if __name__ == "__main__":
    print(run())
