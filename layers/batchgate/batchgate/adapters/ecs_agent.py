"""What a task asks the ECS agent in its own container: who it is (task metadata endpoint v4) and task
scale-in protection (the agent's task-protection endpoint). Plain HTTP on a link-local address the
agent sets in the environment (ECS_CONTAINER_METADATA_URI_V4, ECS_AGENT_URI); no boto3, no credentials.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

# The agent answers locally at once; a hung call must never hold a slot's start or the heartbeat.
AGENT_TIMEOUT_SECONDS = 3.0


class AgentError(RuntimeError):
    """The agent refused or did not answer."""


@dataclass(frozen=True)
class TaskIdentity:
    """What the task metadata endpoint says of this task and this container."""

    task_arn: str
    availability_zone: str | None
    image: str | None
    image_digest: str | None


def _request(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=AGENT_TIMEOUT_SECONDS) as response:
            return json.loads(response.read() or b"null")
    except (OSError, ValueError) as error:
        raise AgentError(f"{method} {url}: {error}") from error


def read_task_identity(metadata_uri: str) -> TaskIdentity:
    """The task's ARN and availability zone, this container's image and its digest."""
    task = _request("GET", f"{metadata_uri.rstrip('/')}/task")
    container = _request("GET", metadata_uri.rstrip("/"))
    if not isinstance(task, dict) or not isinstance(task.get("TaskARN"), str):
        raise AgentError("task metadata has no TaskARN")
    own = container if isinstance(container, dict) else {}
    return TaskIdentity(
        task_arn=task["TaskARN"],
        availability_zone=task.get("AvailabilityZone"),
        image=own.get("Image"),
        image_digest=own.get("ImageID"),
    )


class TaskProtection:
    """Scale-in protection of this task: on while a slot is busy, so that scale-in and deployments do
    not stop running jobs (it does not shield from Spot interruptions or the loss of an AZ)."""

    def __init__(self, agent_uri: str | None) -> None:
        self.agent_uri = agent_uri.rstrip("/") if agent_uri else None

    def set(self, enabled: bool, expires_in_minutes: int) -> None:
        """No-op without an agent (the local stack, tests): there is no scale-in to be shielded from."""
        if self.agent_uri is None:
            return
        body: dict[str, Any] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = expires_in_minutes
        answer = _request("PUT", f"{self.agent_uri}/task-protection/v1/state", body)
        if isinstance(answer, dict) and ("failure" in answer or "error" in answer):
            raise AgentError(f"task protection refused: {answer.get('failure') or answer.get('error')}")
