"""Sample report export: `python -m reports.export NAME [PERIOD] [FORMAT]`.

Stands in for the reports image in the local stack. NAME "noop" returns at once (the benchmark's
empty command); NAME or PERIOD "slow" runs for ten minutes, long past any local timeout, so that the
stack has something to stop. A stop (SIGTERM) is reported and ends the export with code 143, as a
container stopped by ECS does.
"""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType

SLOW_SECONDS = 600
PROGRESS_SECONDS = 1.0
EXPORT_SECONDS = 0.5
TERMINATED = 128 + signal.SIGTERM


def _stop(signum: int, frame: FrameType | None) -> None:
    print("reports: SIGTERM received, export abandoned", flush=True)
    sys.exit(TERMINATED)


def main(arguments: list[str]) -> int:
    if not arguments:
        print("usage: reports.export NAME [PERIOD] [FORMAT]", file=sys.stderr)
        return 2
    name = arguments[0]
    if name == "noop":
        return 0
    period = arguments[1] if len(arguments) > 1 else "latest"
    fmt = arguments[2] if len(arguments) > 2 else "csv"
    signal.signal(signal.SIGTERM, _stop)
    print(f"reports: exporting {name} for {period} as {fmt}", flush=True)
    seconds = SLOW_SECONDS if "slow" in (name, period) else EXPORT_SECONDS
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        time.sleep(min(PROGRESS_SECONDS, seconds - elapsed))
        if seconds > PROGRESS_SECONDS:
            print(f"reports: {name}: {min(elapsed + PROGRESS_SECONDS, seconds):.0f}s", flush=True)
    print(f"reports: {name} for {period} written ({fmt})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
