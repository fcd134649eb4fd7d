"""The payment service as it runs: ordering's events arrive on Kafka, the
service's own events leave through its outbox relay onto
`kami.payment.payment.v1` and `kami.payment.deposit.v1`.

The topics carry a per-test prefix (`KAMI_TOPIC_PREFIX`), so the service reads
only this test's messages from the start of its topics."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import ConsumerRecord

from kami_events.catalogue.common import RefundReason, RefundSource
from kami_events.catalogue.identity import Role
from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.mongo import connect
from kami_events.serialization import encode
from kami_events.topics import topic_for
from kami_payment.app import create_app
from kami_payment.domain.parties import OrderStatus
from kami_web.testing import AuthKeys
from tests.conftest import Servers
from tests.integration.conftest import eventually, produce_raw
from tests.integration.kafka_helpers import read_topic
from tests.integration.payment.conftest import PIN, payment_settings
from tests.unit.payment.scenario import Purchase, seller_approved


async def test_ordering_events_in_payment_events_out(
    servers: Servers,
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAMI_TOPIC_PREFIX", unique("kt").replace("-", ""))
    keys = AuthKeys.generate()
    settings = payment_settings(servers, kafka_bootstrap=kafka_bootstrap)
    app = create_app(settings, auth=keys.settings())
    runtime = app.state.runtime
    runtime.consumer.group_override = unique("payment-test")
    order = Purchase(
        order_id=unique("order"),
        buyer_id=unique("buyer"),
        seller_id=unique("seller"),
        total=6_600,
        placed_at=datetime.now(UTC),
    )
    versions: dict[str, int] = {}

    async def produce(event: Event, producer: str = "ordering") -> None:
        aggregate_id = getattr(event, "aggregate_id")  # noqa: B009
        versions[aggregate_id] = versions.get(aggregate_id, 0) + 1
        envelope = Envelope.wrap(
            event,
            producer=producer,
            aggregate_id=aggregate_id,
            aggregate_version=versions[aggregate_id],
            correlation_id=getattr(event, "order_id", aggregate_id),
            occurred_at=datetime.now(UTC),
        )
        await produce_raw(
            kafka_bootstrap,
            event.topic(),
            encode(envelope),
            envelope.kafka_key,
            envelope.kafka_headers(),
        )

    await runtime.start()
    try:
        await produce(seller_approved(order.seller_id), producer="identity")
        await produce(order.placed())
        await produce(order.reserved())

        async def reserved() -> bool:
            view = await app.state.payment_service.orders.get(order.order_id)
            return view is not None and view.status is OrderStatus.RESERVED

        await eventually(reserved, message="OrderReserved never reached payment")

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://payment") as client:
            headers = {"Authorization": f"Bearer {keys.user_token(order.buyer_id, Role.BUYER)}"}
            password = {"new_password": PIN}
            await client.put("/wallet/payment-password", json=password, headers=headers)
            top_up = await client.post(
                "/wallet/top-ups", json={"amount": 10_000, "channel": "alipay"}, headers=headers
            )
            await client.post(top_up.json()["pay"]["simulator_pay"])
            paid = await client.post(
                "/payments",
                json={"order_id": order.order_id, "channel": "wallet", "payment_password": PIN},
                headers=headers,
            )
            assert paid.json()["status"] == "confirmed", paid.text

        await produce(order.delivered())
        await produce(
            order.refund_requested(
                unique("refund"), source=RefundSource.ESCROW, reason=RefundReason.CLAIM_UPHELD
            )
        )

        payment_topic = topic_for("payment.payment")
        records = await read_topic(
            kafka_bootstrap,
            payment_topic,
            until=lambda rs: "PaymentRefunded" in _types(rs, order.payment_id),
        )
        assert _types(records, order.payment_id) == [
            "PaymentInitiated",
            "PaymentConfirmed",
            "FundsSettled",
            "PaymentRefunded",
        ]
        by_type = {r["event_type"]: r for r in _bodies(records, order.payment_id)}
        assert by_type["PaymentConfirmed"]["correlation_id"] == order.order_id
        assert by_type["FundsSettled"]["payload"]["net"] == 6_270
        refunded = by_type["PaymentRefunded"]["payload"]
        # Settled at delivery: payment drew the refund from the seller's deposit.
        assert (refunded["source"], refunded["destination"]) == ("seller_deposit", "wallet")
        assert all(r.key == order.payment_id.encode() for r in records if _is(r, order.payment_id))
    finally:
        await runtime.stop()
        # Dropped once the runtime no longer writes (its relay and inbox).
        cleaner = connect(servers.mongodb_uri, app_name="kami-tests")
        await cleaner.drop_database(settings.database_name)
        await cleaner.drop_database(settings.payment_simulator_database)
        await cleaner.close()


def _bodies(records: list[ConsumerRecord[Any, Any]], payment_id: str) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in records if _is(r, payment_id)]


def _is(record: ConsumerRecord[Any, Any], payment_id: str) -> bool:
    return bool(record.key == payment_id.encode())


def _types(records: list[ConsumerRecord[Any, Any]], payment_id: str) -> list[str]:
    return [body["event_type"] for body in _bodies(records, payment_id)]
