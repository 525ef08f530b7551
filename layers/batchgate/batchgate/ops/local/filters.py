"""Lambda's event filtering (an event source mapping's FilterCriteria), for the stream poller.

Only the part of the event pattern syntax the template uses: nested keys and lists of exact values.
A record matches a pattern when every key of the pattern matches: a nested pattern the record's
object at that key, a list one of its values (or, for an array in the record, one of its elements).
A record matches the criteria when it matches one of the patterns, or when there are none. Lambda
drops a stream record that matches no pattern without invoking the function.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

Pattern = dict[str, Any]
SCALARS = (str, int, float, bool, type(None))


class FilterError(ValueError):
    """A pattern that is not JSON, or uses a part of the syntax the local stack does not match."""


def parse_patterns(patterns: Sequence[str]) -> list[Pattern]:
    """The FilterCriteria patterns (JSON text, as the template gives them), checked."""
    parsed: list[Pattern] = []
    for text in patterns:
        try:
            pattern = json.loads(text)
        except ValueError as error:
            raise FilterError(f"filter pattern is not JSON: {text!r}") from error
        if not isinstance(pattern, dict):
            raise FilterError(f"filter pattern is not a JSON object: {text!r}")
        _check(pattern, text)
        parsed.append(pattern)
    return parsed


def _check(pattern: Mapping[str, Any], text: str) -> None:
    for key, value in pattern.items():
        if isinstance(value, dict):
            _check(value, text)
        elif isinstance(value, list) and value and all(isinstance(item, SCALARS) for item in value):
            continue
        else:
            # Content filters ({"prefix": ...}, {"numeric": ...}, ...) and "$or" are not matched here.
            raise FilterError(
                f"filter pattern {text!r}: only nested keys and value lists run locally ({key})"
            )


def matches_any(record: Mapping[str, Any], patterns: Sequence[Pattern]) -> bool:
    return not patterns or any(matches(record, pattern) for pattern in patterns)


def matches(record: Mapping[str, Any], pattern: Mapping[str, Any]) -> bool:
    for key, expected in pattern.items():
        if key not in record:
            return False
        value = record[key]
        if isinstance(expected, dict):
            if not isinstance(value, dict) or not matches(value, expected):
                return False
        elif not _matches_value(value, expected):
            return False
    return True


def _matches_value(value: Any, allowed: list[Any]) -> bool:
    candidates = value if isinstance(value, list) else [value]
    return any(_equal(candidate, option) for candidate in candidates for option in allowed)


def _equal(value: Any, option: Any) -> bool:
    # JSON true is not 1, though Python's True == 1.
    if isinstance(value, bool) or isinstance(option, bool):
        return value is option
    return bool(value == option)
