"""The HTTP layer on fakes: status codes, error bodies, auth and roles."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from kami_events.catalogue.identity import Role
from kami_identity.api import install_rejection_handler, router
from kami_identity.handlers import IdentityPolicy
from kami_web.auth import TokenVerifier, install_auth
from kami_web.errors import install_error_handlers
from tests.unit.identity.data import PASSWORD, resident_id
from tests.unit.identity.fakes import KEYS, Harness, harness

PHONE = "13812345678"
OPERATOR_PHONE = "13900000001"


@pytest.fixture
def h() -> Harness:
    return harness(IdentityPolicy(staff_roles={OPERATOR_PHONE: frozenset({Role.OPERATOR})}))


@pytest.fixture
async def client(h: Harness) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    install_rejection_handler(app)
    install_auth(app, TokenVerifier(KEYS.settings(), now=h.clock))
    app.include_router(router)
    app.state.identity = h.deps
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://identity") as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


async def sign_up(client: httpx.AsyncClient, h: Harness, phone: str) -> dict[str, Any]:
    assert (await client.post("/auth/otp", json={"phone": phone})).status_code == 202
    verified = await client.post(
        "/auth/otp/verify", json={"phone": phone, "code": h.sms.last_code(phone)}
    )
    assert verified.status_code == 200
    token = verified.json()["verification_token"]
    created = await client.post("/users", json={"verification_token": token, "password": PASSWORD})
    assert created.status_code == 201, created.text
    login = await client.post("/auth/login", json={"phone": phone, "password": PASSWORD})
    assert login.status_code == 200
    body: dict[str, Any] = login.json()
    return body


async def test_registration_and_profile_over_http(client: httpx.AsyncClient, h: Harness) -> None:
    tokens = await sign_up(client, h, PHONE)
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 300
    me = (await client.get("/me", headers=bearer(tokens["access_token"]))).json()
    assert me["phone_masked"] == "138****5678"
    assert (me["roles"], me["tier"]) == (["buyer"], "phone")
    assert me["limits"] == {
        "daily_payment_limit": 50_000,
        "delivery_priority": 0,
        "aftersales_priority": 0,
    }
    l1 = await client.post(
        "/me/real-name",
        json={"legal_name": "张三", "id_number": resident_id()},
        headers=bearer(tokens["access_token"]),
    )
    assert l1.status_code == 200 and l1.json()["tier"] == "real_name"
    me = (await client.get("/me", headers=bearer(tokens["access_token"]))).json()
    assert me["id_number_masked"] == f"1101**********{resident_id()[-4:]}"
    assert me["legal_name_masked"] == "张*"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"phone": "12345678901"}, 422, "invalid_phone"),
        ({"phone": "1"}, 422, "invalid_request"),
        ({}, 422, "invalid_request"),
    ],
)
async def test_bad_input_is_a_422_with_a_code(
    client: httpx.AsyncClient, body: dict[str, str], status: int, code: str
) -> None:
    assert error(await client.post("/auth/otp", json=body)) == (status, code)


async def test_refusals_map_to_their_status(client: httpx.AsyncClient, h: Harness) -> None:
    await client.post("/auth/otp", json={"phone": PHONE})
    wrong = await client.post("/auth/otp/verify", json={"phone": PHONE, "code": "000000"})
    right = h.sms.last_code(PHONE)
    if right != "000000":
        assert error(wrong) == (400, "otp_incorrect")
    too_soon = await client.post("/auth/otp", json={"phone": PHONE})
    assert error(too_soon) == (429, "otp_resend_too_soon")
    assert 1 <= int(too_soon.headers["Retry-After"]) <= 60
    login = await client.post("/auth/login", json={"phone": PHONE, "password": PASSWORD})
    assert error(login) == (401, "invalid_credentials")
    refresh = await client.post("/auth/refresh", json={"refresh_token": "rt1.x.1.y"})
    assert error(refresh) == (401, "invalid_refresh_token")
    assert error(await client.get("/me")) == (401, "unauthenticated")


async def test_a_password_never_comes_back_in_an_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/users", json={"verification_token": "pv1.x.1.y", "password": "x" * 200}
    )
    assert response.status_code == 422 and "xxxxxxxx" not in response.text


async def test_operator_routes_need_the_operator_role(
    client: httpx.AsyncClient, h: Harness
) -> None:
    operator = await sign_up(client, h, OPERATOR_PHONE)
    buyer = await sign_up(client, h, PHONE)
    path = f"/users/{buyer['user_id']}/suspension"
    denied = await client.post(
        path, json={"reason": "fraud_suspected"}, headers=bearer(buyer["access_token"])
    )
    assert error(denied) == (403, "forbidden")

    not_yet = await client.post(
        f"/users/{buyer['user_id']}/seller-approval",
        json={"shop_name": "Shop"},
        headers=bearer(operator["access_token"]),
    )
    assert error(not_yet) == (409, "real_name_required")
    not_a_category = await client.post(
        f"/users/{buyer['user_id']}/seller-approval",
        json={"shop_name": "Shop", "category": "Games & More"},
        headers=bearer(operator["access_token"]),
    )
    assert not_a_category.status_code == 422
    missing = await client.post(
        "/users/nobody/suspension",
        json={"reason": "fraud_suspected"},
        headers=bearer(operator["access_token"]),
    )
    assert error(missing) == (404, "user_not_found")


async def test_suspension_makes_me_refuse_a_still_valid_access_token(
    client: httpx.AsyncClient, h: Harness
) -> None:
    operator = await sign_up(client, h, OPERATOR_PHONE)
    buyer = await sign_up(client, h, PHONE)
    suspended = await client.post(
        f"/users/{buyer['user_id']}/suspension",
        json={"reason": "fraud_suspected", "detail": "many chargebacks"},
        headers=bearer(operator["access_token"]),
    )
    assert suspended.status_code == 200 and suspended.json()["suspended"] is True
    me = await client.get("/me", headers=bearer(buyer["access_token"]))
    assert error(me) == (403, "account_suspended")
    refresh = await client.post("/auth/refresh", json={"refresh_token": buyer["refresh_token"]})
    assert error(refresh) == (401, "session_revoked")


async def test_logout_is_204_and_ends_the_session(client: httpx.AsyncClient, h: Harness) -> None:
    tokens = await sign_up(client, h, PHONE)
    out = await client.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert out.status_code == 204
    again = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert error(again) == (401, "session_revoked")


def test_every_route_is_documented_with_its_error_bodies() -> None:
    app = FastAPI()
    app.include_router(router)
    paths = app.openapi()["paths"]
    assert set(paths) == {
        "/auth/otp",
        "/auth/otp/verify",
        "/users",
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
        "/me",
        "/me/real-name",
        "/me/advanced-verification",
        "/users/{user_id}/seller-approval",
        "/users/{user_id}/suspension",
        "/me/seller-application",
        "/seller-applications",
        "/seller-applications/{user_id}/rejection",
        "/verifications/pending",
        "/users/suspended",
        "/tiers",
    }
    for operations in paths.values():
        for operation in operations.values():
            errors = [s for s in operation["responses"] if s.startswith("4")]
            # A route that takes nothing (GET /tiers) has nothing to refuse.
            takes_input = any(operation.get(k) for k in ("parameters", "requestBody", "security"))
            assert errors or not takes_input, operation["summary"]
            assert all(
                operation["responses"][s]["content"]["application/json"]["schema"]["$ref"].endswith(
                    "/ErrorResponse"
                )
                for s in errors
                if s != "422"
            )


async def test_tiers_lists_every_tier_and_what_it_grants(client: httpx.AsyncClient) -> None:
    response = await client.get("/tiers")
    assert response.status_code == 200
    tiers = response.json()
    assert [t["tier"] for t in tiers] == ["phone", "real_name", "advanced"]
    assert [t["daily_payment_limit"] for t in tiers] == [50_000, 500_000, 5_000_000]
    assert tiers[1] == {
        "tier": "real_name",
        "daily_payment_limit": 500_000,
        "delivery_priority": 1,
        "aftersales_priority": 1,
    }
