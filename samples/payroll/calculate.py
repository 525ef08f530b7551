"""Sample payroll calculation: `python -m payroll.calculate PERIOD [COMPANY]`.

Stands in for the payroll image in the local stack. The period "fail" makes it exit 3, as a real
calculation does when its input does not validate.
"""

from __future__ import annotations

import os
import sys
import time

STEP_SECONDS = 0.3
FAILED_VALIDATION = 3


def main(arguments: list[str]) -> int:
    if not arguments:
        print("usage: payroll.calculate PERIOD [COMPANY]", file=sys.stderr)
        return 2
    period, companies = arguments[0], arguments[1:] or ["acme", "globex", "initech"]
    dry_run = os.environ.get("PAYROLL_DRY_RUN", "").lower() in ("1", "true", "yes")
    job = os.environ.get("BATCHGATE_JOB_ID", "-")
    noun = "company" if len(companies) == 1 else "companies"
    print(f"payroll {period}: {len(companies)} {noun} (job {job}{', dry run' if dry_run else ''})")
    if period == "fail":
        print(f"payroll {period}: period does not parse as YYYY-MM; nothing calculated", file=sys.stderr)
        return FAILED_VALIDATION
    for company in companies:
        time.sleep(STEP_SECONDS)
        print(f"payroll {period}: {company}: 42 employees calculated")
    print(f"payroll {period}: done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
