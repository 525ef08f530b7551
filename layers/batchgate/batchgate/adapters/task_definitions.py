"""Task definition images: which image a batch's task definition runs now (DescribeTaskDefinition).

A warm pool's worker compares them with its own image, so that a pool never advertises a batch whose
task definition has moved to a newer image than the pool runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from batchgate.adapters.aws_clients import ecs_client

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient


class TaskDefinitionImages:
    def __init__(self, client: ECSClient | None = None) -> None:
        self._client: ECSClient = client or ecs_client()

    def image(self, task_definition: str, container: str) -> str | None:
        """The image of `container` in `task_definition` (a family: its latest ACTIVE revision), or None
        when the task definition has no such container. Never cached: a family's latest revision moves."""
        response = self._client.describe_task_definition(taskDefinition=task_definition)
        for definition in response["taskDefinition"].get("containerDefinitions", []):
            if definition.get("name") == container:
                image = definition.get("image")
                return str(image) if image else None
        return None
