from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Annotated

import jwt
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient

from kami_events.catalogue.identity import Role
from kami_web.auth import (
    CallingService,
    CurrentUser,
    Principal,
    TokenVerifier,
    install_auth,
    require_roles,
)
from kami_web.errors import install_error_handlers
from kami_web.testing import AuthKeys

KEYS = AuthKeys.generate()


def client_for(keys: AuthKeys = KEYS) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    install_auth(app, TokenVerifier(keys.settings()))
    router = APIRouter()

    @router.get("/me")
    async def me(user: CurrentUser) -> dict[str, object]:
        return {"id": user.subject, "roles": sorted(user.roles), "tier": user.tier}

    @router.post("/approve")
    async def approve(
        operator: Annotated[Principal, Depends(require_roles(Role.OPERATOR))],
    ) -> dict[str, str]:
        return {"by": operator.subject}

    @router.get("/internal/keys")
    async def internal(service: CallingService) -> dict[str, str]:
        return {"caller": service.subject}

    app.include_router(router)
    return TestClient(app)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_valid_user_token_gives_current_user() -> None:
    token = KEYS.user_token("u1", Role.BUYER, Role.SELLER, tier="real_name")
    response = client_for().get("/me", headers=bearer(token))
    assert response.json() == {"id": "u1", "roles": ["buyer", "seller"], "tier": "real_name"}


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "unauthenticated"),
        ({"Authorization": "Basic dTpw"}, "unauthenticated"),
        (bearer("not.a.jwt"), "invalid_token"),
        (bearer(KEYS.user_token("u1", ttl=timedelta(seconds=-60))), "token_expired"),
        # Signed by another identity's key: forged.
        (bearer(AuthKeys.generate().user_token("u1")), "invalid_token"),
        # A service credential is not a user token.
        (bearer(KEYS.service_token("delivery")), "invalid_token"),
    ],
)
def test_bad_tokens_are_401_with_a_reason(headers: dict[str, str], code: str) -> None:
    response = client_for().get("/me", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code


def hs256_by_hand(claims: dict[str, object], key: bytes) -> str:
    """PyJWT refuses to sign this forgery, so it is built by hand."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_alg_none_and_hs256_with_public_key_are_refused() -> None:
    claims = {"sub": "u1", "roles": ["operator"], "exp": 9999999999, "iat": 0}
    none_token = jwt.encode(claims, "", algorithm="none")
    assert client_for().get("/me", headers=bearer(none_token)).status_code == 401
    # Algorithm confusion: HMAC keyed with the (public) verification key.
    confused = hs256_by_hand(claims, KEYS.public_key_pem.encode())
    assert client_for().get("/me", headers=bearer(confused)).status_code == 401


def test_roles_are_enforced() -> None:
    client = client_for()
    buyer = client.post("/approve", headers=bearer(KEYS.user_token("u1", Role.BUYER)))
    assert buyer.status_code == 403
    assert buyer.json()["error"] == {
        "code": "forbidden",
        "message": "This needs one of the roles: operator.",
    }
    operator = client.post("/approve", headers=bearer(KEYS.user_token("op", Role.OPERATOR)))
    assert operator.json() == {"by": "op"}


def test_service_routes_take_only_service_credentials() -> None:
    client = client_for()
    ok = client.get("/internal/keys", headers=bearer(KEYS.service_token("delivery")))
    assert ok.json() == {"caller": "delivery"}
    as_user = client.get("/internal/keys", headers=bearer(KEYS.user_token("u1", Role.OPERATOR)))
    assert as_user.status_code == 401
    other_secret = AuthKeys.generate().service_token("delivery")
    assert client.get("/internal/keys", headers=bearer(other_secret)).status_code == 401
