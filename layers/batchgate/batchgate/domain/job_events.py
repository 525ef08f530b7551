"""Job state change events: what an application hears when a job's status changes (docs/events.md).

Pure: built from one write of the job table (the job before and after it). A write that leaves the
status as it was is no event. The event carries the job's state for consumers, never its environment
values, its raw message or its arguments (they may hold what only the batch should see).
"""

import json
from typing import Any, NamedTuple
from urllib.parse import quote

from batchgate.domain.jobs import Job, parse_iso

JOB_EVENT_SOURCE = "batchgate"
JOB_STATE_CHANGE = "Batchgate Job State Change"
# Bumped when a field changes meaning or goes away (new fields keep the version).
JOB_EVENT_VERSION = 1
# A reason longer than this is cut: the event stays far below PutEvents' 256 KB whatever a task said.
REASON_LIMIT = 2048
# PutEvents counts an entry's Time as 14 bytes, whatever it holds.
ENTRY_TIME_BYTES = 14

_CONSOLE_DOMAINS = (("cn-", "console.amazonaws.cn"), ("us-gov-", "console.amazonaws-us-gov.com"))


class JobStateChange(NamedTuple):
    """One status change of one job: the detail of its EventBridge event and the event's time."""

    event_id: str
    job_id: str
    detail: dict[str, Any]
    time: str

    def entry(self, bus_name: str) -> dict[str, Any]:
        """The PutEvents entry for `bus_name`."""
        return {
            "Source": JOB_EVENT_SOURCE,
            "DetailType": JOB_STATE_CHANGE,
            "Detail": json.dumps(self.detail, separators=(",", ":"), sort_keys=True),
            "EventBusName": bus_name,
            "Time": parse_iso(self.time),
            "Resources": [],
        }


def event_id_of(job: Job) -> str:
    """The same for every delivery of one write (the job id and the revision that write made), and
    different for any other write of any job: a consumer dedupes on it."""
    return f"{job.job_id}:{job.revision}:{job.status.value}"


def job_state_change(before: Job | None, after: Job | None, region: str) -> JobStateChange | None:
    """The event of one write of the job table; None when the write did not change the job's status
    (a timeline update, a note, the item's expiry)."""
    if after is None or (before is not None and before.status is after.status):
        return None
    attempt = after.attempt
    log_group = attempt.log_group if attempt else None
    log_stream = attempt.log_stream if attempt else None
    reason = after.reason if after.reason is None else after.reason[:REASON_LIMIT]
    detail: dict[str, Any] = {
        "version": JOB_EVENT_VERSION,
        "event_id": event_id_of(after),
        "job_id": after.job_id,
        "batch": after.batch,
        # The submit message's tenant (the application's customer), null for a job without one.
        "tenant": after.tenant,
        "status": after.status.value,
        "previous_status": before.status.value if before else None,
        "revision": after.revision,
        "attempt": after.attempt_number,
        "strategy": attempt.strategy if attempt else None,
        "capacity_provider": attempt.capacity_provider if attempt else None,
        "exit_code": attempt.exit_code if attempt else None,
        "reason": reason,
        "log": {
            "group": log_group,
            "stream": log_stream,
            "console_url": log_console_url(region, log_group, log_stream),
        },
        "times": {
            "created": after.created_at,
            "updated": after.updated_at,
            "attempt": dict(attempt.timeline) if attempt else {},
        },
    }
    return JobStateChange(event_id_of(after), after.job_id, detail, after.updated_at)


def entry_size(entry: dict[str, Any]) -> int:
    """An entry's size as PutEvents counts it against its 256 KB limit (UTF-8 bytes of the source,
    detail type, detail, event bus name and resources, 14 for the time)."""
    text = [entry["Source"], entry["DetailType"], entry["Detail"], entry.get("EventBusName") or ""]
    text += list(entry.get("Resources") or [])
    return sum(len(part.encode()) for part in text) + (ENTRY_TIME_BYTES if "Time" in entry else 0)


def log_console_url(region: str, group: str | None, stream: str | None) -> str | None:
    """The CloudWatch Logs console page of a log stream (of its group without a stream), in the
    console of `region`'s partition; None without a group."""
    if not group:
        return None
    domain = next(
        (name for prefix, name in _CONSOLE_DOMAINS if region.startswith(prefix)), "console.aws.amazon.com"
    )
    path = f"log-groups/log-group/{_console_escaped(group)}"
    if stream:
        path += f"/log-events/{_console_escaped(stream)}"
    return f"https://{region}.{domain}/cloudwatch/home?region={region}#logsV2:{path}"


def _console_escaped(name: str) -> str:
    """The console's own escaping in its fragment: URL-encoded twice, with `$` for `%`."""
    return quote(quote(name, safe=""), safe="").replace("%", "$")
