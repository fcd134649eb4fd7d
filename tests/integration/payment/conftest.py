"""The payment service on the real servers, driven over its HTTP API.

Each test gets its own databases. Other services' events reach it through its
real consumer (`EventConsumer.consume` with the encoded Kafka message), so the
decoding, routing and inbox are the production ones; `test_kafka_path`
goes through Kafka itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from kami_events.catalogue.identity import Role
from kami_events.consumer import IncomingMessage
from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.runtime import ServiceRuntime
from kami_events.serialization import encode
from kami_payment.app import PaymentComponents, create_app
from kami_payment.handlers import PaymentService
from kami_payment.settings import PaymentSettings
from kami_web.testing import AuthKeys
from tests.conftest import Servers

PIN = "258036"


def payment_settings(servers: Servers, **overrides: Any) -> PaymentSettings:
    suffix = uuid4().hex[:12]
    values: dict[str, Any] = {
        "kafka_bootstrap": servers.kafka_bootstrap,
        "mongodb_uri": servers.mongodb_uri,
        "mongodb_database": f"kami_test_payment_{suffix}",
        "payment_simulator_database": f"kami_test_paysim_{suffix}",
        "payment_wechat_pay_secret": SecretStr("wechat-" + "w" * 40),
        "payment_alipay_secret": SecretStr("alipay-" + "a" * 40),
        "payment_simulator_enabled": True,
        "payment_deposit_minimum": 10_000,
        "payment_deposit_minimums": {"premium": 20_000},
        "payment_default_daily_limit": 50_000,
        "payment_platform_fee_bps": 500,
        "payment_callback_grace_seconds": 0,
        "payment_movement_grace_seconds": 0,
        "payment_argon2_time_cost": 1,
        "payment_argon2_memory_kib": 8,
        "payment_argon2_parallelism": 1,
        "outbox_poll_interval_seconds": 0.05,
    }
    values.update(overrides)
    return PaymentSettings(**values)


@dataclass
class PaymentHarness:
    app: FastAPI
    client: httpx.AsyncClient
    keys: AuthKeys
    settings: PaymentSettings
    _versions: dict[str, int] = field(default_factory=dict)

    @property
    def service(self) -> PaymentService:
        service: PaymentService = self.app.state.payment_service
        return service

    @property
    def components(self) -> PaymentComponents:
        components: PaymentComponents = self.app.state.payment_components
        return components

    def auth(self, user_id: str, *roles: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys.user_token(user_id, *roles)}"}

    async def feed(self, event: Event, producer: str = "ordering") -> str:
        """Deliver another service's event through payment's consumer."""
        aggregate_id = getattr(event, "aggregate_id")  # noqa: B009 - every catalogue event
        version = self._versions.get(aggregate_id, 0) + 1
        self._versions[aggregate_id] = version
        envelope = Envelope.wrap(
            event,
            producer=producer,
            aggregate_id=aggregate_id,
            aggregate_version=version,
            correlation_id=getattr(event, "order_id", aggregate_id),
            occurred_at=datetime.now(UTC),
        )
        runtime: ServiceRuntime = self.app.state.runtime
        return await runtime.consumer.consume(
            IncomingMessage(
                value=encode(envelope),
                key=envelope.kafka_key,
                headers=envelope.kafka_headers(),
                topic=event.topic(),
                partition=0,
                offset=version,
            )
        )

    async def payment_events(self, payment_id: str) -> list[str]:
        envelopes = await self.app.state.runtime.store.load("payment.payment", payment_id)
        return [e.event_type for e in envelopes]

    async def deposit_events(self, seller_id: str) -> list[Any]:
        envelopes = await self.app.state.runtime.store.load("payment.deposit", seller_id)
        return [e.payload for e in envelopes]

    async def trial_balance(self) -> dict[str, Any]:
        response = await self.client.get(
            "/ledger/trial-balance", headers=self.auth("operator-1", Role.OPERATOR)
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def funded_wallet(self, buyer: str, amount: int, channel: str = "wechat_pay") -> None:
        """The buyer sets a payment password and tops up through a channel."""
        headers = self.auth(buyer, Role.BUYER)
        wallet = (await self.client.get("/wallet", headers=headers)).json()
        if not wallet["has_payment_password"]:
            response = await self.client.put(
                "/wallet/payment-password", json={"new_password": PIN}, headers=headers
            )
            assert response.status_code == 204, response.text
        top_up = await self.client.post(
            "/wallet/top-ups", json={"amount": amount, "channel": channel}, headers=headers
        )
        assert top_up.status_code == 201, top_up.text
        paid = await self.client.post(top_up.json()["pay"]["simulator_pay"])
        assert paid.status_code == 200 and paid.json()["callback"]["status_code"] == 200, paid.text

    async def pay(self, buyer: str, order_id: str, channel: str, **extra: Any) -> httpx.Response:
        return await self.client.post(
            "/payments",
            json={"order_id": order_id, "channel": channel, **extra},
            headers=self.auth(buyer, Role.BUYER),
        )


@pytest.fixture
async def payment(servers: Servers) -> AsyncIterator[PaymentHarness]:
    keys = AuthKeys.generate()
    settings = payment_settings(servers)
    app = create_app(settings, auth=keys.settings())
    runtime = app.state.runtime
    await runtime.store.ensure_indexes()
    await app.state.payment_components.ensure_indexes()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://payment") as client:
        harness = PaymentHarness(app, client, keys, settings)
        try:
            yield harness
            # DESIGN §9 (2) after every scenario: the books balance, nothing in flight.
            trial = await harness.trial_balance()
            assert trial["total"] == 0 and trial["movements_in_flight"] == 0, trial
            assert trial["balanced"], trial
        finally:
            await runtime.mongo.drop_database(settings.database_name)
            await runtime.mongo.drop_database(settings.payment_simulator_database)
            await runtime.mongo.close()
