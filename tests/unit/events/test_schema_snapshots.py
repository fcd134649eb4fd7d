"""The committed JSON Schema snapshots match the code, and the compatibility
checker catches every kind of break it promises to (one case per rule)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from kami_events.catalogue import AggregateEvent, OrderPlaced, published_events
from kami_events.cli import main
from kami_events.envelope import Envelope
from kami_events.money import Fen
from kami_events.schema_snapshots import (
    SNAPSHOT_DIR,
    Change,
    check_snapshots,
    compare_schemas,
    envelope_model,
    envelope_schema,
    render,
    snapshot_name,
    write_snapshots,
)
from tests.unit.events.catalogue_samples import NOW, SAMPLES

# -- the committed snapshots ---------------------------------------------------------------------


def test_every_published_event_has_a_snapshot_that_matches_the_code() -> None:
    problems = check_snapshots()
    assert problems == [], "\n".join(p.explain() for p in problems)


def test_snapshots_are_exactly_the_published_versions() -> None:
    on_disk = {p.stem for p in SNAPSHOT_DIR.glob("*.json")}
    assert on_disk == {snapshot_name(e) for e in published_events()}
    assert "OrderPlaced.v1" in on_disk


def test_a_snapshot_is_the_pinned_schema_of_the_whole_envelope() -> None:
    snapshot = json.loads((SNAPSHOT_DIR / "OrderPlaced.v1.json").read_text(encoding="utf-8"))
    properties = snapshot["properties"]
    assert set(properties) == set(Envelope.model_fields)
    assert properties["event_type"]["const"] == "OrderPlaced"
    assert properties["schema_version"]["const"] == 1
    assert properties["aggregate_type"]["const"] == "ordering.order"
    assert properties["payload"] == {"$ref": "#/$defs/OrderPlaced"}
    assert snapshot["$defs"]["OrderPlaced"]["properties"]["total"]["x-unit"] == "fen"
    assert snapshot["title"] == "OrderPlaced.v1"
    # Stable text: sorted keys, so regenerating never reorders a file.
    text = (SNAPSHOT_DIR / "OrderPlaced.v1.json").read_text(encoding="utf-8")
    assert text == render(json.loads(text))


def test_the_envelope_model_validates_like_the_envelope() -> None:
    envelope = Envelope.wrap(
        SAMPLES[OrderPlaced],
        producer="ordering",
        aggregate_id="o-1",
        aggregate_version=1,
        correlation_id="o-1",
        occurred_at=NOW,
    )
    document = envelope.to_document()
    model = envelope_model(OrderPlaced)
    assert model.model_validate(document).to_document() == document
    assert issubclass(model, Envelope)
    assert envelope_model(OrderPlaced) is model  # cached: one class per event


# -- the checker, rule by rule -------------------------------------------------------------------

BASE: dict[str, Any] = {
    "$defs": {
        "Reason": {"enum": ["out_of_stock", "payment_failed"], "type": "string"},
        "Item": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"sku": {"type": "string"}},
            "required": ["sku"],
        },
    },
    "additionalProperties": False,
    "type": "object",
    "title": "Probe",
    "properties": {
        "order_id": {"type": "string", "minLength": 1, "maxLength": 64},
        "amount": {"type": "integer", "minimum": 0, "x-unit": "fen"},
        "quantity": {"type": "integer", "exclusiveMinimum": 0, "maximum": 100},
        "reason": {"$ref": "#/$defs/Reason"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        "key_ids": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
        "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
        "channel": {"type": "string", "pattern": "^[a-z]+$"},
        "currency": {"const": "CNY", "type": "string", "default": "CNY"},
        "rate": {"type": "number"},
        "fields": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["order_id", "amount", "quantity", "reason", "key_ids", "items", "channel"],
}


def at(schema: dict[str, Any], name: str) -> dict[str, Any]:
    node: dict[str, Any] = schema["properties"][name]
    return node


def remove_field(s: dict[str, Any]) -> None:
    del s["properties"]["note"]


def rename_field(s: dict[str, Any]) -> None:
    s["properties"]["order_ref"] = s["properties"].pop("order_id")
    s["required"] = ["order_ref" if r == "order_id" else r for r in s["required"]]


def add_required_field(s: dict[str, Any]) -> None:
    s["properties"]["seller_id"] = {"type": "string"}
    s["required"].append("seller_id")


def make_required(s: dict[str, Any]) -> None:
    s["required"].append("note")


def change_type(s: dict[str, Any]) -> None:
    at(s, "quantity")["type"] = "string"


def drop_null(s: dict[str, Any]) -> None:
    s["properties"]["note"] = {"type": "string", "default": ""}


def narrow_number_to_integer(s: dict[str, Any]) -> None:
    at(s, "rate")["type"] = "integer"


def narrow_enum(s: dict[str, Any]) -> None:
    s["$defs"]["Reason"]["enum"] = ["out_of_stock"]


def enum_on_free_text(s: dict[str, Any]) -> None:
    at(s, "channel").update(enum=["alipay"])


def change_const(s: dict[str, Any]) -> None:
    at(s, "currency")["const"] = "USD"


def raise_minimum(s: dict[str, Any]) -> None:
    at(s, "amount")["minimum"] = 1


def add_maximum(s: dict[str, Any]) -> None:
    at(s, "amount")["maximum"] = 1_000_000


def lower_maximum(s: dict[str, Any]) -> None:
    at(s, "quantity")["maximum"] = 10


def lower_max_length(s: dict[str, Any]) -> None:
    at(s, "order_id")["maxLength"] = 36


def raise_min_length(s: dict[str, Any]) -> None:
    at(s, "order_id")["minLength"] = 36


def change_pattern(s: dict[str, Any]) -> None:
    at(s, "channel")["pattern"] = "^[a-z_]+$"


def add_format(s: dict[str, Any]) -> None:
    at(s, "order_id")["format"] = "uuid"


def change_item_type(s: dict[str, Any]) -> None:
    at(s, "key_ids")["items"] = {"type": "integer"}


def lower_max_items(s: dict[str, Any]) -> None:
    at(s, "key_ids")["maxItems"] = 5


def require_unique_items(s: dict[str, Any]) -> None:
    at(s, "key_ids")["uniqueItems"] = True


def break_nested_model(s: dict[str, Any]) -> None:
    s["$defs"]["Item"]["properties"]["sku"]["type"] = "integer"


def close_open_map(s: dict[str, Any]) -> None:
    at(s, "fields")["additionalProperties"] = False


def narrow_map_values(s: dict[str, Any]) -> None:
    at(s, "fields")["additionalProperties"] = {"type": "string", "maxLength": 3}


def change_default(s: dict[str, Any]) -> None:
    at(s, "note")["default"] = "n/a"


def change_unit(s: dict[str, Any]) -> None:
    at(s, "amount")["x-unit"] = "yuan"


def add_unknown_keyword(s: dict[str, Any]) -> None:
    at(s, "order_id")["not"] = {"const": "0"}


def open_to_extra_then_add(s: dict[str, Any]) -> None:
    # Not allowing extra fields any more is a break even with the same fields.
    s["additionalProperties"] = False
    s["$defs"]["Item"]["additionalProperties"] = False
    s["$defs"]["Item"]["properties"]["size"] = {"type": "integer"}
    s["$defs"]["Item"]["required"].append("size")


BREAKING: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("removed field", remove_field, "note: field removed"),
    ("renamed field", rename_field, "order_id: field removed"),
    ("new required field", add_required_field, "seller_id: new required field"),
    ("optional made required", make_required, "note: field became required"),
    ("changed type", change_type, "quantity: type changed from integer to string"),
    ("null no longer accepted", drop_null, "note: type changed: no longer accepts null"),
    ("number narrowed to integer", narrow_number_to_integer, "rate: type changed"),
    ("narrowed enum", narrow_enum, "reason: enum narrowed: no longer accepts ['payment_failed']"),
    ("enum added to free text", enum_on_free_text, "channel: now restricted to the values"),
    ("changed const", change_const, "currency: constant changed"),
    ("raised minimum", raise_minimum, "amount: lower bound tightened"),
    ("added maximum", add_maximum, "amount: upper bound tightened"),
    ("lowered maximum", lower_maximum, "quantity: upper bound tightened"),
    ("lowered max length", lower_max_length, "order_id: maximum length lowered"),
    ("raised min length", raise_min_length, "order_id: minimum length raised"),
    ("changed pattern", change_pattern, "channel: pattern changed"),
    ("added format", add_format, "order_id: format changed from None to 'uuid'"),
    ("changed item type", change_item_type, "key_ids[]: type changed"),
    ("fewer items allowed", lower_max_items, "key_ids: maximum number of items lowered"),
    ("unique items required", require_unique_items, "key_ids: items must now be unique"),
    ("nested model broken", break_nested_model, "items[].sku: type changed"),
    ("open map closed", close_open_map, "fields: no longer accepts additional fields"),
    ("map values narrowed", narrow_map_values, "fields{*}: maximum length lowered"),
    ("changed default", change_default, "note: default changed from None to 'n/a'"),
    ("changed unit", change_unit, "amount: unit changed from fen to yuan"),
    ("unknown keyword", add_unknown_keyword, "order_id: `not` changed"),
    ("new required nested field", open_to_extra_then_add, "items[].size: new required field"),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [(m, e) for _, m, e in BREAKING], ids=[n for n, _, _ in BREAKING]
)
def test_the_checker_catches_each_breaking_change(
    mutate: Callable[[dict[str, Any]], None], expected: str
) -> None:
    new = copy.deepcopy(BASE)
    mutate(new)

    changes = compare_schemas(BASE, new)

    breaking = [str(c) for c in changes if c.breaking]
    assert any(expected in b for b in breaking), breaking


def add_optional_field(s: dict[str, Any]) -> None:
    s["properties"]["ticket_id"] = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    s["properties"]["ticket_id"]["default"] = None


def make_optional(s: dict[str, Any]) -> None:
    s["required"].remove("channel")


def accept_null(s: dict[str, Any]) -> None:
    s["properties"]["channel"] = {"anyOf": [at(s, "channel"), {"type": "null"}]}


def widen_integer_to_number(s: dict[str, Any]) -> None:
    at(s, "quantity")["type"] = "number"


def widen_enum(s: dict[str, Any]) -> None:
    s["$defs"]["Reason"]["enum"].append("buyer_cancelled")


def relax_bounds(s: dict[str, Any]) -> None:
    at(s, "order_id")["maxLength"] = 128
    del at(s, "quantity")["maximum"]
    at(s, "key_ids")["maxItems"] = 100


def equivalent_integer_bound(s: dict[str, Any]) -> None:
    del at(s, "quantity")["exclusiveMinimum"]
    at(s, "quantity")["minimum"] = 1


def remove_pattern(s: dict[str, Any]) -> None:
    del at(s, "channel")["pattern"]


def redocument(s: dict[str, Any]) -> None:
    at(s, "amount")["description"] = "What the buyer pays, in fen."
    at(s, "amount")["x-example-source"] = "docs"
    s["title"] = "Probe v1"


def rename_definition(s: dict[str, Any]) -> None:
    s["$defs"]["CancelReason"] = s["$defs"].pop("Reason")
    at(s, "reason")["$ref"] = "#/$defs/CancelReason"


def reorder_required(s: dict[str, Any]) -> None:
    s["required"].reverse()


COMPATIBLE: list[tuple[str, Callable[[dict[str, Any]], None], str | None]] = [
    ("new optional field", add_optional_field, "ticket_id: new optional field"),
    ("required made optional", make_optional, "channel: field became optional"),
    ("null now accepted", accept_null, "channel: now also accepts null"),
    ("integer widened to number", widen_integer_to_number, "quantity: type widened"),
    ("widened enum", widen_enum, "reason: enum widened"),
    ("relaxed bounds", relax_bounds, "order_id: maximum length raised"),
    ("equivalent integer bound", equivalent_integer_bound, None),
    ("removed pattern", remove_pattern, "channel: pattern '^[a-z]+$' removed"),
    ("documentation", redocument, "amount: documentation changed"),
    ("renamed definition", rename_definition, None),
    ("reordered required", reorder_required, None),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [(m, e) for _, m, e in COMPATIBLE], ids=[n for n, _, _ in COMPATIBLE]
)
def test_the_checker_lets_compatible_changes_through(
    mutate: Callable[[dict[str, Any]], None], expected: str | None
) -> None:
    new = copy.deepcopy(BASE)
    mutate(new)

    changes = compare_schemas(BASE, new)

    assert [str(c) for c in changes if c.breaking] == []
    if expected is not None:
        assert any(expected in str(c) for c in changes), [str(c) for c in changes]


def test_an_unchanged_schema_has_no_changes() -> None:
    assert compare_schemas(BASE, copy.deepcopy(BASE)) == []
    for event in published_events():
        assert compare_schemas(envelope_schema(event), envelope_schema(event)) == []


def test_recursive_definitions_terminate() -> None:
    tree: dict[str, Any] = {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}},
            }
        },
        "$ref": "#/$defs/Node",
    }
    assert compare_schemas(tree, copy.deepcopy(tree)) == []


def test_the_real_envelope_schemas_are_compared_through_their_refs() -> None:
    old = envelope_schema(OrderPlaced)
    new = copy.deepcopy(old)
    new["$defs"]["DeliveryMode"]["enum"] = ["auto"]
    del new["$defs"]["OrderPlaced"]["properties"]["buyer_fields"]

    breaking = {str(c) for c in compare_schemas(old, new) if c.breaking}

    assert breaking == {
        "payload.delivery_mode: enum narrowed: no longer accepts ['manual']",
        "payload.buyer_fields: field removed (or renamed)",
    }


# -- snapshots on disk, with events declared here (outside the published catalogue) -------------


class ProbeEvent(AggregateEvent):
    abstract = True
    aggregate_type: ClassVar[str] = "test.probe"
    aggregate_id_field: ClassVar[str] = "probe_id"

    probe_id: str


class SnapshotProbe(ProbeEvent):
    """A test event: the shape the snapshot tests change."""

    amount: Fen
    note: str | None = None


class SnapshotProbeV2(ProbeEvent):
    """The next version of SnapshotProbe: `amount` renamed `total`."""

    event_type: ClassVar[str] = "SnapshotProbe"
    schema_version: ClassVar[int] = 2

    total: Fen


def test_test_events_are_not_part_of_the_published_catalogue() -> None:
    assert SnapshotProbe not in published_events()
    assert snapshot_name(SnapshotProbeV2) == "SnapshotProbe.v2"


def snapshot_without(field: str) -> str:
    schema = envelope_schema(SnapshotProbe)
    del schema["$defs"]["SnapshotProbe"]["properties"][field]
    schema["$defs"]["SnapshotProbe"]["required"] = [
        r for r in schema["$defs"]["SnapshotProbe"].get("required", []) if r != field
    ]
    return render(schema)


def snapshot_with_extra_field() -> str:
    schema = envelope_schema(SnapshotProbe)
    schema["$defs"]["SnapshotProbe"]["properties"]["seller_id"] = {"type": "string"}
    return render(schema)


def test_a_new_event_without_a_snapshot_fails(tmp_path: Path) -> None:
    [problem] = check_snapshots(tmp_path, [SnapshotProbe])
    assert problem.kind == "missing"
    assert "uv run kami-events schemas" in problem.explain()


def test_written_snapshots_then_match(tmp_path: Path) -> None:
    report = write_snapshots(tmp_path, [SnapshotProbe, SnapshotProbeV2])
    assert report.written == ["SnapshotProbe.v1", "SnapshotProbe.v2"]
    assert check_snapshots(tmp_path, [SnapshotProbe, SnapshotProbeV2]) == []
    again = write_snapshots(tmp_path, [SnapshotProbe, SnapshotProbeV2])
    assert again.written == []
    assert again.unchanged == ["SnapshotProbe.v1", "SnapshotProbe.v2"]


def test_a_compatible_change_asks_for_regeneration(tmp_path: Path) -> None:
    # The snapshot predates `note`: adding an optional field is compatible.
    (tmp_path / "SnapshotProbe.v1.json").write_text(snapshot_without("note"))

    [problem] = check_snapshots(tmp_path, [SnapshotProbe])

    assert problem.kind == "outdated"
    assert "payload.note: new optional field" in problem.explain()
    assert "Run `uv run kami-events schemas`" in problem.explain()
    assert write_snapshots(tmp_path, [SnapshotProbe]).written == ["SnapshotProbe.v1"]
    assert check_snapshots(tmp_path, [SnapshotProbe]) == []


def test_a_breaking_change_asks_for_a_new_version_and_is_not_overwritten(tmp_path: Path) -> None:
    # The snapshot has `seller_id`, which the code dropped: stored events carry it.
    path = tmp_path / "SnapshotProbe.v1.json"
    path.write_text(snapshot_with_extra_field())

    [problem] = check_snapshots(tmp_path, [SnapshotProbe])

    assert problem.kind == "breaking"
    explanation = problem.explain()
    assert "payload.seller_id: field removed" in explanation
    assert "schema_version = 2" in explanation
    assert "--accept-breaking SnapshotProbe.v1" in explanation
    report = write_snapshots(tmp_path, [SnapshotProbe])
    assert not report.ok
    assert [p.name for p in report.refused] == ["SnapshotProbe.v1"]
    assert path.read_text() == snapshot_with_extra_field()  # untouched
    forced = write_snapshots(tmp_path, [SnapshotProbe], accept_breaking={"SnapshotProbe.v1"})
    assert forced.written == ["SnapshotProbe.v1"]
    assert check_snapshots(tmp_path, [SnapshotProbe]) == []


def test_a_dropped_version_is_reported_not_deleted(tmp_path: Path) -> None:
    write_snapshots(tmp_path, [SnapshotProbe, SnapshotProbeV2])

    # v1's class disappears from the code: its stored events would be undecodable.
    problems = check_snapshots(tmp_path, [SnapshotProbeV2])

    assert [(p.name, p.kind) for p in problems] == [("SnapshotProbe.v1", "orphaned")]
    assert "keep the class registered" in problems[0].explain()
    report = write_snapshots(tmp_path, [SnapshotProbeV2])
    assert not report.ok
    assert (tmp_path / "SnapshotProbe.v1.json").exists()


def test_an_unreadable_snapshot_is_reported(tmp_path: Path) -> None:
    (tmp_path / "SnapshotProbe.v1.json").write_text("{not json")
    [problem] = check_snapshots(tmp_path, [SnapshotProbe])
    assert problem.kind == "unreadable"


def test_changes_read_well() -> None:
    assert str(Change("payload.total", "field removed", breaking=True)) == (
        "payload.total: field removed"
    )
    assert str(Change("", "title changed", breaking=False)) == "<root>: title changed"


# -- the command ---------------------------------------------------------------------------------


def test_cli_check_passes_on_the_committed_snapshots(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "--check"]) == 0
    assert "matches the code" in capsys.readouterr().out


def test_cli_check_fails_with_instructions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "OrderPlaced.v1.json").write_text(
        render({**envelope_schema(OrderPlaced), "required": []})
    )

    assert main(["schemas", "--check", "--dir", str(tmp_path)]) == 1

    err = capsys.readouterr().err
    assert "OrderPlaced.v1: the schema changed in a way that breaks" in err
    assert "OrderReserved.v1: no snapshot" in err
    assert list(tmp_path.iterdir()) == [tmp_path / "OrderPlaced.v1.json"]  # wrote nothing


def test_cli_writes_snapshots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "--dir", str(tmp_path)]) == 0
    assert {p.stem for p in tmp_path.iterdir()} == {snapshot_name(e) for e in published_events()}
    assert "written" in capsys.readouterr().out
    assert main(["schemas", "--check", "--dir", str(tmp_path)]) == 0
