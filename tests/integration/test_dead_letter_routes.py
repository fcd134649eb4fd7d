"""Every service's `GET /dead-letters` and `POST /dead-letters/redrive` on the
real Kafka and FerretDB: the same code and the same redrive log as
`kami dlq`, so a letter redriven over HTTP is not sent again by the CLI."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from kami_events.catalogue.identity import Role
from kami_events.consumer import EventConsumer, MongoInbox, Received, RetryPolicy
from kami_events.envelope import Envelope
from kami_events.mongo import Document
from kami_events.runtime import ServiceRuntime
from kami_events.serialization import encode
from kami_events.settings import ServiceSettings
from kami_events.topics import dead_letter_topic, topic_for
from kami_web.app import create_app
from kami_web.auth import TokenVerifier, install_auth
from kami_web.testing import AuthKeys
from tests.conftest import Servers
from tests.integration.conftest import eventually, produce_raw
from tests.integration.kafka_helpers import header, read_topic, running_broker
from tests.kami_command import kami
from tests.unit.events.sample_events import CounterIncremented, CounterOpened


def _envelope(event: Any, aggregate_id: str) -> Envelope[Any]:
    return Envelope.wrap(
        event,
        producer="tests",
        aggregate_id=aggregate_id,
        aggregate_version=1,
        correlation_id=aggregate_id,
        occurred_at=datetime.now(UTC),
    )


async def test_an_operator_lists_and_redrives_a_dead_letter_over_http_once(
    servers: Servers,
    kafka_bootstrap: str,
    mongo_client: AsyncMongoClient[Document],
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = unique("kami-t-dlqhttp")
    database_prefix = unique("kami_test_dlqhttp").replace("-", "_")
    monkeypatch.setenv("KAMI_TOPIC_PREFIX", prefix)
    service = "delivery"
    settings = ServiceSettings(
        service_name=service,
        kafka_bootstrap=kafka_bootstrap,
        mongodb_uri=servers.mongodb_uri,
        mongodb_database=f"{database_prefix}_{service}",
    )
    runtime = ServiceRuntime(settings)  # not started: the routes need only its clients
    keys = AuthKeys.generate()
    app = create_app(runtime, title="dead letters")
    install_auth(app, TokenVerifier(keys.settings()))
    operator = {"Authorization": f"Bearer {keys.user_token('op-1', Role.OPERATOR, Role.BUYER)}"}
    seller = {"Authorization": f"Bearer {keys.user_token('s-1', Role.SELLER, Role.BUYER)}"}

    source = topic_for("test.counter")
    poison = _envelope(CounterOpened(name="poison"), unique("counter"))
    fixed = False
    handled: list[str] = []
    consumer = EventConsumer(
        service=service,
        inbox=MongoInbox(runtime.db["inbox"]),
        retry=RetryPolicy(max_attempts=2, base_delay=0.05, max_delay=0.1),
    )

    @consumer.handles(CounterOpened, CounterIncremented)
    async def handle(message: Received[Any]) -> None:
        if not fixed:
            raise RuntimeError("the vault key is not loaded")
        handled.append(str(message.envelope.event_id))

    transport = httpx.ASGITransport(app=app)
    try:
        async with (
            running_broker(kafka_bootstrap, service) as broker,
            httpx.AsyncClient(transport=transport, base_url="http://delivery") as http,
        ):
            consumer.subscribe(broker)
            await produce_raw(
                kafka_bootstrap, source, encode(poison), poison.kafka_key, poison.kafka_headers()
            )
            await broker.start()
            await read_topic(kafka_bootstrap, dead_letter_topic(service), until=lambda rs: rs != [])

            assert (await http.get("/dead-letters")).status_code == 401
            assert (await http.get("/dead-letters", headers=seller)).status_code == 403
            refused = await http.post("/dead-letters/redrive", json={"all": True}, headers=seller)
            assert refused.status_code == 403

            listed = await http.get("/dead-letters", headers=operator)
            assert listed.status_code == 200, listed.text
            assert listed.json()["topic"] == dead_letter_topic(service)
            [letter] = listed.json()["dead_letters"]
            assert letter["event_id"] == str(poison.event_id)
            assert letter["error"] == "RuntimeError: the vault key is not loaded"
            assert letter["source_topic"] == source
            assert letter["redriven_at"] is None

            neither = await http.post("/dead-letters/redrive", json={}, headers=operator)
            assert neither.status_code == 422
            missing = await http.post(
                "/dead-letters/redrive", json={"ids": ["0:999999"]}, headers=operator
            )
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "dead_letter_not_found"

            fixed = True
            sent = await http.post(
                "/dead-letters/redrive", json={"ids": [letter["id"]]}, headers=operator
            )
            assert sent.status_code == 200, sent.text
            assert (sent.json()["sent"], sent.json()["skipped"]) == (1, 0)
            await eventually(lambda: handled == [str(poison.event_id)], message=f"{handled}")

            again = await http.post("/dead-letters/redrive", json={"all": True}, headers=operator)
            assert (again.json()["sent"], again.json()["skipped"]) == (0, 1)
            assert again.json()["outcomes"][0]["why"].startswith("redriven already")
            relisted = await http.get("/dead-letters", headers=operator)
            assert relisted.json()["dead_letters"][0]["redriven_at"] is not None

            # The CLI reads the same redrive log: it sends nothing either.
            env = {
                "KAMI_KAFKA_BOOTSTRAP": kafka_bootstrap,
                "KAMI_MONGODB_URI": servers.mongodb_uri,
                "KAMI_TOPIC_PREFIX": prefix,
                "KAMI_DATABASE_PREFIX": database_prefix,
            }
            cli = await kami("dlq", "redrive", service, "--all", env=env)
            assert cli.code == 0, cli
            assert "0 redriven, 1 skipped" in cli.stdout
    finally:
        await mongo_client.drop_database(f"{database_prefix}_{service}")
        await mongo_client.drop_database(f"{database_prefix}_operations")
        await runtime.mongo.close()

    copies = await read_topic(kafka_bootstrap, source, until=lambda rs: len(rs) >= 2, timeout=5)
    ours = [r for r in copies if header(r, "event_id") == str(poison.event_id)]
    assert len(ours) == 2  # the original and exactly one redrive
    assert handled == [str(poison.event_id)]
