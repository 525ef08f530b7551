"""Sample attendance import: `python -m attendance.import_file KEY`.

Stands in for the attendance image in the local stack. A key containing "missing" exits 1 (the file is
not there), as a real import does. A key containing "flaky" exits 75 (EX_TEMPFAIL: try again later)
on the job's first attempt ($BATCHGATE_ATTEMPT) and imports on the next. A key containing "slow"
takes a minute (a job to stop, cancel or lose its worker under).
"""

from __future__ import annotations

import os
import sys
import time

ROWS = 3
ROW_SECONDS = 0.2
TEMPORARY_FAILURE = 75
SLOW_SECONDS = 60.0


def main(arguments: list[str]) -> int:
    if len(arguments) != 1:
        print("usage: attendance.import_file KEY", file=sys.stderr)
        return 2
    key = arguments[0]
    print(f"attendance: reading {key}")
    if "missing" in key:
        print(f"attendance: {key}: no such object", file=sys.stderr)
        return 1
    if "flaky" in key and os.environ.get("BATCHGATE_ATTEMPT", "1") == "1":
        print(f"attendance: {key}: storage busy, try again later", file=sys.stderr)
        return TEMPORARY_FAILURE
    if "slow" in key:
        print(f"attendance: {key}: a large file", flush=True)
        time.sleep(SLOW_SECONDS)
    for row in range(1, ROWS + 1):
        time.sleep(ROW_SECONDS)
        print(f"attendance: {key}: row {row} imported")
    print(f"attendance: {key}: {ROWS} rows imported")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
