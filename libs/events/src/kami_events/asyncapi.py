"""The AsyncAPI 3.0 document of Kami's events, generated from the code.

FastStream's generator does the schema work: every published event gets a
publisher on its topic whose schema is the event's envelope model
(`schema_snapshots.envelope_model`), and `faststream.specification.AsyncAPI`
turns the broker into a specification (payload schemas, their shared
definitions under `components/schemas`, the server, the Kafka bindings).
FastStream makes one channel per publisher; Kafka consumers, however, see one
topic per aggregate type carrying several event types. So the document is
then regrouped into one channel per topic, with one message per event
version (`OrderPlaced.v1`), its headers and its Kafka key, and one `send`
operation per producing aggregate. The dead-letter topic of each service is
documented too.

`uv run kami-events asyncapi` writes `docs/asyncapi.yaml`; `--check` fails
when the committed file is not what the code generates.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from kami_events.event import Event
from kami_events.schema_snapshots import envelope_model, snapshot_name
from kami_events.topics import dead_letter_topic

DEFAULT_OUTPUT = Path(__file__).resolve().parents[4] / "docs" / "asyncapi.yaml"

TITLE = "Kami events"
DESCRIPTION = """\
Every event of Kami, the marketplace for digital card keys (卡密): what each
service publishes on Kafka, generated from `kami_events.catalogue`.

Each message is a JSON envelope (`event_id`, `event_type`, `schema_version`,
`occurred_at`, `producer`, `aggregate_type`, `aggregate_id`,
`aggregate_version`, `correlation_id`, `causation_id`, `traceparent`) around
the event's `payload`. There is one topic per aggregate type,
`kami.<service>.<aggregate>.v1`; the Kafka key is the aggregate id, so the
events of one aggregate stay in order. Headers repeat the type and the ids.
Delivery is at least once: consumers deduplicate by `event_id`.

A change that would break an old consumer is a new `schema_version` of the
event, published on the same topic next to the old one. No event carries a
card key's secret, a password, an OTP or a full ID number.
"""

# The single-node Kafka that deploy/local/stack starts; production brokers come
# from KAMI_KAFKA_BOOTSTRAP. A constant, so that the document does not depend
# on the environment it is generated in.
LOCAL_BOOTSTRAP = "127.0.0.1:19092"

SERVICES = ("identity", "catalog", "ordering", "inventory", "payment", "delivery", "aftersales")

EVENT_HEADERS = "EventHeaders"
DEAD_LETTER_HEADERS_SCHEMA = "DeadLetterHeaders"

DEAD_LETTER_HEADERS: dict[str, str] = {
    "dlq_error_type": "The exception's class name.",
    "dlq_error_message": "The exception's message (truncated).",
    "dlq_error_trace": "The end of the traceback.",
    "dlq_consumer": "The service whose consumer gave up.",
    "dlq_attempts": "How many times the handler was tried.",
    "dlq_source_topic": "Where the message was consumed from.",
    "dlq_source_partition": "Its partition there.",
    "dlq_source_offset": "Its offset there.",
    "dlq_failed_at": "When the consumer gave up (ISO 8601, UTC).",
}


def _published() -> list[type[Event]]:
    from kami_events.catalogue import published_events

    return published_events()


def _doc(obj: object) -> str:
    return inspect.cleandoc(obj.__doc__ or "")


# A full stop ending a sentence, not the one inside "e.g." or "i.e.".
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)\.(?=\s)")


def _summary(text: str) -> str:
    """The first sentence of a docstring, on one line."""
    flat = " ".join(text.split())
    end = _SENTENCE_END.search(flat)
    return flat if end is None else flat[: end.start() + 1]


def _publisher_title(event: type[Event]) -> str:
    return f"{event.topic()}:{snapshot_name(event)}"


def _dead_letter_title(service: str) -> str:
    return f"{dead_letter_topic(service)}:DeadLetter"


def build_broker(events: Iterable[type[Event]] | None = None) -> KafkaBroker:
    """A broker (never connected) with one publisher per event version and one per
    dead-letter topic: what FastStream generates the specification from."""
    broker = KafkaBroker(
        LOCAL_BOOTSTRAP,
        description="The Kafka cluster (in development, the single node started by "
        "deploy/local/stack; in production, KAMI_KAFKA_BOOTSTRAP).",
    )
    for event in _published() if events is None else events:
        broker.publisher(
            event.topic(),
            title=_publisher_title(event),
            description=_doc(event),
            schema=envelope_model(event),
        )
    for service in SERVICES:
        broker.publisher(
            dead_letter_topic(service),
            title=_dead_letter_title(service),
            description=f"Messages the {service} consumer could not handle.",
        )
    return broker


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)}


def _event_headers_schema() -> dict[str, Any]:
    """The Kafka headers of every event message (`Envelope.kafka_headers`)."""

    def text(description: str, **extra: Any) -> dict[str, Any]:
        return {"type": "string", "description": description, **extra}

    return {
        "type": "object",
        "description": "Headers repeat the envelope's type and ids, so that routers and "
        "tools need not parse the body.",
        "properties": {
            "content-type": text("Always JSON.", const="application/json"),
            "event_type": text("As in the envelope."),
            "schema_version": text("As in the envelope, in decimal.", pattern="^[1-9][0-9]*$"),
            "event_id": text("As in the envelope: the deduplication key.", format="uuid"),
            "aggregate_type": text("As in the envelope."),
            "aggregate_id": text("As in the envelope; also the Kafka key."),
            "correlation_id": text("As in the envelope: the order id in a purchase."),
            "causation_id": text("As in the envelope, when set."),
            "traceparent": text("W3C trace context, when set."),
        },
        "required": [
            "content-type",
            "event_type",
            "schema_version",
            "event_id",
            "aggregate_type",
            "aggregate_id",
            "correlation_id",
        ],
    }


def _dead_letter_headers_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The original message's headers, plus these.",
        "properties": {
            header: {"type": "string", "description": description}
            for header, description in DEAD_LETTER_HEADERS.items()
        },
    }


def _kafka_key(description: str, binding_version: str) -> dict[str, Any]:
    return {
        "kafka": {
            "key": {"type": "string", "description": description},
            "bindingVersion": binding_version,
        }
    }


def build_document(events: Iterable[type[Event]] | None = None) -> dict[str, Any]:
    """The AsyncAPI document as plain JSON-compatible data, in a stable order."""
    from kami_events.catalogue import aggregate_base_of, catalogue_order

    events = catalogue_order(list(_published() if events is None else events))
    specification = AsyncAPI(
        build_broker(events),
        title=TITLE,
        version=_package_version(),
        description=DESCRIPTION,
        identifier="urn:kami:events",
        schema_version="3.0.0",
    ).to_specification()
    generated: dict[str, Any] = specification.to_jsonable()
    generated_messages: dict[str, Any] = generated["components"]["messages"]
    generated_channels: dict[str, Any] = generated["channels"]
    schemas: dict[str, Any] = generated["components"]["schemas"]

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}

    by_topic: dict[str, list[type[Event]]] = {}
    for event in events:
        by_topic.setdefault(event.topic(), []).append(event)

    for topic, topic_events in by_topic.items():
        base = aggregate_base_of(topic_events[0])
        aggregate_type = base.aggregate_type
        service = aggregate_type.split(".")[0]
        first = generated_channels[_publisher_title(topic_events[0])]
        channel_messages: dict[str, Any] = {}
        for event in topic_events:
            name = snapshot_name(event)
            generated_message = generated_messages[f"{_publisher_title(event)}:Message"]
            description = _doc(event)
            messages[name] = {
                "name": event.event_type,
                "title": f"{event.event_type} v{event.schema_version}",
                "summary": _summary(description),
                "description": description,
                "contentType": "application/json",
                "correlationId": {
                    "description": "The order id for everything in one purchase.",
                    "location": "$message.header#/correlation_id",
                },
                "headers": _ref("components", "schemas", EVENT_HEADERS),
                "payload": generated_message["payload"],
                "bindings": _kafka_key(
                    f"The aggregate id: the payload's `{base.aggregate_id_field}`.",
                    first["bindings"]["kafka"]["bindingVersion"],
                ),
                "tags": [{"name": service}],
            }
            channel_messages[name] = _ref("components", "messages", name)
        channels[topic] = {
            "address": topic,
            "title": aggregate_type,
            "description": (
                f"Every event of the `{aggregate_type}` aggregate, published by {service}; "
                f"Kafka key = `{base.aggregate_id_field}`.\n\n{_doc(base)}"
            ),
            "servers": first["servers"],
            "messages": channel_messages,
            "bindings": first["bindings"],
        }
        operations[f"{aggregate_type}.publish"] = {
            "action": "send",
            "title": f"{service} publishes {aggregate_type} events",
            "summary": _summary(_doc(base)),
            "channel": _ref("channels", topic),
            "messages": [_ref("channels", topic, "messages", m) for m in channel_messages],
        }

    for service in SERVICES:
        topic = dead_letter_topic(service)
        first = generated_channels[_dead_letter_title(service)]
        name = f"{service}.DeadLetter"
        messages[name] = {
            "name": "DeadLetter",
            "title": f"{service} dead letter",
            "summary": f"A message the {service} consumer gave up on, unchanged.",
            "description": (
                "The original message's bytes and key, unchanged (normally a Kami envelope, "
                "possibly malformed), after bounded retries or at once when it cannot be "
                "decoded. Its original headers are kept and `dlq_*` headers say why."
            ),
            "headers": _ref("components", "schemas", DEAD_LETTER_HEADERS_SCHEMA),
            "payload": {"description": "The original message, any bytes."},
            "bindings": _kafka_key(
                "The original message's key.", first["bindings"]["kafka"]["bindingVersion"]
            ),
            "tags": [{"name": service}],
        }
        channels[topic] = {
            "address": topic,
            "title": f"{service} dead letters",
            "description": (
                f"Messages that the {service} consumer could not handle, kept for "
                "inspection and replay. Read by operators, never by services."
            ),
            "servers": first["servers"],
            "messages": {name: _ref("components", "messages", name)},
            "bindings": first["bindings"],
        }
        operations[f"{service}.dead-letter"] = {
            "action": "send",
            "title": f"{service} dead-letters a message",
            "channel": _ref("channels", topic),
            "messages": [_ref("channels", topic, "messages", name)],
        }

    # Drop the empty payload placeholders FastStream made for the dead-letter publishers.
    payload_schemas = {k: v for k, v in schemas.items() if v}
    payload_schemas[EVENT_HEADERS] = _event_headers_schema()
    payload_schemas[DEAD_LETTER_HEADERS_SCHEMA] = _dead_letter_headers_schema()
    return {
        "asyncapi": generated["asyncapi"],
        "id": generated["id"],
        "info": generated["info"],
        "defaultContentType": generated["defaultContentType"],
        "servers": generated["servers"],
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": dict(sorted(payload_schemas.items())),
        },
    }


def render_yaml(document: dict[str, Any]) -> str:
    """Stable YAML: keys in the document's order, UTF-8, multi-line text as blocks."""
    import yaml  # only the CLI needs it (pyyaml is in the dev group)

    class Dumper(yaml.SafeDumper):
        pass

    def represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
        style = "|" if "\n" in text else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)

    Dumper.add_representer(str, represent_text)
    rendered: str = yaml.dump(
        document, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100
    )
    return rendered


def asyncapi_yaml(events: Iterable[type[Event]] | None = None) -> str:
    return render_yaml(build_document(events))


def _package_version() -> str:
    try:
        return version("kami-events")
    except PackageNotFoundError:  # running from a source tree without metadata
        return "0.0.0"


__all__ = [
    "DEFAULT_OUTPUT",
    "asyncapi_yaml",
    "build_broker",
    "build_document",
    "render_yaml",
]
