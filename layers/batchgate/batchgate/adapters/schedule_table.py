"""The schedule table adapter: the slots the sweep reported missed or late, one item each.

Key schema (template.yaml declares the same): hash `schedule`, range `report` ("missed#<slot time>" or
"late#<slot time>"); TTL attribute `expires_at`. A conditional put claims a report, so that a slot is
reported once however many sweeps see it, concurrent ones included. One more item per schedule,
`report` "watching" (no expiry), says since when the sweep knows the schedule: a slot before it is
not a missed run (the schedule did not exist yet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from batchgate.adapters.aws_clients import dynamodb_client

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


WATCHING = "watching"


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

    def watching_since(self, schedule: str, now: str) -> str:
        """Since when the sweep knows `schedule`: recorded as `now` by the first sweep that sees it."""
        key = {"schedule": {"S": schedule}, "report": {"S": WATCHING}}
        item = self._client.get_item(TableName=self.table_name, Key=key, ConsistentRead=True).get("Item")
        if item is not None:
            return str(item["since"]["S"])
        try:
            self._client.put_item(
                TableName=self.table_name,
                Item={**key, "since": {"S": now}},
                ConditionExpression="attribute_not_exists(#report)",
                ExpressionAttributeNames={"#report": "report"},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return self.watching_since(schedule, now)  # another sweep recorded it first
        return now

    def set_watching_since(self, schedule: str, since: str) -> None:
        """As if the sweep had known the schedule since `since` (the local demo's missed run)."""
        self._client.put_item(
            TableName=self.table_name,
            Item={"schedule": {"S": schedule}, "report": {"S": WATCHING}, "since": {"S": since}},
        )

    def reports(self, schedule: str) -> list[str]:
        """The reports made for `schedule` ("missed#<slot>", "late#<slot>"), oldest slot first."""
        response = self._client.query(
            TableName=self.table_name,
            KeyConditionExpression="#schedule = :schedule",
            ExpressionAttributeNames={"#schedule": "schedule"},
            ExpressionAttributeValues={":schedule": {"S": schedule}},
        )
        found = [str(item["report"]["S"]) for item in response.get("Items", [])]
        return sorted((report for report in found if report != WATCHING), key=lambda r: r.split("#", 1)[-1])
