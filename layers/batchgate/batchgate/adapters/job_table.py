"""The DynamoDB job table adapter: the only module that reads or writes job items.

Key schema (template.yaml declares the same; a test checks they agree):
- table: hash key `job_id`
- index `jobs-by-status`: hash `status`, range `created_at` (ops query newest first, the sweep oldest
  first); projects `batch`, `strategy`, `attempt` and `exit_code` only
- index `jobs-by-batch`: hash `batch`, range `created_at` (query newest first); projects
  `idempotency_key` only
- index `jobs-by-tenant`: hash `tenant`, range `created_at` (query newest first); projects `batch`
  only. Sparse: a job without a tenant has no `tenant` attribute and no entry (costs it nothing)
- TTL attribute `expires_at` (epoch seconds)

The indexes hold only attributes that change with a job's status or never: `updated_at`, `revision`,
the timeline and the attempts stay out of them, so a write that changes no status costs them nothing,
and `jobs-by-batch` (and `jobs-by-tenant`, for a job with a tenant) is written once per job. A query
reads the index's keys, then the jobs themselves by key (BatchGetItem, strongly consistent), so every
caller gets whole jobs.
"""

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from batchgate.adapters.aws_clients import dynamodb_client
from batchgate.adapters.write_conflicts import pause_after_conflict, tries_after_conflicts
from batchgate.domain.jobs import Job

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

KEY_ATTRIBUTE = "job_id"
SORT_ATTRIBUTE = "created_at"
TTL_ATTRIBUTE = "expires_at"
# New names for new projections: CloudFormation cannot change an index's projection in place (the
# former `by-status` and `by-batch` projected ALL; see the README's job table section).
STATUS_INDEX = "jobs-by-status"
BATCH_INDEX = "jobs-by-batch"
TENANT_INDEX = "jobs-by-tenant"
INDEXES: dict[str, tuple[str, str]] = {
    STATUS_INDEX: ("status", SORT_ATTRIBUTE),
    BATCH_INDEX: ("batch", SORT_ATTRIBUTE),
    TENANT_INDEX: ("tenant", SORT_ATTRIBUTE),
}
# The non-key attributes each index holds (INCLUDE projection): what a listing shows that changes only
# together with the index key (the status) or never. Keys of the table and of the index come along.
PROJECTIONS: dict[str, tuple[str, ...]] = {
    STATUS_INDEX: ("batch", "strategy", "attempt", "exit_code"),
    BATCH_INDEX: ("idempotency_key",),
    # `batch`, for `--tenant` with `--batch`: the other batches' jobs are never read by key.
    TENANT_INDEX: ("batch",),
}
BATCH_GET_LIMIT = 100  # keys per BatchGetItem
# The items of batches' slots (batchgate.adapters.batch_slots) share the table under `slots#<batch>`,
# never a job id: the table's stream consumers skip them.
SLOTS_KEY_PREFIX = "slots#"
UNPROCESSED_TRIES = 8  # BatchGetItem calls for one chunk, while DynamoDB leaves keys unprocessed

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class ConcurrentUpdateError(RuntimeError):
    """The item kept changing under us; the caller's unit of work should be retried later."""


class UnreadJobsError(RuntimeError):
    """DynamoDB kept leaving keys of a BatchGetItem unprocessed (throttled); try again later."""


def is_slots_key(key: str) -> bool:
    return key.startswith(SLOTS_KEY_PREFIX)


def to_attributes(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in item.items()}


def from_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    return {key: _plain(_deserializer.deserialize(value)) for key, value in attributes.items()}


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; the job model wants int."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


class JobWrite(NamedTuple):
    """What one `JobTable.apply` did. `before` is the job the change was last applied to (as stored
    just before the write, when there was one), `after` the job as stored afterwards; when the change
    had nothing to write, both are the job as read."""

    before: Job
    after: Job

    @property
    def written(self) -> bool:
        """This call wrote the job: what tells it apart from another writer's change read back."""
        return self.after.revision != self.before.revision


class JobPage(NamedTuple):
    """One page of a listing, and the token of the next one."""

    jobs: list[Job]
    next_token: dict[str, Any] | None


class JobTable:
    def __init__(
        self,
        table_name: str,
        client: "DynamoDBClient | None" = None,
        *,
        pause: Callable[[int], None] = pause_after_conflict,
    ) -> None:
        self.table_name = table_name
        self._client: DynamoDBClient = client or dynamodb_client()
        self._pause = pause

    def create(self, job: Job) -> Job | None:
        """Write a new job and return it as stored; None when a job with this id exists already
        (a redelivered message)."""
        stored = job._replace(revision=1)
        try:
            self._client.put_item(
                TableName=self.table_name,
                Item=to_attributes(stored.to_item()),
                ConditionExpression="attribute_not_exists(#key)",
                ExpressionAttributeNames={"#key": KEY_ATTRIBUTE},
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return None
            raise
        return stored

    def get(self, job_id: str) -> Job | None:
        response = self._client.get_item(
            TableName=self.table_name, Key={KEY_ATTRIBUTE: {"S": job_id}}, ConsistentRead=True
        )
        item = response.get("Item")
        return Job.from_item(from_attributes(item)) if item else None

    def save(self, job: Job) -> Job:
        """Replace the item if nobody wrote it since `job` was read; raises ConcurrentUpdateError if not."""
        saved = job._replace(revision=job.revision + 1)
        try:
            self._client.put_item(
                TableName=self.table_name,
                Item=to_attributes(saved.to_item()),
                ConditionExpression="#revision = :revision",
                ExpressionAttributeNames={"#revision": "revision"},
                ExpressionAttributeValues={":revision": {"N": str(job.revision)}},
            )
        except ClientError as error:
            if _is_condition_failure(error):
                raise ConcurrentUpdateError(job.job_id) from error
            raise
        return saved

    def apply(
        self,
        job_id: str,
        change: Callable[[Job], Job | None],
        tries: int = 8,
        *,
        read: Job | None = None,
    ) -> JobWrite | None:
        """Read, change and conditionally write a job, re-reading when another writer got there first.

        `change` is a pure function of the current job; it returns None when there is nothing to write.
        `read` is the job as the caller just read it, which saves the first read; a stale one only
        costs a failed conditional write. Returns the job the change was applied to and the job as
        stored afterwards, or None when there is no such job. What a caller counts or reports must
        come from `written` and `before`: the caller's own earlier read may predate another writer's
        change that made this one a no-op.
        """
        current: Job | None = read
        for _ in tries_after_conflicts(tries, self._pause):
            if current is None:
                current = self.get(job_id)
                if current is None:
                    return None
            changed = change(current)
            if changed is None or changed == current:
                return JobWrite(before=current, after=current)
            try:
                return JobWrite(before=current, after=self.save(changed))
            except ConcurrentUpdateError:
                current = None
        raise ConcurrentUpdateError(job_id)

    def mutate(
        self,
        job_id: str,
        change: Callable[[Job], Job | None],
        tries: int = 8,
        *,
        read: Job | None = None,
    ) -> Job | None:
        """`apply`, for callers that need only the job as stored afterwards (None: no such job)."""
        write = self.apply(job_id, change, tries, read=read)
        return write.after if write is not None else None

    def query(
        self,
        *,
        status: str | None = None,
        batch: str | None = None,
        tenant: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 50,
        next_token: dict[str, Any] | None = None,
        oldest_first: bool = False,
    ) -> JobPage:
        """One page of jobs, newest first (oldest first with `oldest_first`), from the status index
        (of one batch only, with `batch` too), the tenant index (likewise) or the batch index; never a
        scan. `status` and `tenant` together are refused: each has its own index.

        The index gives the keys; the jobs are then read by key, strongly consistent. A job that left
        `status` since the index was written (the index is eventually consistent) or that is gone is
        left out of the page: it shows under its new status. A page can hold fewer than `limit` jobs
        while `next_token` says there are more."""
        if status is None and batch is None and tenant is None:
            raise ValueError("query by status, by batch, by tenant, or by batch and one of the others")
        if status is not None and tenant is not None:
            raise ValueError("query by status or by tenant, not both")
        if status is not None:
            index, key_value = STATUS_INDEX, status
        elif tenant is not None:
            index, key_value = TENANT_INDEX, tenant
        else:
            index, key_value = BATCH_INDEX, str(batch)
        hash_name, range_name = INDEXES[index]
        condition = "#h = :h"
        names = {"#h": hash_name}
        values: dict[str, Any] = {":h": {"S": key_value}}
        filters: dict[str, Any] = {}
        if index != BATCH_INDEX and batch is not None:
            # `batch` is projected into the status and tenant indexes: other batches' jobs are never read.
            names["#b"] = "batch"
            values[":b"] = {"S": batch}
            filters["FilterExpression"] = "#b = :b"
        if since or until:
            names["#r"] = range_name
        if since and until:
            condition += " AND #r BETWEEN :since AND :until"
            values.update({":since": {"S": since}, ":until": {"S": until}})
        elif since:
            condition += " AND #r >= :since"
            values[":since"] = {"S": since}
        elif until:
            condition += " AND #r <= :until"
            values[":until"] = {"S": until}
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": oldest_first,
            "Limit": limit,
            **filters,
        }
        if next_token:
            request["ExclusiveStartKey"] = next_token
        response = self._client.query(**request)
        keys = [item[KEY_ATTRIBUTE]["S"] for item in response.get("Items", [])]
        jobs = [
            job
            for job in self.get_many(keys)
            if (status is None or job.status.value == status)
            and (batch is None or job.batch == batch)
            and (tenant is None or job.tenant == tenant)
        ]
        return JobPage(jobs=jobs, next_token=response.get("LastEvaluatedKey"))

    def get_many(self, job_ids: list[str]) -> list[Job]:
        """The jobs of `job_ids` that exist, in that order, read by key (BatchGetItem, strongly
        consistent, 100 keys a call; keys DynamoDB leaves unprocessed are asked for again)."""
        found: dict[str, Job] = {}
        wanted = list(dict.fromkeys(job_ids))
        for start in range(0, len(wanted), BATCH_GET_LIMIT):
            chunk = wanted[start : start + BATCH_GET_LIMIT]
            request: dict[str, Any] = {
                self.table_name: {
                    "Keys": [{KEY_ATTRIBUTE: {"S": job_id}} for job_id in chunk],
                    "ConsistentRead": True,
                }
            }
            for _ in tries_after_conflicts(UNPROCESSED_TRIES, self._pause):
                response = self._client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    job = Job.from_item(from_attributes(item))
                    found[job.job_id] = job
                request = dict(response.get("UnprocessedKeys") or {})
                if not request:
                    break
            else:
                raise UnreadJobsError(f"{self.table_name}: keys unprocessed after {UNPROCESSED_TRIES} tries")
        return [found[job_id] for job_id in job_ids if job_id in found]

    def iterate(self, **criteria: Any) -> Iterator[Job]:
        """Every job matching `query` criteria, page after page, in the query's order."""
        token: dict[str, Any] | None = None
        while True:
            page = self.query(next_token=token, **criteria)
            yield from page.jobs
            token = page.next_token
            if not token:
                return


def _is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
