"""How long to wait before trying again: the one back-off module.

Two delays, for two different kinds of "again":
- `retry_delay_seconds`: before a failed job's next attempt (the catalog's retry policy). Exponential
  with "equal jitter" derived from the job and attempt: deterministic (a redelivered failure gives the
  same delay), yet spread across jobs that fail together.
- `deferral_delay_seconds`: before a throttled launch is tried again (batchgate.services.launch_deferral).
  Exponential in the number of deferrals with full random jitter, so launches throttled together do
  not come back together.
Both are whole seconds within SQS's message delay limit, since they travel as a message's DelaySeconds.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable

MAX_DELAY_SECONDS = 900  # SQS DelaySeconds limit


def retry_delay_seconds(base: int, ceiling: int, job_id: str, failed_attempt: int) -> int:
    """Half the doubled delay plus a share of the other half derived from the job and attempt."""
    ceiling = min(ceiling, MAX_DELAY_SECONDS)
    doublings = min(max(0, failed_attempt - 1), 16)
    exponential: int = min(ceiling, base * (1 << doublings))
    digest = hashlib.sha256(f"{job_id}\x00{failed_attempt}".encode()).digest()
    share = int.from_bytes(digest[:4], "big") / 2**32
    half = exponential / 2
    return max(1, min(ceiling, round(half + share * half)))


def deferral_delay_seconds(
    deferrals: int,
    *,
    base: float,
    cap: float,
    at_least: float = 0.0,
    rand: Callable[[], float] = random.random,
) -> int:
    """Exponential in the deferral count, capped, with full jitter, never below `at_least`, always at
    least one second and at most SQS's message delay limit."""
    exponent = min(max(deferrals, 1) - 1, 30)
    ceiling = min(cap, base * 2.0**exponent)
    delay = max(ceiling * rand(), at_least, 1.0)
    return math.ceil(min(delay, float(MAX_DELAY_SECONDS)))
