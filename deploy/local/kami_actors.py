"""People using Kami over HTTP, as they would through the apps: sign up with
a phone code, verify a real name, get approved as a seller, hold tokens.
Used by the demo seeding and by the end-to-end tests."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx

from kami_cli.demo import DEMO_PASSWORD
from kami_events.mongo import connect
from kami_local import Platform

# The password of every demo and test account (local platform only).
PASSWORD = DEMO_PASSWORD
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def next_phone() -> str:
    """A fresh mainland mobile number (random, so repeated runs do not meet)."""
    return f"137{secrets.randbelow(10**8):08d}"


def resident_id(region: str = "110101") -> str:
    """A valid GB 11643 ID number of an adult, random so that runs do not
    collide (sequence codes 000 and 999 are left to the L2 simulator)."""
    year, month, day = (
        1970 + secrets.randbelow(30),
        1 + secrets.randbelow(12),
        1 + secrets.randbelow(28),
    )
    birth = f"{year}{month:02d}{day:02d}"
    body = region + birth + f"{100 + secrets.randbelow(899):03d}"
    remainder = sum(int(d) * w for d, w in zip(body, _WEIGHTS, strict=True)) % 11
    return body + "10X98765432"[remainder]


@dataclass
class Person:
    platform: Platform
    phone: str
    user_id: str = ""
    access_token: str = ""
    refresh_token: str = ""
    roles: list[str] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    def client(self, service: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.platform.url(service), headers=self.headers, timeout=30
        )

    async def call(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with self.client(service) as client:
            return await client.request(method, path, **kwargs)

    async def refresh(self) -> None:
        async with httpx.AsyncClient(base_url=self.platform.url("identity")) as client:
            response = await client.post(
                "/auth/refresh", json={"refresh_token": self.refresh_token}
            )
        response.raise_for_status()
        self._take_tokens(response.json())

    def _take_tokens(self, body: dict[str, Any]) -> None:
        self.user_id = body["user_id"]
        self.access_token = body["access_token"]
        self.refresh_token = body["refresh_token"]


async def _last_code(platform: Platform, phone: str) -> str:
    client = connect(platform.mongodb_uri, app_name="kami-e2e-sms")
    try:
        sink = client[f"{platform.database_prefix}_identity_sms_sink"]["messages"]
        message = await sink.find_one({"phone": phone}, sort=[("sent_at", -1)])
    finally:
        await client.close()
    assert message is not None, f"no SMS reached {phone}"
    found = re.search(r"(?<!\d)\d{6}(?!\d)", message["text"])
    assert found is not None, f"no code in the SMS to {phone}"
    return found.group()


async def sign_up(platform: Platform, phone: str | None = None) -> Person:
    """Register with a phone code and log in, as the app does."""
    person = Person(platform, phone or next_phone())
    async with httpx.AsyncClient(base_url=platform.url("identity"), timeout=30) as identity:
        sent = await identity.post("/auth/otp", json={"phone": person.phone})
        assert sent.status_code == 202, sent.text
        code = await _last_code(platform, person.phone)
        proof = await identity.post("/auth/otp/verify", json={"phone": person.phone, "code": code})
        assert proof.status_code == 200, proof.text
        registered = await identity.post(
            "/users",
            json={"verification_token": proof.json()["verification_token"], "password": PASSWORD},
        )
        assert registered.status_code == 201, registered.text
        login = await identity.post(
            "/auth/login", json={"phone": person.phone, "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
    person._take_tokens(login.json())
    return person


async def verify_real_name(person: Person) -> None:
    response = await person.call(
        "identity", "POST", "/me/real-name", json={"legal_name": "张三", "id_number": resident_id()}
    )
    assert response.status_code == 200, response.text
    await person.refresh()


async def approved_seller(
    platform: Platform, operator: Person, shop: str, *, category: str | None = None
) -> Person:
    """A seller the operator approved (for `category`, which sets its deposit minimum)."""
    seller = await sign_up(platform)
    await verify_real_name(seller)
    body = {"shop_name": shop} | ({"category": category} if category else {})
    approved = await operator.call(
        "identity", "POST", f"/users/{seller.user_id}/seller-approval", json=body
    )
    assert approved.status_code == 200, approved.text
    await seller.refresh()
    return seller
