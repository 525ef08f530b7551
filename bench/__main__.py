"""Run every benchmark module of this folder (each has `run() -> str`, a markdown section) and write
their sections, in one file, to bench/results.md."""

from __future__ import annotations

import importlib
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.md"


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
    header = (
        "# Benchmark results\n\n"
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with Python {platform.python_version()} on "
        f"{platform.system()} {platform.machine()} by `make bench` (`python -m bench`). Numbers are as "
        "measured in that one run.\n"
    )
    RESULTS.write_text("\n".join([header, *sections]))
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
