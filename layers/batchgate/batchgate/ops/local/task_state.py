"""One task's state as ECS reports it in "ECS Task State Change" events (shaped like events/task-*.json).

moto starts a task RUNNING at once, with no timestamps, stop code or events; the local executor keeps
the task's real lifecycle here and turns each change into the event ECS would send.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from batchgate.domain.jobs import iso, utc_now
from batchgate.domain.task_events import TASK_STATE_CHANGE

if TYPE_CHECKING:
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

FARGATE_PROVIDERS = ("FARGATE", "FARGATE_SPOT")
ESSENTIAL_CONTAINER_EXITED = "EssentialContainerExited"
USER_INITIATED = "UserInitiated"
TASK_FAILED_TO_START = "TaskFailedToStart"
EXITED_REASON = "Essential container in task exited"
STOPPED_BY_USER_REASON = "Task stopped by user"


@dataclass
class TaskState:
    """What ECS knows about one task; `change` moves it and returns the event of that change."""

    task: dict[str, Any]  # DescribeTasks' view of the task, at discovery
    container: str
    image: str
    region: str
    version: int = 0
    last_status: str = "PROVISIONING"
    desired_status: str = "RUNNING"
    timestamps: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None
    stop_code: str | None = None
    stopped_reason: str | None = None
    container_reason: str | None = None
    container_arn: str = ""

    def __post_init__(self) -> None:
        cluster = str(self.task.get("clusterArn", "")).rsplit("/", 1)[-1]
        self.container_arn = (
            f"arn:aws:ecs:{self.region}:{self.account}:container/{cluster}/{self.task_id}/{uuid.uuid4()}"
        )

    @property
    def task_arn(self) -> str:
        return str(self.task["taskArn"])

    @property
    def task_id(self) -> str:
        return self.task_arn.rsplit("/", 1)[-1]

    @property
    def account(self) -> str:
        return self.task_arn.split(":")[4]

    @property
    def capacity_provider(self) -> str:
        return str(self.task.get("capacityProviderName") or self.task.get("launchType") or "FARGATE")

    @property
    def launch_type(self) -> str:
        fargate = self.capacity_provider in FARGATE_PROVIDERS or self.task.get("launchType") == "FARGATE"
        return "FARGATE" if fargate else "EC2"

    def stamp(self, *names: str, now: datetime | None = None) -> None:
        """Record that the named moments (createdAt, pullStartedAt, ...) happened now."""
        moment = iso(now or utc_now())
        self.timestamps.update(dict.fromkeys(names, moment))

    def change(self, last_status: str, *stamps: str) -> PutEventsRequestEntryTypeDef:
        """Move to `last_status` (stamping `stamps` now); returns the event of this change. Every
        change gets the next `detail.version`, as ECS numbers them."""
        moment = utc_now()
        self.stamp(*stamps, now=moment)
        self.last_status = last_status
        self.version += 1
        return self.entry(moment)

    def entry(self, moment: datetime) -> PutEventsRequestEntryTypeDef:
        return {
            "Time": moment,
            "Source": "aws.ecs",
            "DetailType": TASK_STATE_CHANGE,
            "Resources": [self.task_arn],
            "Detail": json.dumps(self.detail(moment)),
        }

    def detail(self, moment: datetime) -> dict[str, Any]:
        task = self.task
        overrides = task.get("overrides") or {}
        stopped = self.last_status == "STOPPED"
        detail: dict[str, Any] = {
            "attachments": [
                {**attachment, "status": "DELETED" if stopped else "ATTACHED"}
                for attachment in task.get("attachments", [])
            ],
            "attributes": [{"name": "ecs.cpu-architecture", "value": "x86_64"}],
            "availabilityZone": f"{self.region}a",
            "capacityProviderName": self.capacity_provider,
            "clusterArn": task.get("clusterArn"),
            "containers": [self._container()],
            "cpu": str(overrides.get("cpu") or task.get("cpu") or ""),
            "desiredStatus": self.desired_status,
            "enableExecuteCommand": False,
            "ephemeralStorage": {"sizeInGiB": 20},
            "group": task.get("group"),
            "lastStatus": self.last_status,
            "launchType": self.launch_type,
            "memory": self._memory(),
            "overrides": overrides,
            "platformFamily": "Linux",
            "platformVersion": "1.4.0",
            "startedBy": task.get("startedBy"),
            "taskArn": self.task_arn,
            "taskDefinitionArn": task.get("taskDefinitionArn"),
            "updatedAt": iso(moment),
            "version": self.version,
            **self.timestamps,
        }
        if "connectivityAt" in self.timestamps:
            detail["connectivity"] = "CONNECTED"
        if self.stop_code:
            detail["stopCode"] = self.stop_code
        if self.stopped_reason:
            detail["stoppedReason"] = self.stopped_reason
        return detail

    def _memory(self) -> str:
        overrides = self.task.get("overrides") or {}
        return str(overrides.get("memory") or self.task.get("memory") or "")

    def _container(self) -> dict[str, Any]:
        status = {"PROVISIONING": "PENDING", "PENDING": "PENDING", "RUNNING": "RUNNING"}
        container: dict[str, Any] = {
            "containerArn": self.container_arn,
            "lastStatus": status.get(self.last_status, "STOPPED"),
            "name": self.container,
            "image": self.image,
            "taskArn": self.task_arn,
            "networkInterfaces": [],
            "cpu": "0",
            "memory": self._memory(),
        }
        if self.last_status in ("RUNNING", "DEPROVISIONING", "STOPPED") and "startedAt" in self.timestamps:
            container["runtimeId"] = f"{self.task_id}-{self.container}"
        if self.exit_code is not None:
            container["exitCode"] = self.exit_code
        if self.container_reason:
            container["reason"] = self.container_reason
        return container
