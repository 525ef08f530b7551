"""The schedule table adapter: the slots the sweep reported missed or late, one item each.

Key schema (template.yaml declares the same): hash `schedule`, range `report` ("missed#<slot time>" or
"late#<slot time>"); TTL attribute `expires_at`. A conditional put claims a report, so that a slot is
reported once however many sweeps see it, concurrent ones included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from batchgate.adapters.aws_clients import dynamodb_client

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class ScheduleReports:
    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client: DynamoDBClient = client or dynamodb_client()

    def claim(self, schedule: str, report: str, reported_at: str, expires_at: int) -> bool:
        """True when this call recorded the report; False when it was recorded before."""
        try:
            self._client.put_item(
                TableName=self.table_name,
                Item={
                    "schedule": {"S": schedule},
                    "report": {"S": report},
                    "reported_at": {"S": reported_at},
                    "expires_at": {"N": str(expires_at)},
                },
                ConditionExpression="attribute_not_exists(#report)",
                ExpressionAttributeNames={"#report": "report"},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release(self, schedule: str, report: str) -> None:
        """Forget a claimed report whose event could not be put: the next sweep reports it again."""
        self._client.delete_item(
            TableName=self.table_name, Key={"schedule": {"S": schedule}, "report": {"S": report}}
        )
