"""The AsyncAPI document: generated from the code, committed up to date,
deterministic, and saying what the wire says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kami_events.asyncapi import DEFAULT_OUTPUT, SERVICES, asyncapi_yaml, build_document
from kami_events.catalogue import published_events
from kami_events.cli import main
from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.schema_snapshots import envelope_schema, snapshot_name
from kami_events.topics import dead_letter_topic
from tests.unit.events.catalogue_samples import NOW, SAMPLES

REPO = Path(__file__).resolve().parents[3]
COMMITTED = REPO / "docs" / "asyncapi.yaml"
PUBLISHED = published_events()


@pytest.fixture(scope="module")
def generated() -> str:
    return asyncapi_yaml()


@pytest.fixture(scope="module")
def document(generated: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(generated)
    return loaded


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs_in(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs_in(value)]
    if isinstance(node, list):
        return [r for item in node for r in refs_in(item)]
    return []


def test_the_committed_document_is_up_to_date(generated: str) -> None:
    assert DEFAULT_OUTPUT == COMMITTED
    assert COMMITTED.read_text(encoding="utf-8") == generated, (
        "docs/asyncapi.yaml is out of date: run `uv run kami-events asyncapi` and commit it"
    )


def test_generation_is_deterministic_across_processes(generated: str) -> None:
    assert asyncapi_yaml() == generated
    for seed in ("1", "4242"):
        result = subprocess.run(
            [sys.executable, "-m", "kami_events.cli", "asyncapi", "--check"],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr


def test_it_is_an_asyncapi_3_document_about_kami(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] == "Kami events"
    assert "envelope" in document["info"]["description"]
    assert document["defaultContentType"] == "application/json"
    [server] = document["servers"].values()
    assert server["protocol"] == "kafka"


def test_one_channel_per_topic_with_every_event_of_it(document: dict[str, Any]) -> None:
    expected: dict[str, set[str]] = {}
    for event in PUBLISHED:
        expected.setdefault(event.topic(), set()).add(snapshot_name(event))
    for service in SERVICES:
        expected[dead_letter_topic(service)] = {f"{service}.DeadLetter"}

    channels = document["channels"]

    assert set(channels) == set(expected)
    for topic, channel in channels.items():
        assert channel["address"] == topic
        assert channel["bindings"]["kafka"]["topic"] == topic
        assert set(channel["messages"]) == expected[topic]
    assert list(channels["kami.ordering.order.v1"]["messages"])[:3] == [
        "OrderPlaced.v1",
        "OrderReserved.v1",
        "OrderPaid.v1",
    ]


@pytest.mark.parametrize("event", PUBLISHED, ids=[e.__name__ for e in PUBLISHED])
def test_each_message_carries_the_envelope_schema_of_its_event(
    document: dict[str, Any], event: type[Event]
) -> None:
    channel = document["channels"][event.topic()]
    message = resolve(document, channel["messages"][snapshot_name(event)]["$ref"])
    payload = resolve(document, message["payload"]["$ref"])

    assert message["name"] == event.event_type
    assert message["contentType"] == "application/json"
    assert message["correlationId"]["location"] == "$message.header#/correlation_id"
    assert payload["properties"]["event_type"]["const"] == event.event_type
    assert payload["properties"]["schema_version"]["const"] == event.schema_version
    # Exactly the snapshot's schema, with its definitions moved to components.
    expected = envelope_schema(event)
    definitions = expected.pop("$defs")
    rewritten = yaml.safe_load(
        yaml.safe_dump(expected).replace("#/$defs/", "#/components/schemas/")
    )
    assert payload == rewritten
    for name, definition in definitions.items():
        assert document["components"]["schemas"][name] == yaml.safe_load(
            yaml.safe_dump(definition).replace("#/$defs/", "#/components/schemas/")
        )


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    references = refs_in(document)
    assert len(references) > 100
    for reference in references:
        resolve(document, reference)


def test_operations_send_the_messages_of_their_channel(document: dict[str, Any]) -> None:
    operations = document["operations"]
    assert "ordering.order.publish" in operations
    for name, operation in operations.items():
        assert operation["action"] == "send", name
        channel_ref = operation["channel"]["$ref"]
        resolve(document, channel_ref)
        for message in operation["messages"]:
            # AsyncAPI 3: an operation's messages are its channel's messages.
            assert message["$ref"].startswith(channel_ref + "/messages/"), name
            resolve(document, message["$ref"])
    published = {
        m["$ref"].rsplit("/", 1)[-1]
        for o in operations.values()
        for m in o["messages"]
        if not o["channel"]["$ref"].endswith("dead-letter.v1")
    }
    assert published == {snapshot_name(e) for e in PUBLISHED}


def test_component_names_are_valid(document: dict[str, Any]) -> None:
    for section in ("messages", "schemas"):
        for name in document["components"][section]:
            assert re.fullmatch(r"[A-Za-z0-9.\-_]+", name), name


def test_documented_headers_are_the_envelope_headers(document: dict[str, Any]) -> None:
    envelope = Envelope.wrap(
        SAMPLES[published_events()[0]],
        producer="test",
        aggregate_id="a-1",
        aggregate_version=1,
        correlation_id="o-1",
        occurred_at=NOW,
        causation_id="e-0",
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    headers = document["components"]["schemas"]["EventHeaders"]
    assert set(headers["properties"]) == set(envelope.kafka_headers())
    assert set(headers["required"]) == set(
        Envelope.wrap(
            SAMPLES[published_events()[0]],
            producer="test",
            aggregate_id="a-1",
            aggregate_version=1,
            correlation_id="o-1",
            occurred_at=NOW,
        ).kafka_headers()
    )


def test_the_kafka_key_is_documented_as_the_aggregate_id(document: dict[str, Any]) -> None:
    message = document["components"]["messages"]["KeyReserved.v1"]
    assert "`offer_id`" in message["bindings"]["kafka"]["key"]["description"]


def test_build_document_restricted_to_some_events() -> None:
    only = [e for e in PUBLISHED if e.topic() == "kami.payment.deposit.v1"]
    document = build_document(only)
    topics = {c["address"] for c in document["channels"].values()}
    assert topics == {"kami.payment.deposit.v1"} | {dead_letter_topic(s) for s in SERVICES}


def test_cli_check_fails_on_a_stale_file_and_write_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], generated: str
) -> None:
    output = tmp_path / "asyncapi.yaml"
    output.write_text("asyncapi: 3.0.0\n")

    assert main(["asyncapi", "--check", "--output", str(output)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert output.read_text() == "asyncapi: 3.0.0\n"

    assert main(["asyncapi", "--output", str(output)]) == 0
    assert output.read_text(encoding="utf-8") == generated
    assert main(["asyncapi", "--check", "--output", str(output)]) == 0
    missing = tmp_path / "nowhere.yaml"
    assert main(["asyncapi", "--check", "--output", str(missing)]) == 1
    assert "missing" in capsys.readouterr().err
