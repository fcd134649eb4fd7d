"""The identity service on the real servers: its app with the runtime started
(outbox relay and pollers running), driven over HTTP with httpx."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from kami_events.mongo import Document
from kami_events.runtime import ServiceRuntime
from kami_identity.app import create_app
from kami_identity.settings import IdentitySettings
from kami_web.testing import AuthKeys
from tests.conftest import Servers

OPERATOR_PHONE = "13900000001"
PASSWORD = "Correct-horse-42"


def random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@dataclass
class Identity:
    app: FastAPI
    client: httpx.AsyncClient
    runtime: ServiceRuntime
    keys: AuthKeys
    sms_db: AsyncDatabase[Document]
    codes_sent: list[str]

    @property
    def db(self) -> AsyncDatabase[Document]:
        return self.runtime.db

    async def last_code(self, phone: str) -> str:
        message = await self.sms_db["messages"].find_one({"phone": phone}, sort=[("sent_at", -1)])
        assert message is not None, "no SMS was sent"
        found = re.search(r"(?<!\d)\d{6}(?!\d)", message["text"])
        assert found, "the SMS holds no code"
        self.codes_sent.append(found.group())
        return found.group()

    async def sign_up(self, phone: str, password: str = PASSWORD) -> dict[str, Any]:
        """Code, verification, registration and login: the login's tokens."""
        sent = await self.client.post("/auth/otp", json={"phone": phone})
        assert sent.status_code == 202, sent.text
        verified = await self.client.post(
            "/auth/otp/verify", json={"phone": phone, "code": await self.last_code(phone)}
        )
        assert verified.status_code == 200, verified.text
        created = await self.client.post(
            "/users",
            json={
                "verification_token": verified.json()["verification_token"],
                "password": password,
            },
        )
        assert created.status_code == 201, created.text
        login = await self.client.post("/auth/login", json={"phone": phone, "password": password})
        assert login.status_code == 200, login.text
        tokens: dict[str, Any] = login.json()
        assert tokens["user_id"] == created.json()["user_id"]
        return tokens


@pytest.fixture
async def identity(
    servers: Servers, kafka_bootstrap: str, unique: Callable[[str], str]
) -> AsyncIterator[Identity]:
    database = unique("kami_test_identity").replace("-", "_")
    keys = AuthKeys.generate()
    settings = IdentitySettings(
        kafka_bootstrap=kafka_bootstrap,
        mongodb_uri=servers.mongodb_uri,
        mongodb_database=database,
        outbox_poll_interval_seconds=0.05,
        identity_signing_key=keys.private_key_pem,
        identity_id_number_key=random_key(),
        identity_fingerprint_key=random_key(),
        identity_operator_phones=[OPERATOR_PHONE],
        identity_l2_poll_interval_seconds=0.05,
        identity_l2_retry_base_seconds=0.05,
        identity_l2_simulator_timeouts=1,
        identity_argon2_time_cost=1,
        identity_argon2_memory_kib=1024,
        identity_argon2_parallelism=1,
    )
    app = create_app(settings, auth=keys.settings())
    runtime: ServiceRuntime = app.state.runtime
    await runtime.start()
    transport = httpx.ASGITransport(app=app, client=("198.51.100.20", 40000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://identity") as client:
            yield Identity(
                app,
                client,
                runtime,
                keys,
                runtime.mongo[settings.sms_sink_database],
                [],
            )
    finally:
        await runtime.mongo.drop_database(database)
        await runtime.mongo.drop_database(settings.sms_sink_database)
        await runtime.stop()
