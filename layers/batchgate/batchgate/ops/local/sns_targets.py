"""EventBridge rules whose target is an SNS topic, on the local endpoint.

moto 5.2.5 delivers a rule's events to queues, log groups and buses, and fails the whole PutEvents call
for an SNS target (NotImplementedError). The template's notification rule targets the topic of
JobNotificationTopicArn, so the moto server process (`moto_server.main`) wraps moto's delivery: a rule's
SNS targets get the event, through the target's input transformer, published to the topic (which
delivers to its subscriptions, e.g. a local queue); its other targets stay moto's.

The transformer is rendered as EventBridge does for the syntax the template uses: `<name>` placeholders
of `InputPathsMap` paths (`$.detail.x.y`), a string value escaped for JSON (moto's own renderer does not
escape, so a reason holding a quote would fail the call), null as `null`; a template that is one quoted
string gives the text itself.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

SendToTargets = Callable[..., None]


def value_at(event: Mapping[str, Any], path: str) -> Any:
    """The value at a `$.a.b.c` path of the event; None where the path leads nowhere."""
    value: Any = event
    for part in path.removeprefix("$").strip(".").split("."):
        if not part:
            continue
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def rendered(value: Any) -> str:
    """A value as it replaces its placeholder: strings escaped (the template quotes them), the rest as
    JSON (null, numbers, objects)."""
    if isinstance(value, str):
        return json.dumps(value)[1:-1]
    return json.dumps(value, separators=(",", ":"), default=str)


def render_input(target: Mapping[str, Any], event: Mapping[str, Any]) -> str:
    """The message a target gets for `event`: the event's JSON without an input transformer, else the
    transformer's template filled in (a quoted string template: the text, unquoted)."""
    transformer = target.get("InputTransformer")
    if not transformer:
        return json.dumps(event, default=str)
    text = str(transformer.get("InputTemplate", ""))
    for name, path in (transformer.get("InputPathsMap") or {}).items():
        text = text.replace(f"<{name}>", rendered(value_at(event, str(path))))
    stripped = text.strip()
    if stripped.startswith('"') and stripped.endswith('"'):
        try:
            decoded = json.loads(stripped)
        except ValueError:
            return text
        if isinstance(decoded, str):
            return decoded
    return text


def is_topic(arn: str) -> bool:
    return arn.startswith("arn:") and arn.split(":")[2:3] == ["sns"]


def publish_to_topic(topic_arn: str, message: str) -> None:
    """Publish on moto's SNS backend of the topic's account and region (in this server process)."""
    from moto.sns.models import sns_backends

    _, _, _, region, account, _ = topic_arn.split(":", 5)
    sns_backends[account][region].publish(message=message, arn=topic_arn)


def delivering_to_topics(
    send_to_targets: SendToTargets, publish: Callable[[str, str], None] = publish_to_topic
) -> SendToTargets:
    """moto's `Rule.send_to_targets`, with the rule's SNS targets published to instead of failing."""

    def send(rule: Any, original_event: dict[str, Any], transform_input: bool = True) -> None:
        topics = [target for target in rule.targets if is_topic(str(target.get("Arn", "")))]
        if not topics:
            send_to_targets(rule, original_event, transform_input)
            return
        if rule.event_pattern.matches_event(original_event):
            for target in topics:
                message = (
                    render_input(target, original_event)
                    if transform_input
                    else json.dumps(original_event, default=str)
                )
                # As in EventBridge: a target that fails fails no PutEvents (the server log says why).
                try:
                    publish(str(target["Arn"]), message)
                except Exception as error:
                    print(f"EventBridge target {target['Arn']}: not delivered: {error!r}", file=sys.stderr)
        others = copy.copy(rule)
        others.targets = [target for target in rule.targets if target not in topics]
        send_to_targets(others, original_event, transform_input)

    return send


def patch_moto_rules() -> None:
    """In this process, moto's EventBridge rules deliver to SNS targets."""
    from moto.events.models import Rule

    Rule.send_to_targets = delivering_to_topics(Rule.send_to_targets)  # type: ignore[method-assign]
