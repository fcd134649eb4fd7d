"""Bytes on the wire <-> validated envelopes.

Decoding looks up the payload model by `(event_type, schema_version)` and
validates the whole envelope against it; anything else is rejected with an
`EventDecodeError` that says what was wrong.
"""

from __future__ import annotations

import json
from typing import Any, cast

from pydantic import ValidationError

from kami_events.envelope import Envelope, envelope_of
from kami_events.event import EVENT_REGISTRY, Event, UnknownEventType

# Generous for an event, small enough that a runaway producer is caught.
MAX_MESSAGE_BYTES = 1024 * 1024


class EventDecodeError(ValueError):
    """A message that is not a valid Kami event."""


class MalformedEvent(EventDecodeError):
    """Not JSON, not an envelope, or a payload that fails its schema."""


class UnregisteredEvent(EventDecodeError):
    """A well-formed envelope whose event type/version this code does not know."""


def encode(envelope: Envelope[Any]) -> bytes:
    return envelope.model_dump_json().encode()


def decode(raw: bytes | str) -> Envelope[Event]:
    if isinstance(raw, bytes) and len(raw) > MAX_MESSAGE_BYTES:
        raise MalformedEvent(f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedEvent(f"message is not JSON: {exc}") from None
    return decode_document(document)


def decode_document(document: Any) -> Envelope[Event]:
    """Validate an already parsed envelope (from the wire or the event store)."""
    if not isinstance(document, dict):
        raise MalformedEvent(f"envelope must be a JSON object, got {type(document).__name__}")
    event_type = document.get("event_type")
    schema_version = document.get("schema_version")
    if not isinstance(event_type, str) or not isinstance(schema_version, int):
        raise MalformedEvent("envelope needs a string event_type and an integer schema_version")
    try:
        model = EVENT_REGISTRY.lookup(event_type, schema_version)
    except UnknownEventType as exc:
        raise UnregisteredEvent(str(exc)) from None
    try:
        envelope = envelope_of(model).model_validate(document)
    except ValidationError as exc:
        raise MalformedEvent(f"invalid {event_type} v{schema_version}: {_summarise(exc)}") from None
    if envelope.aggregate_type != model.aggregate_type:
        raise MalformedEvent(
            f"{event_type} belongs to {model.aggregate_type}, "
            f"envelope says {envelope.aggregate_type}"
        )
    return cast(Envelope[Event], envelope)


def _summarise(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(p) for p in error["loc"]) or "<root>"
        parts.append(f"{location}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
