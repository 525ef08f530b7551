"""ECS's own view of a task (DescribeTasks) as a task state change, so that a missed event can be
applied through the same `apply_task_event` as the events themselves.

DescribeTasks returns the same fields as the event's `detail` (including `version`), but with epoch
times (datetime objects through boto3) where events have ISO strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from batchgate.domain.jobs import iso
from batchgate.domain.task_events import (
    TASK_STATE_CHANGE,
    TIMELINE_FIELDS,
    InvalidTaskEvent,
    TaskStateChange,
    _attempt_from_overrides,
)


def task_attempt(task: Mapping[str, Any]) -> int | None:
    """The BATCHGATE_ATTEMPT dispatch put in a described task's container overrides."""
    return _attempt_from_overrides(task.get("overrides"))


def change_from_task(task: Mapping[str, Any]) -> TaskStateChange:
    """A described task as the task state change it corresponds to. Raises InvalidTaskEvent when the
    description lacks what an event would carry (ARN, lastStatus, version)."""
    if task.get("version") is None:
        raise InvalidTaskEvent(f"described task {task.get('taskArn')} has no version")
    detail = {key: _plain(value) for key, value in task.items()}
    moments = [detail[field] for field in TIMELINE_FIELDS if isinstance(detail.get(field), str)]
    event = {
        "version": "0",
        "source": "aws.ecs",
        "detail-type": TASK_STATE_CHANGE,
        # The latest thing that happened to the task: what an event's `time` would have been.
        "time": max(moments) if moments else "",
        "detail": detail,
    }
    return TaskStateChange.from_event(event)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
