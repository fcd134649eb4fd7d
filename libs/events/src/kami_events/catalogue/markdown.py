"""The per-topic, per-event tables of `docs/events.md`, generated from the code.

`uv run kami-events catalogue-md` rewrites the part of `docs/events.md`
between `BEGIN_MARKER` and `END_MARKER`; the rest of the page is prose.
Types are read from each event's JSON Schema, so the page says what the wire
says.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from kami_events.catalogue import (
    AGGREGATE_BASES,
    aggregate_base_of,
    catalogue_order,
    published_events,
)
from kami_events.catalogue.common import ID_PATTERN
from kami_events.event import Event
from kami_events.topics import topic_for

DEFAULT_PAGE = Path(__file__).resolve().parents[5] / "docs" / "events.md"

BEGIN_MARKER = "<!-- BEGIN GENERATED CATALOGUE: `uv run kami-events catalogue-md` -->"
END_MARKER = "<!-- END GENERATED CATALOGUE -->"


class MarkersNotFound(ValueError):
    """The page lacks the markers that delimit the generated part."""


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _type(node: dict[str, Any], defs: dict[str, Any]) -> str:
    ref_name = node["$ref"].rsplit("/", 1)[-1] if "$ref" in node else None
    node = _resolve(node, defs)
    if "anyOf" in node:
        return " | ".join(_type(branch, defs) for branch in node["anyOf"])
    if "const" in node:
        return f'`"{node["const"]}"`' if isinstance(node["const"], str) else f"`{node['const']}`"
    if "enum" in node:
        return f"enum `{ref_name or node.get('title', '')}`"
    kind = node.get("type")
    if kind == "string":
        if node.get("format") == "date-time":
            return "datetime (UTC)"
        if node.get("pattern") == ID_PATTERN:
            return "id"
        return str(node.get("format", "string"))
    if kind == "integer":
        return "fen" if node.get("x-unit") == "fen" else "int"
    if kind == "boolean":
        return "bool"
    if kind == "null":
        return "null"
    if kind == "array":
        return f"list[{_type(node.get('items', {}), defs)}]"
    if kind == "object":
        values = node.get("additionalProperties")
        if not isinstance(values, dict):
            patterns = node.get("patternProperties", {})
            values = next(iter(patterns.values()), {}) if patterns else {}
        return f"map[string, {_type(values, defs) if values else 'any'}]"
    return "any"


def _enum_values(node: dict[str, Any], defs: dict[str, Any]) -> list[Any]:
    node = _resolve(node, defs)
    for branch in node.get("anyOf", []):
        if values := _enum_values(branch, defs):
            return values
    return list(node.get("enum", []))


def _bounds(node: dict[str, Any], defs: dict[str, Any]) -> str:
    node = _resolve(node, defs)
    for branch in node.get("anyOf", []):
        if bound := _bounds(branch, defs):
            return bound
    parts = []
    if "exclusiveMinimum" in node:
        parts.append(f"> {node['exclusiveMinimum']}")
    elif "minimum" in node and node["minimum"] != 0:
        parts.append(f"≥ {node['minimum']}")
    if "maximum" in node:
        parts.append(f"≤ {node['maximum']}")
    if "minItems" in node:
        parts.append(f"at least {node['minItems']}")
    return ", ".join(parts)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _field_rows(event: type[Event]) -> list[str]:
    schema = event.model_json_schema()
    defs: dict[str, Any] = schema.get("$defs", {})
    required = set(schema.get("required", ()))
    rows = ["| field | type | notes |", "|---|---|---|"]
    for name, node in schema.get("properties", {}).items():
        notes = []
        if name not in required:
            default = json.dumps(node["default"]) if "default" in node else None
            notes.append(f"optional, default `{default}`" if default else "optional")
        if values := _enum_values(node, defs):
            notes.append("one of " + ", ".join(f"`{v}`" for v in values))
        if bound := _bounds(node, defs):
            notes.append(bound)
        if examples := node.get("examples"):
            notes.append("e.g. " + ", ".join(f"`{e}`" for e in examples))
        if description := node.get("description"):
            notes.append(description)
        rows.append(f"| `{name}` | {_cell(_type(node, defs))} | {_cell('; '.join(notes))} |")
    return rows


def _doc(obj: object) -> str:
    return inspect.cleandoc(obj.__doc__ or "")


def catalogue_markdown() -> str:
    """The generated part of `docs/events.md`, markers included."""
    events = catalogue_order(published_events())
    lines = [BEGIN_MARKER, "", "| topic | producer | Kafka key | events |", "|---|---|---|---|"]
    for base in AGGREGATE_BASES:
        names = ", ".join(
            f"`{e.event_type}`" + (f" v{e.schema_version}" if e.schema_version > 1 else "")
            for e in events
            if aggregate_base_of(e) is base
        )
        service = base.aggregate_type.split(".")[0]
        lines.append(
            f"| `{topic_for(base.aggregate_type)}` | {service} "
            f"| `{base.aggregate_id_field}` | {names} |"
        )
    for base in AGGREGATE_BASES:
        service = base.aggregate_type.split(".")[0]
        lines += [
            "",
            f"### `{base.aggregate_type}` on `{topic_for(base.aggregate_type)}`",
            "",
            f"Producer: **{service}**. Kafka key and aggregate id: `{base.aggregate_id_field}`.",
            "",
            " ".join(_doc(base).split()),
        ]
        for event in (e for e in events if aggregate_base_of(e) is base):
            lines += [
                "",
                f"#### `{event.event_type}` v{event.schema_version}",
                "",
                " ".join(_doc(event).split()),
                "",
                *_field_rows(event),
            ]
    lines += ["", END_MARKER]
    return "\n".join(lines)


def updated_page(page: str) -> str:
    """`page` with its generated part replaced by the current catalogue."""
    start, end = page.find(BEGIN_MARKER), page.find(END_MARKER)
    if start < 0 or end < start:
        raise MarkersNotFound(f"the page needs the markers {BEGIN_MARKER!r} and {END_MARKER!r}")
    return page[:start] + catalogue_markdown() + page[end + len(END_MARKER) :]
