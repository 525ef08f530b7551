"""The sample trace: one month of an HR SaaS application's batches, generated deterministically.

November 2026 (30 days, times in UTC). On business days: attendance files imported through the day with
a morning and an after-lunch peak, leave balances synced after each approval, reports exported, a few
payroll runs; every two hours, around the clock, an employee directory sync. Payroll is calculated
company by company on the last two business days (the month-end spike). Most batches run 10-20 s; the
reports and payroll runs take minutes. About 2% of the jobs exit non-zero.

`python -m batchgate.ops.whatif.sample_trace samples/traces/hr-saas-month.csv` writes the shipped file;
tests check that it still matches.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from batchgate.ops.whatif.trace import TraceJob, write_trace_csv

MONTH_START = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 30
SEED = 2026
HOUR = 3600.0


def _business_days() -> list[datetime]:
    days = (MONTH_START + timedelta(days=offset) for offset in range(DAYS))
    return [day for day in days if day.weekday() < 5]


def hr_saas_month(seed: int = SEED) -> list[TraceJob]:
    rng = random.Random(seed)
    jobs: list[TraceJob] = []

    def add(batch: str, at: float, cpu: int, memory: int, run: Callable[[], float]) -> None:
        exit_code = 1 if rng.random() < 0.02 else 0
        jobs.append(TraceJob(batch, round(at, 1), cpu, memory, round(run(), 1), exit_code))

    def short() -> float:
        return rng.uniform(10, 20)

    def business_hours() -> float:
        # Busiest at 09:00-10:00 and 13:00-14:00, quiet before 08:00 and after 18:00.
        hour = rng.choices(range(7, 19), weights=[1, 3, 8, 4, 3, 2, 6, 3, 3, 2, 2, 1])[0]
        return hour * HOUR + rng.uniform(0, HOUR)

    business = _business_days()
    for day in business:
        midnight = day.timestamp()
        for _ in range(50):
            add("attendance-import", midnight + business_hours(), 512, 1024, short)
        # The 09:00 upload burst: offices send the night shift's files within a few minutes.
        for _ in range(12):
            add("attendance-import", midnight + 9 * HOUR + rng.uniform(0, 300), 512, 1024, short)
        for _ in range(25):
            add("leave-balance-sync", midnight + business_hours(), 256, 512, short)
        for _ in range(8):
            add("report-export", midnight + business_hours(), 256, 512, lambda: rng.uniform(120, 480))
        for _ in range(3):
            add("payroll-calculation", midnight + business_hours(), 1024, 2048, lambda: rng.uniform(180, 360))
    for day in business[-2:]:
        # Month end: every company's payroll between 09:00 and 11:00.
        for _ in range(80):
            at = day.timestamp() + 9 * HOUR + rng.uniform(0, 2 * HOUR)
            add("payroll-calculation", at, 1024, 2048, lambda: rng.uniform(120, 300))
    for slot in range(DAYS * 12):
        at = MONTH_START.timestamp() + slot * 2 * HOUR + rng.uniform(0, 60)
        add("employee-sync", at, 256, 512, short)
    return sorted(jobs, key=lambda job: (job.submitted_at, job.batch))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m batchgate.ops.whatif.sample_trace OUT.csv", file=sys.stderr)
        return 2
    write_trace_csv(hr_saas_month(), argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
