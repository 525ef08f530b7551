"""Cold start: what importing each handler module costs in a fresh process, against a bare
`import boto3` in the same run, and the size of what `sam build` packages.

`sam build` of template.yaml runs first, into a temporary folder (the layer is built by
layers/batchgate/layer_build.py: pip needs the package registry). Each sample is then a new
interpreter that times one import (`import app`, or `import boto3`) and nothing else, from what is
deployed: the function's build folder and the layer's python/ folder on its PYTHONPATH, no
site-packages of this environment (`python -S`), the function's environment from template.yaml (its
Globals) and Lambda's own variables, so that Powertools (and the X-Ray SDK behind Tracer)
initialises as in Lambda. The build's files are dated 1980-01-01, as Lambda gets them from the zip
`sam build` makes, and nothing can write bytecode (`PYTHONDONTWRITEBYTECODE`: /opt and /var/task are
read-only), so only the bytecode the build ships is used. Each handler, two baselines (`import
boto3`, and that plus making the functions' two clients) and three floors (a handler's clients
and the Powertools it uses: without the batch utility, with it for SQS, and with it for DynamoDB
streams with the DynamoDB client only; what a handler needs before batchgate's own code) take
turns, `RUNS` times; medians. One more run with `python -X importtime` per handler tells where the
time goes, and `BARE_RUNS` runs of the dispatch handler's import from a
copy of the layer without its bytecode show what the build's bytecode saves. If `sam build` fails,
the imports come from the source tree and this environment's site-packages, and the section says so.

What is judged is batchgate's own code: each handler's import less its floor, round by round, at most
`TARGET_RATIO` times the bare `import boto3` of the same round. The clients and the Tracer stay made
at init (AWS's advice), so they are in the floor, not in what is judged; the handlers' ratios to the
bare import are reported.

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

from bench._figures import Figure, at_most, figures_table, median, paired_ratio, spread
from bench._in_process import DISPATCH, HISTORY, REGION, ROOT, SWEEP, TRACK, build_stack

# Rounds. On a shared 2-core machine one round's handler-less-floor difference spreads over tens of
# milliseconds either way (a neighbour's load slows whichever import it meets): with 15 rounds the
# median of a 20 ms difference moved by about 5 ms from one run to the next.
RUNS = 31
BARE_RUNS = 3
# The date of every file Lambda extracts from a zip made by `sam build` (entries carry no time).
ZIP_EPOCH = 315532800  # 1980-01-01T00:00:00Z
# batchgate's own import cost (a handler's import less its floor, below) against a bare `import boto3`.
TARGET_RATIO = 0.15
BASELINE = "import boto3"
# What any handler that makes its clients at init (AWS's advice) pays before its own code: the
# functions' two clients, made by the same code as theirs.
WITH_CLIENTS = "import boto3 + the DynamoDB and ECS clients"
CLIENTS_STATEMENT = (
    "import boto3; from batchgate.adapters.aws_clients import dynamodb_client, ecs_client; "
    "dynamodb_client(); ecs_client()"
)
# What each handler needs before any batchgate code runs: its clients, and Powertools made as
# batchgate.adapters.telemetry makes it; dispatch also processes its SQS batches with the batch utility, the
# history function its stream batches (and keeps the DynamoDB client only). The handler's time above
# its floor is the cost of batchgate's own code.
POWERTOOLS = "Powertools Logger, Metrics, Tracer"
POWERTOOLS_SET_UP = (
    "from aws_lambda_powertools import Logger, Metrics, Tracer; "
    "Logger(); Metrics(); Tracer(patch_modules=('botocore',))"
)
WITH_POWERTOOLS = f"{WITH_CLIENTS} + {POWERTOOLS}"
POWERTOOLS_STATEMENT = f"{CLIENTS_STATEMENT}; {POWERTOOLS_SET_UP}"
WITH_BATCH = f"{WITH_POWERTOOLS}, batch utility"
BATCH_STATEMENT = (
    f"{POWERTOOLS_STATEMENT}; from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, "
    "EventType; import aws_lambda_powertools.utilities.data_classes.sqs_event; "
    "AsyncBatchProcessor(event_type=EventType.SQS)"
)
WITH_STREAM_BATCH = f"import boto3 + the DynamoDB client + {POWERTOOLS}, batch utility (DynamoDB streams)"
STREAM_BATCH_STATEMENT = (
    "import boto3; from batchgate.adapters.aws_clients import dynamodb_client; dynamodb_client(); "
    f"{POWERTOOLS_SET_UP}; from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType; "
    "import aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event; "
    "BatchProcessor(event_type=EventType.DynamoDBStreams)"
)
FLOORS = {DISPATCH: WITH_BATCH, TRACK: WITH_POWERTOOLS, HISTORY: WITH_STREAM_BATCH, SWEEP: WITH_POWERTOOLS}
TIMED_IMPORT = "import time; started = time.perf_counter(); {statement}; print(time.perf_counter() - started)"
LAYER = "BatchgateLayer"
FUNCTIONS = (DISPATCH, TRACK, HISTORY, SWEEP)
SAM_BUILD_TIMEOUT_SECONDS = 600
TOP_PACKAGES = 6


@dataclass
class Subject:
    name: str
    statement: str
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
    subjects: list[Subject]  # the baselines and floors, then the handlers (`subjects()`)
    breakdowns: dict[str, list[tuple[str, float]]]
    sizes: list[PackageSize]
    build_error: str | None
    # The dispatch handler's import when the layer has no bytecode (empty without a build).
    without_bytecode: list[float] = field(default_factory=list)


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
        # Lambda's /opt and /var/task are read-only: a module without shipped bytecode is compiled
        # by every cold start, and nothing is kept for the next one.
        "PYTHONDONTWRITEBYTECODE": "1",
        **variables,
    }


def subjects(build: Path | None) -> list[Subject]:
    """The two baselines, the three floors and the four handlers, from the build output (or the
    source tree without one)."""
    with mock_aws():
        stack = build_stack()
        environments = {function: stack.environment(function) for function in FUNCTIONS}
    layer = build / LAYER / "python" if build else ROOT / "layers" / "batchgate"
    handlers = []
    for function in FUNCTIONS:
        folder = build / function if build else stack.function(function).code_path
        environment = lambda_environment(function, environments[function], folder, layer)
        handlers.append(Subject(function, "import app", folder, environment))
    dispatch = handlers[0]
    return [
        Subject(BASELINE, BASELINE, dispatch.folder, dispatch.environment),
        Subject(WITH_CLIENTS, CLIENTS_STATEMENT, dispatch.folder, dispatch.environment),
        Subject(WITH_POWERTOOLS, POWERTOOLS_STATEMENT, dispatch.folder, dispatch.environment),
        Subject(WITH_BATCH, BATCH_STATEMENT, dispatch.folder, dispatch.environment),
        Subject(WITH_STREAM_BATCH, STREAM_BATCH_STATEMENT, dispatch.folder, dispatch.environment),
        *handlers,
    ]


def python_command(build: Path | None) -> list[str]:
    # Only what is deployed, when there is a build: none of this environment's site-packages.
    return [sys.executable, "-S"] if build else [sys.executable]


def timed_import(subject: Subject, python: list[str]) -> float:
    completed = subprocess.run(
        [*python, "-c", TIMED_IMPORT.format(statement=subject.statement)],
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
        [*python, "-X", "importtime", "-c", subject.statement],
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


def as_deployed(build: Path) -> None:
    """Dates every file as Lambda gets it from the build's zip: timestamp-based bytecode goes stale."""
    for path in build.rglob("*"):
        os.utime(path, (ZIP_EPOCH, ZIP_EPOCH), follow_symlinks=False)


def without_bytecode(subject: Subject, build: Path, scratch: Path) -> Subject:
    """The same import from a copy of the layer with no bytecode, as the python3.12 builder ships it."""
    layer = scratch / "layer-without-bytecode"
    shutil.copytree(build / LAYER / "python", layer, ignore=shutil.ignore_patterns("__pycache__"))
    environment = dict(subject.environment)
    environment["PYTHONPATH"] = f"{subject.folder}{os.pathsep}{layer}"
    return Subject(f"{subject.name}, layer without bytecode", subject.statement, subject.folder, environment)


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
        if built:
            as_deployed(built)
        measured = subjects(built)
        python = python_command(built)
        for subject in measured:
            timed_import(subject, python)  # warms the file system cache only: no bytecode is written
        for _ in range(RUNS):
            for subject in measured:
                subject.seconds.append(timed_import(subject, python))
        handlers = [subject for subject in measured if subject.name in FUNCTIONS]
        breakdowns = {subject.name: import_breakdown(subject, python) for subject in handlers}
        bare = without_bytecode(handlers[0], built, Path(scratch)) if built else None
        bare_seconds = [timed_import(bare, python) for _ in range(BARE_RUNS)] if bare else []
    return Measurement(measured, breakdowns, sizes, build_error, bare_seconds)


def _size(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def report(measurement: Measurement) -> str:
    by_name = {subject.name: subject for subject in measurement.subjects}
    baseline, with_clients = by_name[BASELINE], by_name[WITH_CLIENTS]
    handlers = [by_name[function] for function in FUNCTIONS]
    base = median(baseline.seconds)
    source = (
        f"from the source tree and this environment's site-packages ({measurement.build_error})"
        if measurement.build_error
        else "from the `sam build` output (function folder + layer, `python -S`)"
    )

    def ratio(subject: Subject, to: Subject = baseline) -> float:
        return paired_ratio(subject.seconds, to.seconds)

    figures = []
    for subject in handlers:
        floor = by_name[FLOORS[subject.name]]
        # batchgate's own code: the handler less its floor, round by round.
        own = [handler - rest for handler, rest in zip(subject.seconds, floor.seconds, strict=True)]
        own_ratio = paired_ratio(own, baseline.seconds)
        figures.append(
            at_most(
                f"cold start: own code of the {subject.name} handler (its import above its floor) / "
                "bare import boto3",
                own_ratio,
                TARGET_RATIO,
                f"≤ {TARGET_RATIO}x",
                f"{own_ratio:.2f}x ({median(own) * 1000:.0f} ms vs {base * 1000:.0f} ms)",
            )
        )
    figures += [
        Figure(
            f"cold start: import of the {subject.name} handler / bare import boto3",
            "-",
            f"{ratio(subject):.2f}x ({median(subject.seconds) * 1000:.0f} ms vs {base * 1000:.0f} ms)",
        )
        for subject in handlers
    ]
    figures += [
        Figure(
            f"cold start: import of the {subject.name} handler / {WITH_CLIENTS}",
            "-",
            f"{ratio(subject, with_clients):.2f}x ({median(subject.seconds) * 1000:.0f} ms vs "
            f"{median(with_clients.seconds) * 1000:.0f} ms)",
        )
        for subject in handlers
    ]
    figures += [
        Figure(
            f"cold start: {by_name[FLOORS[subject.name]].name} (the {subject.name} handler's floor) / "
            "bare import boto3",
            "-",
            f"{ratio(by_name[FLOORS[subject.name]]):.2f}x",
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
        f"in the same run, and against `{BASELINE}` that then makes the two clients every function keeps "
        "(DynamoDB, ECS; by batchgate.adapters.aws_clients, as the functions make them). Each handler also "
        "has "
        "a floor: what it needs before any batchgate code runs, its clients and Powertools made as "
        "batchgate.adapters.telemetry makes them (Logger, Metrics, Tracer patching botocore), for dispatch "
        "the batch utility with its SQS data class, and for the history function (which keeps the "
        "DynamoDB client only) the batch utility with its DynamoDB stream data class; the handler's "
        "time above its floor is batchgate's own code, and that is what is judged: at most "
        f"{TARGET_RATIO}x a bare `{BASELINE}` per handler (the ratios to the bare import are reported). "
        f"The {len(measurement.subjects)} imports take turns, "
        f"{RUNS} runs each: times are medians (min-max), ratios the "
        "median of each round's ratio (a round's imports run back to back, so a machine that slows "
        "down for a while slows both sides of it). The handler's "
        "import includes its module-level set-up: settings, the catalog and the boto3 clients it keeps "
        "for the container (the self time of `app` in the breakdown). The files are dated 1980-01-01, "
        "as Lambda extracts them from `sam build`'s zip, and no bytecode can be written (Lambda's file "
        "system is read-only): only the bytecode the layer build ships is used. The clients are made at "
        "import on purpose, as AWS advises: with provisioned concurrency (or SnapStart) the init phase "
        "runs before any request arrives, and a client made on first use would be paid by a request; "
        "and the handler runs on a CPU share proportional to its memory (512 MB: under a third of a "
        "vCPU), while the init phase has been measured to run unthrottled below 3 GB "
        "(https://bitesizedserverless.com/bite/lambda-cold-start-bootstrap/): the same work done on "
        "first use would make a real cold start longer.",
        "",
        figures_table(figures),
        "",
        "| import | time | vs import boto3 | most self time (-X importtime, one run) |",
        "|---|---|---:|---|",
        f"| {BASELINE} | {spread(baseline.seconds, 1000, ' ms')} | 1.00x | |",
        *(
            f"| {floor.name} | {spread(floor.seconds, 1000, ' ms')} | {ratio(floor):.2f}x | |"
            for floor in (
                with_clients,
                *(by_name[name] for name in (WITH_POWERTOOLS, WITH_BATCH, WITH_STREAM_BATCH)),
            )
        ),
    ]
    for subject in handlers:
        top = ", ".join(
            f"{package} {seconds * 1000:.0f} ms" for package, seconds in measurement.breakdowns[subject.name]
        )
        lines.append(
            f"| {subject.name} `import app` | {spread(subject.seconds, 1000, ' ms')} | "
            f"{ratio(subject):.2f}x | {top} |"
        )
    if measurement.without_bytecode:
        bare = median(measurement.without_bytecode)
        dispatch = median(handlers[0].seconds)
        lines += [
            "",
            f"Without the layer's bytecode (a copy of the layer with no `__pycache__`, as the python3.12 "
            f"builder ships it), the {handlers[0].name} handler's import compiles every module it loads: "
            f"{spread(measurement.without_bytecode, 1000, ' ms')}, {bare / dispatch:.1f}x the import "
            f"with it ({bare / base:.2f}x bare import boto3 with bytecode).",
        ]
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
