"""JSON Schema snapshots of every event, and the check that keeps them honest.

Each published event `(event_type, schema_version)` has a committed snapshot
`libs/events/schemas/<EventType>.v<N>.json`: the JSON Schema of the whole
envelope carrying it (`envelope_model`), with `event_type`, `schema_version`
and `aggregate_type` pinned, pretty-printed with sorted keys.
`uv run kami-events schemas` writes them; `uv run kami-events schemas --check`
(and `tests/unit/events/test_schema_snapshots.py`) compares the code with them.

Compatibility policy
--------------------
A published version is a contract with two kinds of readers: the consumers
on the topics, and the services replaying their own event stores, which keep
every old event for ever. So within one `(event_type, schema_version)`:

**Compatible** (regenerate the snapshot and commit it): the new schema
accepts every message the snapshot accepted (new code still decodes every
event already stored or in flight, and decodes it the same way), and nothing
else changed than

- a new optional field (it has a default, so old messages still validate);
- a field that becomes optional, a widened type (`int` → `int | None`), an
  enum with more values, a relaxed bound (`max_length` 64 → 128), a removed
  pattern or format;
- titles, descriptions, examples and other annotations (`x-...` keywords,
  except `x-unit`).

**Breaking** (declare `schema_version + 1` as a new class; never edit a
published version): anything that may reject or reinterpret a message the
snapshot accepted —

- a field removed or renamed (payloads forbid unknown fields, so stored
  messages carrying it would be rejected);
- a new required field, or an optional field made required;
- a type changed or narrowed (`str` → `int`, `int | None` → `int`);
- an enum value removed, a `const` added or changed (this includes the
  event's `aggregate_type`, i.e. its topic);
- a bound tightened or added (`ge`, `le`, `min_length`, `max_length`,
  `min_items`...), a pattern or format added or changed;
- the unit of an amount changed (`x-unit`, e.g. `fen`);
- the default of an optional field changed (old messages without the field
  would now mean something else: a replay would change state);
- a snapshot whose version is no longer registered (stored events of that
  version would become undecodable).

Anything the checker does not understand counts as breaking: it errs on the
side of a version bump.

Two caveats the schema cannot see. Validators (`model_validator`) are part
of the contract too: a stricter validator is breaking even when the snapshot
is unchanged. And since payloads forbid unknown fields, a consumer running
older code rejects a message carrying a field it does not know yet: deploy
the readers of a new optional field before its writers (or populate it only
from the release after the one that declared it).

A breaking change is a new class with the same `event_type` and the next
`schema_version` (see `kami_events.event`); the old class stays registered
as long as events of its version may exist anywhere. Only a version that was
never published anywhere may be overwritten, deliberately:
`kami-events schemas --accept-breaking OrderPlaced.v1`.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict

from kami_events.envelope import Envelope
from kami_events.event import Event

SNAPSHOT_DIR = Path(__file__).resolve().parents[2] / "schemas"

REGENERATE_COMMAND = "uv run kami-events schemas"

JsonSchema = dict[str, Any]


# -- the schema of an event on the wire ---------------------------------------------------------


def snapshot_name(event: type[Event]) -> str:
    """`OrderPlaced.v1`: the wire identity of an event version."""
    return f"{event.event_type}.v{event.schema_version}"


@cache
def envelope_model(event: type[Event]) -> type[Envelope[Any]]:
    """`Envelope[event]` whose JSON Schema pins `event_type`, `schema_version` and
    `aggregate_type` to this event, titled `<EventType>.v<N>`.

    It validates exactly like `Envelope[event]`; only its schema is more
    precise, so that a schema reader can tell the messages of a topic apart.
    """

    def pin(schema: dict[str, Any]) -> None:
        properties = schema["properties"]
        properties["event_type"]["const"] = event.event_type
        properties["schema_version"]["const"] = event.schema_version
        properties["aggregate_type"]["const"] = event.aggregate_type

    aggregate_id_field = getattr(event, "aggregate_id_field", None)
    key = f"`{aggregate_id_field}`" if aggregate_id_field else "the aggregate id"
    description = (
        f"{event.event_type} v{event.schema_version} in its envelope, on topic "
        f"`{event.topic()}` with Kafka key `aggregate_id` (= payload {key}).\n\n"
        + inspect.cleandoc(event.__doc__ or "")
    ).strip()
    namespace = {
        "__module__": __name__,
        "__doc__": description,
        "model_config": ConfigDict(title=snapshot_name(event), json_schema_extra=pin),
    }
    base: type[Envelope[Any]] = Envelope[event]  # type: ignore[valid-type]
    return type(f"{event.__name__}Envelope", (base,), namespace)


def envelope_schema(event: type[Event]) -> JsonSchema:
    """The JSON Schema (validation mode) of `event` in its envelope."""
    return envelope_model(event).model_json_schema()


def render(schema: Mapping[str, Any]) -> str:
    """Stable text: sorted keys, two-space indent, UTF-8, a final newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# -- comparing two schemas ----------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One difference between a snapshot and the current schema."""

    path: str
    message: str
    breaking: bool

    def __str__(self) -> str:
        return f"{self.path or '<root>'}: {self.message}"


# Keywords that document a schema without changing which messages it accepts.
_ANNOTATIONS = frozenset(
    {"title", "description", "examples", "deprecated", "readOnly", "writeOnly", "$comment"}
)
# Keywords the comparison understands; any other difference counts as breaking.
_UNDERSTOOD = _ANNOTATIONS | {
    "$ref",
    "$defs",
    "default",
    "type",
    "anyOf",
    "oneOf",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "items",
    "minItems",
    "maxItems",
    "uniqueItems",
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "minProperties",
    "maxProperties",
}

_MISSING = object()

# What an integer counts (`fen`): changing it reinterprets every stored amount.
UNIT_KEYWORD = "x-unit"


def _is_extension(keyword: str) -> bool:
    """`x-...` keywords annotate; they never change which messages are valid."""
    return keyword.startswith("x-") and keyword != UNIT_KEYWORD


def _type_of_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _kind(node: JsonSchema) -> str:
    """The one JSON type a (non-union) schema node accepts, or `any`."""
    declared = node.get("type")
    if isinstance(declared, str):
        return declared
    if "const" in node:
        return _type_of_value(node["const"])
    if node.get("enum"):
        kinds = {_type_of_value(v) for v in node["enum"]}
        return kinds.pop() if len(kinds) == 1 else "any"
    if "properties" in node or "additionalProperties" in node:
        return "object"
    if "items" in node:
        return "array"
    return "any"


def _covers(new_kind: str, old_kind: str) -> bool:
    """Whether a node of `new_kind` accepts every value of `old_kind` (ints are numbers)."""
    return new_kind in ("any", old_kind) or (old_kind == "integer" and new_kind == "number")


class _Comparison:
    def __init__(self, old_root: JsonSchema, new_root: JsonSchema) -> None:
        self.old_root = old_root
        self.new_root = new_root
        self.changes: list[Change] = []
        self._expanding: set[tuple[str, str]] = set()

    # -- helpers ------------------------------------------------------------------------------

    def _break(self, path: str, message: str) -> None:
        self.changes.append(Change(path, message, breaking=True))

    def _note(self, path: str, message: str) -> None:
        self.changes.append(Change(path, message, breaking=False))

    @staticmethod
    def _resolve(node: Any, root: JsonSchema) -> JsonSchema:
        if isinstance(node, bool):
            return {} if node else {"not": {}}
        if not isinstance(node, dict):
            return {"not": {}}
        resolved: JsonSchema = node
        seen: set[str] = set()
        while "$ref" in resolved:
            ref = resolved["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#/") or ref in seen:
                break
            seen.add(ref)
            target: Any = root
            for part in ref[2:].split("/"):
                if not isinstance(target, dict):
                    break
                target = target.get(part.replace("~1", "/").replace("~0", "~"), {})
            siblings = {k: v for k, v in resolved.items() if k != "$ref"}
            resolved = {**target, **siblings} if isinstance(target, dict) else siblings
        return resolved

    def _alternatives(self, node: JsonSchema, root: JsonSchema) -> list[JsonSchema]:
        for union in ("anyOf", "oneOf"):
            if union in node:
                branches: list[JsonSchema] = []
                for branch in node[union]:
                    branches.extend(self._alternatives(self._resolve(branch, root), root))
                return branches
        declared = node.get("type")
        if isinstance(declared, list):
            return [{**node, "type": t} for t in declared]
        return [node]

    # -- the comparison -----------------------------------------------------------------------

    def compare(self, old: Any, new: Any, path: str) -> None:
        refs = (
            old.get("$ref", "") if isinstance(old, dict) else "",
            new.get("$ref", "") if isinstance(new, dict) else "",
        )
        recursive = refs != ("", "")
        if recursive and refs in self._expanding:
            return  # a recursive definition already being compared further up
        if recursive:
            self._expanding.add(refs)
        try:
            old_node = self._resolve(old, self.old_root)
            new_node = self._resolve(new, self.new_root)
            old_alts = self._alternatives(old_node, self.old_root)
            new_alts = self._alternatives(new_node, self.new_root)
            if len(old_alts) == 1 and len(new_alts) == 1:
                self._compare_single(old_alts[0], new_alts[0], path)
            else:
                self._compare_unions(old_alts, new_alts, path)
                self._compare_annotations(old_node, new_node, path)
        finally:
            if recursive:
                self._expanding.discard(refs)

    def _compare_unions(
        self, old_alts: list[JsonSchema], new_alts: list[JsonSchema], path: str
    ) -> None:
        for old_alt in old_alts:
            candidates = [n for n in new_alts if _covers(_kind(n), _kind(old_alt))]
            if not candidates:
                accepted = " | ".join(_kind(n) for n in new_alts)
                self._break(path, f"type changed: no longer accepts {_kind(old_alt)} ({accepted})")
                continue
            best: list[Change] | None = None
            for candidate in candidates:
                trial = _Comparison(self.old_root, self.new_root)
                trial._expanding = set(self._expanding)
                trial._compare_single(old_alt, candidate, path)
                breaks = sum(c.breaking for c in trial.changes)
                if best is None or breaks < sum(c.breaking for c in best):
                    best = trial.changes
            self.changes.extend(best or [])
        old_kinds = {_kind(o) for o in old_alts}
        for new_alt in new_alts:
            if not any(_covers(_kind(new_alt), k) for k in old_kinds):
                self._note(path, f"now also accepts {_kind(new_alt)}")

    def _compare_annotations(self, old: JsonSchema, new: JsonSchema, path: str) -> None:
        keys = (set(old) | set(new)) & _ANNOTATIONS | {
            k for k in set(old) | set(new) if _is_extension(k)
        }
        changed = sorted(k for k in keys if old.get(k) != new.get(k))
        if changed:
            self._note(path, f"documentation changed ({', '.join(changed)})")

    def _compare_single(self, old: JsonSchema, new: JsonSchema, path: str) -> None:
        old_kind, new_kind = _kind(old), _kind(new)
        if not _covers(new_kind, old_kind):
            self._break(path, f"type changed from {old_kind} to {new_kind}")
            return
        if new_kind != old_kind:
            self._note(path, f"type widened from {old_kind} to {new_kind}")
        self._compare_annotations(old, new, path)
        if old.get(UNIT_KEYWORD) != new.get(UNIT_KEYWORD):
            self._break(
                path, f"unit changed from {old.get(UNIT_KEYWORD)} to {new.get(UNIT_KEYWORD)}"
            )
        self._compare_values(old, new, path)
        self._compare_bounds(old, new, path, new_kind)
        self._compare_strings(old, new, path)
        if old_kind in ("array", "any") or new_kind == "array":
            self._compare_arrays(old, new, path)
        if old_kind in ("object", "any") or new_kind == "object":
            self._compare_objects(old, new, path)
        for keyword in sorted(
            k for k in (set(old) | set(new)) - _UNDERSTOOD if not _is_extension(k)
        ):
            if old.get(keyword, _MISSING) != new.get(keyword, _MISSING):
                self._break(path, f"`{keyword}` changed (not understood: treated as breaking)")

    def _compare_values(self, old: JsonSchema, new: JsonSchema, path: str) -> None:
        old_values: list[Any] | None = (
            [old["const"]] if "const" in old else list(old["enum"]) if "enum" in old else None
        )
        if "enum" in new:
            allowed = list(new["enum"])
            if old_values is None:
                self._break(path, f"now restricted to the values {allowed}")
            elif removed := [v for v in old_values if v not in allowed]:
                self._break(path, f"enum narrowed: no longer accepts {removed}")
            elif added := [v for v in allowed if v not in old_values]:
                self._note(path, f"enum widened: also accepts {added}")
        if "const" in new:
            if old_values is None:
                self._break(path, f"now restricted to the constant {new['const']!r}")
            elif old_values != [new["const"]]:
                self._break(path, f"constant changed from {old_values} to {new['const']!r}")
        elif "const" in old and "enum" not in new:
            self._note(path, f"no longer restricted to {old['const']!r}")
        elif "enum" in old and "enum" not in new:
            self._note(path, "no longer restricted to an enum")

    def _compare_bounds(self, old: JsonSchema, new: JsonSchema, path: str, kind: str) -> None:
        integral = kind == "integer"
        for side, inclusive, exclusive in (
            ("lower", "minimum", "exclusiveMinimum"),
            ("upper", "maximum", "exclusiveMaximum"),
        ):
            old_bound = _bound(old, inclusive, exclusive, side, integral)
            new_bound = _bound(new, inclusive, exclusive, side, integral)
            if old_bound == new_bound:
                continue
            if new_bound is not None and (
                old_bound is None or _tighter(new_bound, old_bound, side)
            ):
                self._break(path, f"{side} bound tightened from {old_bound} to {new_bound}")
            else:
                self._note(path, f"{side} bound relaxed from {old_bound} to {new_bound}")
        old_step, new_step = old.get("multipleOf"), new.get("multipleOf")
        if old_step != new_step:
            if new_step is not None and (old_step is None or old_step % new_step != 0):
                self._break(path, f"multipleOf changed from {old_step} to {new_step}")
            else:
                self._note(path, f"multipleOf relaxed from {old_step} to {new_step}")

    def _compare_strings(self, old: JsonSchema, new: JsonSchema, path: str) -> None:
        self._compare_sizes(old, new, path, "minLength", "maxLength", "length")
        for keyword in ("pattern", "format"):
            before, after = old.get(keyword), new.get(keyword)
            if before == after:
                continue
            if after is None:
                self._note(path, f"{keyword} {before!r} removed")
            else:
                self._break(path, f"{keyword} changed from {before!r} to {after!r}")

    def _compare_sizes(
        self, old: JsonSchema, new: JsonSchema, path: str, low: str, high: str, what: str
    ) -> None:
        old_low, new_low = old.get(low, 0), new.get(low, 0)
        if new_low > old_low:
            self._break(path, f"minimum {what} raised from {old_low} to {new_low}")
        elif new_low < old_low:
            self._note(path, f"minimum {what} lowered from {old_low} to {new_low}")
        old_high, new_high = old.get(high, math.inf), new.get(high, math.inf)
        if new_high < old_high:
            self._break(path, f"maximum {what} lowered from {old.get(high)} to {new_high}")
        elif new_high > old_high:
            self._note(path, f"maximum {what} raised from {old_high} to {new.get(high)}")

    def _compare_arrays(self, old: JsonSchema, new: JsonSchema, path: str) -> None:
        if "items" in old or "items" in new:
            self.compare(old.get("items", {}), new.get("items", {}), f"{path}[]")
        self._compare_sizes(old, new, path, "minItems", "maxItems", "number of items")
        if new.get("uniqueItems") and not old.get("uniqueItems"):
            self._break(path, "items must now be unique")

    def _compare_objects(self, old: JsonSchema, new: JsonSchema, path: str) -> None:
        old_props: dict[str, Any] = old.get("properties", {})
        new_props: dict[str, Any] = new.get("properties", {})
        old_required = set(old.get("required", ()))
        new_required = set(new.get("required", ()))
        new_extra = new.get("additionalProperties", True)
        for name, old_prop in old_props.items():
            where = f"{path}.{name}" if path else name
            if name not in new_props:
                if new_extra is False:
                    self._break(where, "field removed (or renamed)")
                elif new_extra is not True:
                    self.compare(old_prop, new_extra, where)
                continue
            self.compare(old_prop, new_props[name], where)
            if name in new_required and name not in old_required:
                self._break(where, "field became required")
            elif name in old_required and name not in new_required:
                self._note(where, "field became optional")
            if name not in new_required:
                self._compare_defaults(old_prop, new_props[name], where)
        for name in new_props.keys() - old_props.keys():
            where = f"{path}.{name}" if path else name
            if name in new_required:
                self._break(where, "new required field")
            else:
                self._note(where, "new optional field")
        old_extra = old.get("additionalProperties", True)
        if old_extra != new_extra:
            if new_extra is False:
                self._break(path, "no longer accepts additional fields")
            elif new_extra is True:
                self._note(path, "now accepts any additional field")
            elif old_extra is False:
                self._note(path, "now accepts additional fields")
            else:
                self.compare({} if old_extra is True else old_extra, new_extra, f"{path}{{*}}")
        old_patterns: dict[str, Any] = old.get("patternProperties", {})
        new_patterns: dict[str, Any] = new.get("patternProperties", {})
        for pattern in sorted(old_patterns.keys() | new_patterns.keys()):
            where = f"{path}{{{pattern}}}"
            if pattern in old_patterns and pattern in new_patterns:
                self.compare(old_patterns[pattern], new_patterns[pattern], where)
            else:
                # Key patterns cannot be proven to include one another: a change is a break.
                self._break(where, "key pattern added, removed or changed")
        self._compare_sizes(old, new, path, "minProperties", "maxProperties", "number of keys")

    def _compare_defaults(self, old: Any, new: Any, path: str) -> None:
        before = self._resolve(old, self.old_root).get("default", _MISSING)
        after = self._resolve(new, self.new_root).get("default", _MISSING)
        if before is not _MISSING and before != after:
            shown = "none" if after is _MISSING else repr(after)
            self._break(path, f"default changed from {before!r} to {shown}")


def _bound(
    node: JsonSchema, inclusive: str, exclusive: str, side: str, integral: bool
) -> tuple[float, bool] | None:
    """The effective bound as `(value, is_exclusive)`; integers normalised to inclusive."""
    candidates: list[tuple[float, bool]] = []
    if inclusive in node:
        candidates.append((node[inclusive], False))
    if exclusive in node:
        value = node[exclusive]
        if integral:
            step = math.floor(value) + 1 if side == "lower" else math.ceil(value) - 1
            candidates.append((step, False))
        else:
            candidates.append((value, True))
    if not candidates:
        return None
    tightest = candidates[0]
    for candidate in candidates[1:]:
        if _tighter(candidate, tightest, side):
            tightest = candidate
    return tightest


def _tighter(a: tuple[float, bool], b: tuple[float, bool], side: str) -> bool:
    """Whether bound `a` rejects something bound `b` accepts."""
    if a[0] != b[0]:
        return a[0] > b[0] if side == "lower" else a[0] < b[0]
    return a[1] and not b[1]


def compare_schemas(old: JsonSchema, new: JsonSchema) -> list[Change]:
    """Every difference between a snapshot (`old`) and the current schema (`new`),
    each marked breaking or compatible under the policy of this module."""
    comparison = _Comparison(old, new)
    comparison.compare(old, new, "")
    return comparison.changes


# -- snapshots on disk --------------------------------------------------------------------------


ProblemKind = Literal["missing", "outdated", "breaking", "orphaned", "unreadable"]


@dataclass(frozen=True)
class SnapshotProblem:
    """Why the committed snapshots do not match the code, and what to do about it."""

    name: str
    kind: ProblemKind
    changes: tuple[Change, ...] = field(default=())

    def explain(self) -> str:
        file = f"libs/events/schemas/{self.name}.json"
        listed = "".join(f"\n    - {c}" for c in self.changes if c.breaking) or "".join(
            f"\n    - {c}" for c in self.changes
        )
        event_type, _, version = self.name.rpartition(".v")
        if self.kind == "missing":
            return (
                f"{self.name}: no snapshot {file}. A new event or version: "
                f"run `{REGENERATE_COMMAND}` and commit the file."
            )
        if self.kind == "outdated":
            return (
                f"{self.name}: the schema changed compatibly:{listed}\n"
                f"  Run `{REGENERATE_COMMAND}` and commit the updated {file}."
            )
        if self.kind == "breaking":
            return (
                f"{self.name}: the schema changed in a way that breaks consumers or the "
                f"replay of stored events:{listed}\n"
                f"  A published version never changes. Restore {event_type} v{version} as it "
                f"was and declare the new shape as a new class with "
                f"`event_type = {event_type!r}` and `schema_version = {int(version) + 1}` "
                f"(consumers handle both until no v{version} event remains). Only if "
                f"v{version} was never published anywhere: "
                f"`{REGENERATE_COMMAND} --accept-breaking {self.name}`."
            )
        if self.kind == "orphaned":
            return (
                f"{self.name}: {file} belongs to no registered event. Events of that version "
                f"may still be in event stores and on topics, and `decode` would now reject "
                f"them: keep the class registered (consumers upcast it). Delete the snapshot "
                f"only if that version was never published."
            )
        return f"{self.name}: {file} is not a readable JSON object; regenerate it."


def _published() -> list[type[Event]]:
    from kami_events.catalogue import published_events

    return published_events()


def _load(path: Path) -> JsonSchema | None:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def check_snapshot(event: type[Event], directory: Path = SNAPSHOT_DIR) -> SnapshotProblem | None:
    """The problem with one event's snapshot, or None when it matches the code."""
    name = snapshot_name(event)
    path = directory / f"{name}.json"
    if not path.exists():
        return SnapshotProblem(name, "missing")
    current = envelope_schema(event)
    if path.read_text(encoding="utf-8") == render(current):
        return None
    committed = _load(path)
    if committed is None:
        return SnapshotProblem(name, "unreadable")
    changes = tuple(compare_schemas(committed, current))
    if any(c.breaking for c in changes):
        return SnapshotProblem(name, "breaking", changes)
    return SnapshotProblem(name, "outdated", changes)


def check_snapshots(
    directory: Path = SNAPSHOT_DIR, events: Iterable[type[Event]] | None = None
) -> list[SnapshotProblem]:
    """Every mismatch between the published events and their committed snapshots."""
    events = list(_published() if events is None else events)
    problems = [p for e in events if (p := check_snapshot(e, directory)) is not None]
    known = {snapshot_name(e) for e in events}
    for path in sorted(directory.glob("*.json")):
        if path.stem not in known:
            problems.append(SnapshotProblem(path.stem, "orphaned"))
    return problems


@dataclass
class WriteReport:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: list[SnapshotProblem] = field(default_factory=list)
    orphaned: list[SnapshotProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.refused and not self.orphaned


def write_snapshots(
    directory: Path = SNAPSHOT_DIR,
    events: Iterable[type[Event]] | None = None,
    accept_breaking: Collection[str] = (),
) -> WriteReport:
    """Write the snapshot of every new or compatibly changed event. A breaking change
    is refused (and reported) unless its name is in `accept_breaking`; orphaned
    snapshots are reported, never deleted."""
    events = list(_published() if events is None else events)
    directory.mkdir(parents=True, exist_ok=True)
    report = WriteReport()
    for event in events:
        name = snapshot_name(event)
        problem = check_snapshot(event, directory)
        if problem is None:
            report.unchanged.append(name)
            continue
        if problem.kind == "breaking" and name not in accept_breaking:
            report.refused.append(problem)
            continue
        (directory / f"{name}.json").write_text(render(envelope_schema(event)), encoding="utf-8")
        report.written.append(name)
    report.orphaned = [p for p in check_snapshots(directory, events) if p.kind == "orphaned"]
    return report
