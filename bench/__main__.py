"""Run every benchmark module of this folder (each has `run() -> str`, a markdown section) and write
their sections, in one file, to bench/results.md; then put the summary of their figures tables into
the README's performance block (between `<!-- bench:start -->` and `<!-- bench:end -->`)."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench._figures import FIGURES_HEADER, FIGURES_RULE, figure_rows, replace_marked_block

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.md"
README = HERE.parent / "README.md"
VERSIONS = ("boto3", "botocore", "aws-lambda-powertools", "moto", "aws-sam-cli")


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> str:
    versions = []
    for name in VERSIONS:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} not installed")
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu_model()}), "
        f"Python {platform.python_version()}; {', '.join(versions)}"
    )


def summary(results: str, measured_at: str, machine: str) -> str:
    """The README's performance block: every figure of the results, one table."""
    return "\n".join(
        [
            f"Measured {measured_at} by `make bench` on {machine}. Every figure comes from that one run; "
            "how each was measured, and more, in [bench/results.md](bench/results.md).",
            "",
            FIGURES_HEADER,
            FIGURES_RULE,
            *figure_rows(results),
        ]
    )


def main() -> None:
    names = sorted(path.stem for path in HERE.glob("*.py") if not path.stem.startswith("_"))
    sections = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        run = getattr(module, "run", None)
        if run is None:
            continue
        started = time.monotonic()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        sections.append(run())
        print(f"bench: {name} took {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    measured_at = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    machine = machine_description()
    header = (
        "# Benchmark results\n\n"
        f"Measured {measured_at} on {machine} by `make bench` (`python -m bench`). Numbers are as "
        "measured in that one run.\n"
    )
    results = "\n".join([header, *sections])
    RESULTS.write_text(results)
    README.write_text(replace_marked_block(README.read_text(), summary(results, measured_at, machine)))
    print(results)


if __name__ == "__main__":
    main()
