"""The slot items of batches with a `max_running` (batchgate.domain.batch_slots), kept in the job table
under the key `slots#<batch>` (never a job id: job ids start with `bg-`). They have no `status` or
`created_at`, so no index holds them; the table's stream consumers skip them
(`batchgate.adapters.job_table.is_slots_key`).

Each write replaces the item conditionally on the version it read (GetItem and PutItem: what dispatch
may already do on the job table), so two dispatchers never both take the last slot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from batchgate.adapters.aws_clients import dynamodb_client
from batchgate.adapters.job_table import KEY_ATTRIBUTE, SLOTS_KEY_PREFIX, from_attributes, to_attributes
from batchgate.domain.batch_slots import BatchSlots

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class SlotsChanged(RuntimeError):
    """Another dispatcher wrote the batch's slots since they were read."""


class BatchSlotTable:
    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client: DynamoDBClient = client or dynamodb_client()

    def get(self, batch: str) -> BatchSlots:
        response = self._client.get_item(
            TableName=self.table_name, Key={KEY_ATTRIBUTE: {"S": _key(batch)}}, ConsistentRead=True
        )
        item = response.get("Item")
        if not item:
            return BatchSlots(batch)
        stored = from_attributes(item)
        holders = {str(job_id): int(attempt) for job_id, attempt in dict(stored.get("holders", {})).items()}
        return BatchSlots(batch, holders, int(stored.get("version", 0)))

    def save(self, slots: BatchSlots) -> BatchSlots:
        """Write `slots` if nobody wrote them since they were read; raises SlotsChanged if somebody did."""
        saved = BatchSlots(slots.batch, dict(slots.holders), slots.version + 1)
        condition: dict[str, Any] = (
            {
                "ConditionExpression": "attribute_not_exists(#key)",
                "ExpressionAttributeNames": {"#key": KEY_ATTRIBUTE},
            }
            if slots.version == 0
            else {
                "ConditionExpression": "#version = :version",
                "ExpressionAttributeNames": {"#version": "version"},
                "ExpressionAttributeValues": {":version": {"N": str(slots.version)}},
            }
        )
        item = {KEY_ATTRIBUTE: _key(slots.batch), "holders": dict(saved.holders), "version": saved.version}
        try:
            self._client.put_item(TableName=self.table_name, Item=to_attributes(item), **condition)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise SlotsChanged(slots.batch) from error
            raise
        return saved


def _key(batch: str) -> str:
    return f"{SLOTS_KEY_PREFIX}{batch}"
