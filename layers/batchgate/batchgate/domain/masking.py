"""Environment values are for the batch's container only: what batchgate stores for ops, shows or logs of
a message keeps the variables' names and masks their values. Secrets belong in the task definition's
`secrets` (Secrets Manager, SSM Parameter Store), never in a message; the mask is for the values a
sender puts there anyway.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

ENVIRONMENT_MASK = "***"
ENVIRONMENT_FIELD = "environment"
CUT_MARK = "… (cut before its environment: values are not kept)"


@functools.cache
def _environment_key() -> re.Pattern[str]:
    """`environment` as a JSON text may spell it, each letter as itself or as a \\u00XX escape: what tells
    whether a body could hold environment values at all, parseable or not. Compiled on the first
    refused message, not at import: most cold starts never refuse one."""
    return re.compile(
        "".join(f"(?:{letter}|\\\\u00{ord(letter):02x})" for letter in ENVIRONMENT_FIELD), re.IGNORECASE
    )


def masked_environment(environment: Mapping[str, Any]) -> dict[str, str]:
    """The variables' names, each value masked."""
    return {name: ENVIRONMENT_MASK for name in environment}


def masked_message(body: str) -> str:
    """A submit message's body without its environment values, for ops to read why it was refused.

    As received when it cannot hold any (no `environment` in it, however spelled or cased);
    re-serialised with every `environment` object's values masked (anything else there masked whole;
    the key in any case) when it parses as JSON; otherwise (not JSON, or cut short) the text before
    its first `environment`, which is where values could start."""
    found = _environment_key().search(body)
    if found is None:
        return body
    try:
        document = json.loads(body)
        return json.dumps(_masked(document), ensure_ascii=False)
    except (ValueError, RecursionError):
        return body[: found.start()] + CUT_MARK


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            # Any case: an "Environment" sent by mistake holds the same values.
            key: (_masked_field(item) if key.lower() == ENVIRONMENT_FIELD else _masked(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return value


def _masked_field(value: Any) -> Any:
    return masked_environment(value) if isinstance(value, dict) else ENVIRONMENT_MASK
