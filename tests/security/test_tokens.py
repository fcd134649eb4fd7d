"""Tokens that must not work: expired, signed by another key, altered, of
another algorithm, a user's where a service is required and the reverse,
and a suspended user's (DESIGN §6)."""

from __future__ import annotations

import base64
import hmac
import json
from datetime import timedelta
from uuid import uuid4

import httpx
import jwt
import pytest

from kami_actors import PASSWORD, sign_up
from kami_events.catalogue.identity import Role
from kami_events.clock import utc_now
from kami_market import until
from kami_web.auth import issue_service_token
from kami_web.testing import AuthKeys
from tests.security.world import BUYER, OPERATOR, SELLER, SERVICE, World, fund_wallet, place

# One user route of every service, and the role it needs.
USER_ROUTES = [
    ("identity", "GET", "/me", Role.BUYER),
    ("catalog", "GET", "/sellers/me/offers", Role.SELLER),
    ("inventory", "GET", "/offers", Role.SELLER),
    ("ordering", "GET", "/orders", Role.BUYER),
    ("payment", "GET", "/wallet", Role.BUYER),
    ("delivery", "GET", "/vault", Role.BUYER),
    ("aftersales", "GET", "/tickets", Role.BUYER),
]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def refused(
    world: World, token: str, code: str, routes: list[tuple[str, str, str, Role]] = USER_ROUTES
) -> None:
    for service, method, path, _ in routes:
        response = await world.client(service).request(method, path, headers=bearer(token))
        assert response.status_code == 401, f"{service} {path}: {response.text}"
        assert response.json()["error"]["code"] == code, f"{service} {path}: {response.text}"


async def test_the_genuine_token_works_everywhere(world: World) -> None:
    """The control: the same routes with a token identity issued now."""
    for service, method, path, role in USER_ROUTES:
        token = world.user_token(world.ids["seller_id"], Role.BUYER, role, ttl=timedelta(minutes=5))
        response = await world.client(service).request(method, path, headers=bearer(token))
        assert response.status_code == 200, f"{service} {path}: {response.text}"


async def test_an_expired_token_is_refused_by_every_service(world: World) -> None:
    token = world.user_token(
        world.ids["seller_id"],
        Role.BUYER,
        Role.SELLER,
        ttl=timedelta(minutes=5),
        now_offset=-timedelta(minutes=10),
    )
    await refused(world, token, "token_expired")


async def test_a_token_signed_by_another_key_is_refused_by_every_service(world: World) -> None:
    token = AuthKeys.generate().user_token(world.ids["seller_id"], Role.BUYER, Role.SELLER)
    await refused(world, token, "invalid_token")


async def test_an_altered_token_is_refused(world: World) -> None:
    """The buyer's own token, its roles raised to operator, its signature kept."""
    header, claims, signature = world.tokens[BUYER].split(".")  # type: ignore[union-attr]
    payload = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    payload["roles"] = ["buyer", "operator", "seller", "support"]
    forged = f"{header}.{_b64(payload)}.{signature}"
    await refused(world, forged, "invalid_token")
    response = await world.client("payment").get("/ledger/trial-balance", headers=bearer(forged))
    assert response.status_code == 401


@pytest.mark.parametrize("algorithm", ["none", "HS256"])
async def test_a_token_of_another_algorithm_is_refused(world: World, algorithm: str) -> None:
    """`alg: none`, and HS256 keyed with identity's public key (the classic
    confusion of a verifier that trusts the token's header)."""
    now = int(utc_now().timestamp())
    claims = {
        "sub": world.ids["buyer_id"],
        "kind": "user",
        "roles": ["buyer", "operator"],
        "iss": "kami-identity",
        "aud": "kami",
        "iat": now,
        "exp": now + 300,
    }
    if algorithm == "none":
        token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    else:
        public_key = world.platform.secrets()["KAMI_AUTH_PUBLIC_KEY"]
        token = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}"
        token += (
            "."
            + base64.urlsafe_b64encode(
                hmac.new(public_key.encode(), token.encode(), "sha256").digest()
            )
            .rstrip(b"=")
            .decode()
        )
    await refused(world, token, "invalid_token")


async def test_service_credentials_and_user_tokens_are_not_interchangeable(
    world: World,
) -> None:
    reveal = f"/internal/orders/{world.ids['delivered_order']}/keys/reveal"
    body = {"key_ids": [world.ids["vault_key"]]}
    inventory = world.client("inventory")
    # A service credential is no user token, anywhere.
    await refused(world, world.tokens[SERVICE] or "", "invalid_token")
    # A user token, even an operator's, is no service credential.
    for token in (world.tokens[OPERATOR], world.tokens[SELLER]):
        response = await inventory.post(reveal, json=body, headers=bearer(token or ""))
        assert response.status_code == 401, response.text
    # Nor is a service credential signed with another secret, or expired.
    forged = issue_service_token("x" * 48, "delivery")
    expired = jwt.encode(
        {
            "sub": "delivery",
            "kind": "service",
            "aud": "kami-internal",
            "iat": int(utc_now().timestamp()) - 3600,
            "exp": int(utc_now().timestamp()) - 600,
            "jti": str(uuid4()),
        },
        world.platform.secrets()["KAMI_SERVICE_TOKEN_SECRET"],
        algorithm="HS256",
    )
    for token, code in ((forged, "invalid_token"), (expired, "token_expired")):
        response = await inventory.post(reveal, json=body, headers=bearer(token))
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == code
    genuine = await inventory.post(reveal, json=body, headers=world.headers(SERVICE))
    assert genuine.status_code == 200, genuine.text


async def test_a_suspended_users_token_is_refused(world: World) -> None:
    """Identity refuses a suspended user at once (profile, refresh, login);
    the services that move money or goods learn of the suspension by event
    and refuse the still-unexpired token there: no order, no payment, no
    top-up, no claim."""
    person = await sign_up(world.platform)
    top_up = await fund_wallet(person, 5_000)
    assert top_up
    order_id = await place(person, world.ids["offer"])
    suspended = await world.call(
        OPERATOR,
        "identity",
        "POST",
        f"/users/{person.user_id}/suspension",
        json={"reason": "fraud_suspected"},
    )
    assert suspended.status_code == 200, suspended.text
    token = person.access_token  # still within its lifetime

    me = await world.client("identity").get("/me", headers=bearer(token))
    assert (me.status_code, me.json()["error"]["code"]) == (403, "account_suspended")
    refresh = await world.client("identity").post(
        "/auth/refresh", json={"refresh_token": person.refresh_token}
    )
    assert refresh.status_code == 401, refresh.text
    login = await world.client("identity").post(
        "/auth/login", json={"phone": person.phone, "password": PASSWORD}
    )
    assert (login.status_code, login.json()["error"]["code"]) == (403, "account_suspended")

    async def attempt(service: str, path: str, body: dict[str, object]) -> httpx.Response:
        return await until(
            lambda: world.client(service).post(
                path, json=body, headers={**bearer(token), "Idempotency-Key": uuid4().hex}
            ),
            lambda r: r.status_code == 403,
            timeout=30,
            what=f"{service} to refuse the suspended user",
        )

    attempts: list[tuple[str, str, dict[str, object]]] = [
        ("ordering", "/orders", {"offer_id": world.ids["offer"], "quantity": 1}),
        ("payment", "/payments", {"order_id": order_id, "channel": "wallet"}),
        ("payment", "/wallet/top-ups", {"amount": 1000, "channel": "alipay"}),
        # An upheld claim is a refund: no claims either.
        (
            "aftersales",
            "/tickets",
            {"order_id": order_id, "category": "key_invalid", "description": "不能用"},
        ),
    ]
    for service, path, body in attempts:
        refusal = await attempt(service, path, body)
        assert "suspended" in refusal.json()["error"]["code"], refusal.text
