"""How EventBridge Scheduler delivers a schedule's slots (docs/schedules.md): how long it retries, and when
a slot still without a job is a missed run.

Apart from batchgate.domain.schedules so that the functions' settings read their default without loading
the schedules' expressions and time zones: a function that checks no schedule does not pay for them at
its cold start.
"""

from __future__ import annotations

# Scheduler's retry policy for every slot: delivery is retried this long, then the slot's message goes to
# the schedules' dead-letter queue (alarmed).
DELIVERY_RETRY_SECONDS = 600
DELIVERY_RETRY_ATTEMPTS = 20
# A slot without a job this long after its time is a missed run: longer than Scheduler's own retries.
MISSED_AFTER_SECONDS = DELIVERY_RETRY_SECONDS + 300
