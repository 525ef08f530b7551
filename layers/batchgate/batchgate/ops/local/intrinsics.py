"""CloudFormation intrinsic functions, resolved against the local stack's values.

The translated template still says `!Ref JobTable` or `!Sub "${JobTable.Arn}/index/*"`; the local stack
creates each resource by API call, then resolves the properties of the next one with what the earlier
ones became. Supports what SAM templates use: Ref, Fn::GetAtt, Fn::Sub, Fn::Join, Fn::Select,
Fn::Split, Fn::If with Conditions, Fn::FindInMap, Fn::GetAZs, Fn::Base64, Fn::ToJsonString, Fn::Length.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NO_VALUE = "AWS::NoValue"
_SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")


class TemplateError(ValueError):
    """The template asks for something the local stack cannot resolve or create."""


class _Removed:
    """AWS::NoValue: the property or list item disappears."""


REMOVED = _Removed()


@dataclass
class Intrinsics:
    """Parameter values (pseudo parameters included), the template's Conditions and Mappings, and the
    Ref and GetAtt values of the resources created so far."""

    parameters: Mapping[str, str | list[str]]
    conditions: Mapping[str, Any] = field(default_factory=dict)
    mappings: Mapping[str, Any] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    region: str = "us-east-1"

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not REMOVED]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((name, argument),) = value.items()
            function = _FUNCTIONS.get(name)
            if function is not None:
                return function(self, argument)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not REMOVED}

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            raise TemplateError(f"unknown condition {name}")
        return self._truth(self.conditions[name])

    def ref(self, name: str) -> str | list[str]:
        if name in self.parameters:
            return self.parameters[name]
        if name in self.refs:
            return self.refs[name]
        raise TemplateError(f"Ref {name}: no such parameter, or the resource was not created locally")

    def get_att(self, name: str, attribute: str) -> str:
        try:
            return self.attributes[name][attribute]
        except KeyError:
            raise TemplateError(f"GetAtt {name}.{attribute} is not available locally") from None

    def _truth(self, value: Any) -> bool:
        if isinstance(value, dict) and len(value) == 1:
            ((name, argument),) = value.items()
            if name == "Fn::Equals":
                left, right = (self.resolve(item) for item in argument)
                return str(left) == str(right)
            if name == "Fn::Not":
                return not self._truth(argument[0])
            if name == "Fn::And":
                return all(self._truth(item) for item in argument)
            if name == "Fn::Or":
                return any(self._truth(item) for item in argument)
            if name == "Condition":
                return self.condition(argument)
        raise TemplateError(f"not a condition: {json.dumps(value)[:200]}")


def dependencies(value: Any, parameters: Mapping[str, Any]) -> set[str]:
    """The logical ids a value refers to (through Ref, GetAtt or Sub), parameters excluded."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= dependencies(item, parameters)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                found.add(item)
            elif key == "Fn::GetAtt":
                target = item.split(".", 1) if isinstance(item, str) else item
                found.add(str(target[0]))
            elif key == "Fn::Sub":
                text, variables = (item, {}) if isinstance(item, str) else (item[0], item[1])
                names = {match.split(".", 1)[0] for match in _SUB_VARIABLE.findall(text)}
                found |= {name for name in names if not name.startswith("!") and name not in variables}
                found |= dependencies(variables, parameters)
            else:
                found |= dependencies(item, parameters)
    return {name for name in found if name not in parameters and not name.startswith("AWS::")}


def _ref(intrinsics: Intrinsics, name: str) -> Any:
    return REMOVED if name == NO_VALUE else intrinsics.ref(name)


def _get_att(intrinsics: Intrinsics, argument: Any) -> str:
    name, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
    return intrinsics.get_att(str(name), str(intrinsics.resolve(attribute)))


def _sub(intrinsics: Intrinsics, argument: Any) -> str:
    text, variables = (argument, {}) if isinstance(argument, str) else argument
    values = {key: intrinsics.resolve(value) for key, value in variables.items()}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        if name in values:
            return str(values[name])
        if "." in name and name not in intrinsics.parameters:
            resource, attribute = name.split(".", 1)
            return intrinsics.get_att(resource, attribute)
        value = intrinsics.ref(name)
        if isinstance(value, list):
            raise TemplateError(f"Fn::Sub cannot use the list parameter {name}")
        return value

    return _SUB_VARIABLE.sub(replace, str(text))


def _join(intrinsics: Intrinsics, argument: Any) -> str:
    separator, items = argument
    return str(separator).join(str(item) for item in intrinsics.resolve(items))


def _select(intrinsics: Intrinsics, argument: Any) -> Any:
    index, items = intrinsics.resolve(argument)
    return items[int(index)]


def _split(intrinsics: Intrinsics, argument: Any) -> list[str]:
    separator, text = intrinsics.resolve(argument)
    return str(text).split(str(separator))


def _if(intrinsics: Intrinsics, argument: Any) -> Any:
    name, when_true, when_false = argument
    return intrinsics.resolve(when_true if intrinsics.condition(name) else when_false)


def _find_in_map(intrinsics: Intrinsics, argument: Any) -> Any:
    mapping, key, name = intrinsics.resolve(argument)
    try:
        return intrinsics.mappings[mapping][key][name]
    except KeyError:
        raise TemplateError(f"Fn::FindInMap {mapping}/{key}/{name}: not in the template's Mappings") from None


def _get_azs(intrinsics: Intrinsics, argument: Any) -> list[str]:
    return [f"{intrinsics.region}{zone}" for zone in "abc"]


def _base64(intrinsics: Intrinsics, argument: Any) -> str:
    return base64.b64encode(str(intrinsics.resolve(argument)).encode()).decode()


def _to_json_string(intrinsics: Intrinsics, argument: Any) -> str:
    return json.dumps(intrinsics.resolve(argument), separators=(",", ":"))


def _length(intrinsics: Intrinsics, argument: Any) -> int:
    return len(intrinsics.resolve(argument))


def _import_value(intrinsics: Intrinsics, argument: Any) -> Any:
    raise TemplateError("Fn::ImportValue needs another stack's exports: not available locally")


_FUNCTIONS: dict[str, Any] = {
    "Ref": _ref,
    "Fn::GetAtt": _get_att,
    "Fn::Sub": _sub,
    "Fn::Join": _join,
    "Fn::Select": _select,
    "Fn::Split": _split,
    "Fn::If": _if,
    "Fn::FindInMap": _find_in_map,
    "Fn::GetAZs": _get_azs,
    "Fn::Base64": _base64,
    "Fn::ToJsonString": _to_json_string,
    "Fn::Length": _length,
    "Fn::ImportValue": _import_value,
}
