"""The local stack's job events tap and notification topic.

The template turns both on by parameters: `JobEventsTap` ("true": a queue a rule fills with every job
state change event, which `batchgate --local events` reads) and `JobNotificationTopicArn` (the SNS topic
the notification rule sends a readable message to for every job that ends FAILED, TIMED_OUT or
REJECTED). Locally the stack creates that topic on the local endpoint, with a queue subscribed to it
(raw delivery: each message is the text), and passes both parameters unless they were given, so the
rules are created from the template as in AWS (the endpoint delivers a rule's SNS target: sns_targets).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from batchgate.ops.local.endpoint import LocalAws

TOPIC_PARAMETER = "JobNotificationTopicArn"
TAP_PARAMETER = "JobEventsTap"


@dataclass(frozen=True)
class LocalTopic:
    """The notification topic and the queue subscribed to it."""

    topic_arn: str
    queue_url: str


def create_topic(aws: LocalAws, stack_name: str) -> LocalTopic:
    name = f"{stack_name}-notifications"
    topic_arn = str(aws.sns().create_topic(Name=name)["TopicArn"])
    sqs = aws.sqs()
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    aws.sns().subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true"},
        ReturnSubscriptionArn=True,
    )
    return LocalTopic(topic_arn, queue_url)


def event_parameters(given: Mapping[str, str], topic: LocalTopic | None) -> dict[str, str]:
    """The tap on and the local topic, unless the parameters given say otherwise."""
    chosen = {TAP_PARAMETER: "true"}
    if topic is not None:
        chosen[TOPIC_PARAMETER] = topic.topic_arn
    return {name: value for name, value in chosen.items() if name not in given}
