"""The pool table adapter: one heartbeat item per warm pool task (batchgate.domain.pools).

Key schema (template.yaml declares the same): hash `pool`, range `task_arn`; TTL attribute `expires_at`.
The worker writes its own item; dispatch reads a pool's items (one Query), track and the sweep read one
task's item by key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from batchgate.adapters.aws_clients import dynamodb_client
from batchgate.adapters.job_table import from_attributes, to_attributes

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from batchgate.domain.pools import PoolTask


class PoolTable:
    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client: DynamoDBClient = client or dynamodb_client()

    def put(self, task: PoolTask) -> None:
        self._client.put_item(TableName=self.table_name, Item=to_attributes(task.to_item()))

    def delete(self, pool: str, task_arn: str) -> None:
        self._client.delete_item(TableName=self.table_name, Key=_key(pool, task_arn))

    def get(self, pool: str, task_arn: str) -> PoolTask | None:
        response = self._client.get_item(
            TableName=self.table_name, Key=_key(pool, task_arn), ConsistentRead=True
        )
        item = response.get("Item")
        # Track reads a heartbeat only when a pool task stops: the heartbeat's model is loaded then.
        from batchgate.domain.pools import PoolTask

        return PoolTask.from_item(from_attributes(item)) if item else None

    def tasks(self, pool: str) -> list[PoolTask]:
        """Every heartbeat item of the pool (a pool has a handful of tasks: one page)."""
        from batchgate.domain.pools import PoolTask

        paginator = self._client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.table_name,
            KeyConditionExpression="#pool = :pool",
            ExpressionAttributeNames={"#pool": "pool"},
            ExpressionAttributeValues={":pool": {"S": pool}},
        )
        return [PoolTask.from_item(from_attributes(item)) for page in pages for item in page.get("Items", [])]


def _key(pool: str, task_arn: str) -> dict[str, dict[str, str]]:
    return {"pool": {"S": pool}, "task_arn": {"S": task_arn}}
