"""Reading template.yaml: the one description of the stack's resources that the local stack and the
tests build from, so that they cannot drift from what is deployed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# The short forms of CloudFormation intrinsic functions, read into their long (JSON) forms.
_INTRINSICS = (
    "And", "Base64", "Cidr", "Equals", "FindInMap", "GetAZs", "If", "ImportValue", "Join",
    "Not", "Or", "Select", "Split", "Sub", "Transform", "Condition", "ToJsonString", "Length",
)  # fmt: skip


# libyaml's parser when PyYAML was built with it: the same documents, five times faster than the
# pure-Python one (template.yaml is read by every local stack start and many tests).
try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # PyYAML without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]


class TemplateLoader(_SafeLoader):
    """SafeLoader that understands !Ref, !GetAtt and the other CloudFormation tags."""


def _construct(name: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "Fn::GetAtt" and isinstance(value, str):
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {name: value}

    return construct


TemplateLoader.add_constructor("!Ref", _construct("Ref"))
TemplateLoader.add_constructor("!GetAtt", _construct("Fn::GetAtt"))
for _name in _INTRINSICS:
    _tag_target = "Condition" if _name == "Condition" else f"Fn::{_name}"
    TemplateLoader.add_constructor(f"!{_name}", _construct(_tag_target))


def load_template(path: str | Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(Path(path).read_text(), Loader=TemplateLoader)
    return loaded


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in template.get("Resources", {}).items()
        if resource.get("Type") == resource_type
    }


def table_definition(template: dict[str, Any], logical_id: str = "JobTable") -> dict[str, Any]:
    """CreateTable parameters (keys, attributes, indexes, billing, stream) of one of the template's
    tables (the job table by default)."""
    properties = template["Resources"][logical_id]["Properties"]
    definition = {
        key: properties[key]
        for key in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")
        if key in properties
    }
    stream = properties.get("StreamSpecification")
    if stream:
        # CloudFormation's StreamSpecification has no StreamEnabled: declaring it enables it.
        definition["StreamSpecification"] = {"StreamEnabled": True, **stream}
    return definition
