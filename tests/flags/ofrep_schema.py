"""Check response bodies against the schemas of the OFREP OpenAPI document (a copy beside this).

A small JSON-Schema subset, enough for that document: $ref, allOf, oneOf, type, enum,
required, properties, additionalProperties, items. `oneOf` is checked as "at least one":
the document's own alternatives overlap (codeDefaultFlag accepts any object, and an
integer is also a number), so an exact-one reading would reject every valid answer.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

SPEC_PATH = Path(__file__).with_name("ofrep-openapi.yaml")

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


@cache
def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))


def schema(name: str) -> dict[str, Any]:
    return spec()["components"]["schemas"][name]


def problems(instance: Any, name: str) -> list[str]:
    """Why `instance` does not match the named component schema (empty when it does)."""
    return _check(instance, {"$ref": f"#/components/schemas/{name}"}, "$")


def _resolve(ref: str) -> dict[str, Any]:
    node: Any = spec()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _check(instance: Any, node: dict[str, Any], path: str) -> list[str]:
    if "$ref" in node:
        return _check(instance, _resolve(node["$ref"]), path)
    errors: list[str] = []
    for sub in node.get("allOf", ()):
        errors += _check(instance, sub, path)
    if "oneOf" in node and not any(not _check(instance, sub, path) for sub in node["oneOf"]):
        errors.append(f"{path}: matches none of the oneOf alternatives")
    if "type" in node and not _TYPES[node["type"]](instance):
        errors.append(f"{path}: expected {node['type']}, got {type(instance).__name__}")
        return errors
    if "enum" in node and instance not in node["enum"]:
        errors.append(f"{path}: {instance!r} is not one of {node['enum']}")
    if isinstance(instance, dict):
        for key in node.get("required", ()):
            if key not in instance:
                errors.append(f"{path}: {key!r} is required")
        properties = node.get("properties", {})
        for key, value in instance.items():
            if key in properties:
                errors += _check(value, properties[key], f"{path}.{key}")
            elif isinstance(node.get("additionalProperties"), dict):
                errors += _check(value, node["additionalProperties"], f"{path}.{key}")
    if isinstance(instance, list) and "items" in node:
        for index, item in enumerate(instance):
            errors += _check(item, node["items"], f"{path}[{index}]")
    return errors
