"""Authentication for every Kami API (DESIGN §6), in one line per route:

    @router.get("/orders/{order_id}")
    async def get_order(order_id: str, user: CurrentUser) -> ...

    Operator = Annotated[Principal, Depends(require_roles(Role.OPERATOR))]

    @router.post("/sellers/{seller_id}/approve")
    async def approve(seller_id: str, operator: Operator) -> ...

Access tokens are ES256 JWTs signed by identity with its private key; every
other service verifies them with the public key from settings, so no service
but identity can mint one. They are short-lived (identity's setting), which
bounds how long a suspended user's token keeps working.

Service-to-service calls (e.g. delivery asking inventory for a key) carry a
separate credential: an HS256 JWT with `kind: service`, signed with a secret
shared only among services, under its own audience. A user token is never
accepted where a service is required, nor the reverse.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import uuid4

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from kami_events.catalogue.identity import Role
from kami_events.clock import utc_now
from kami_web.errors import ApiError

ISSUER = "kami-identity"
USER_AUDIENCE = "kami"
SERVICE_AUDIENCE = "kami-internal"
USER_ALGORITHM = "ES256"
SERVICE_ALGORITHM = "HS256"
LEEWAY_SECONDS = 5


class AuthSettings(BaseSettings):
    """`KAMI_AUTH_PUBLIC_KEY` (PEM, ES256) verifies user tokens;
    `KAMI_SERVICE_TOKEN_SECRET` signs and verifies service tokens."""

    model_config = SettingsConfigDict(env_prefix="KAMI_", extra="ignore")

    auth_public_key: str = Field(min_length=1)
    service_token_secret: SecretStr = Field(min_length=32)


class Principal(BaseModel):
    """Who is calling: a user with roles, or another Kami service."""

    model_config = ConfigDict(frozen=True)

    subject: str
    kind: str = "user"  # "user" or "service"
    roles: frozenset[Role] = frozenset()
    tier: str | None = None
    token_id: str | None = None

    def has_role(self, role: Role) -> bool:
        return role in self.roles


class TokenVerifier:
    def __init__(self, settings: AuthSettings, *, now: Callable[[], datetime] = utc_now) -> None:
        self._public_key = settings.auth_public_key
        self._service_secret = settings.service_token_secret.get_secret_value()
        self._now = now

    def verify_user(self, token: str) -> Principal:
        claims = self._decode(token, self._public_key, USER_ALGORITHM, USER_AUDIENCE)
        if claims.get("kind", "user") != "user":
            raise ApiError(401, "invalid_token", "A user token is required.")
        try:
            roles = frozenset(Role(r) for r in claims.get("roles", []))
        except ValueError:
            raise ApiError(401, "invalid_token", "The token names an unknown role.") from None
        return Principal(
            subject=str(claims["sub"]),
            roles=roles,
            tier=claims.get("tier"),
            token_id=claims.get("jti"),
        )

    def verify_service(self, token: str) -> Principal:
        claims = self._decode(token, self._service_secret, SERVICE_ALGORITHM, SERVICE_AUDIENCE)
        if claims.get("kind") != "service":
            raise ApiError(401, "invalid_token", "A service credential is required.")
        return Principal(subject=str(claims["sub"]), kind="service", token_id=claims.get("jti"))

    def _decode(self, token: str, key: str, algorithm: str, audience: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=audience,
                issuer=ISSUER if audience == USER_AUDIENCE else None,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "sub"], "verify_iat": False},
            )
        except jwt.ExpiredSignatureError:
            raise ApiError(401, "token_expired", "The access token has expired.") from None
        except jwt.PyJWTError:
            raise ApiError(401, "invalid_token", "The access token is not valid.") from None
        # PyJWT checks exp against the wall clock; also check ours (tests, skew).
        if int(claims["exp"]) + LEEWAY_SECONDS < self._now().timestamp():
            raise ApiError(401, "token_expired", "The access token has expired.")
        return claims


def issue_user_token(
    private_key_pem: str,
    user_id: str,
    roles: frozenset[Role] | set[Role],
    *,
    tier: str | None,
    now: datetime,
    ttl: timedelta,
    token_id: str | None = None,
) -> str:
    """An access token; only identity holds the private key to call this."""
    return jwt.encode(
        {
            "sub": user_id,
            "kind": "user",
            "roles": sorted(r.value for r in roles),
            "tier": tier,
            "iss": ISSUER,
            "aud": USER_AUDIENCE,
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
            "jti": token_id or str(uuid4()),
        },
        private_key_pem,
        algorithm=USER_ALGORITHM,
    )


def issue_service_token(secret: str, service: str, *, ttl: timedelta = timedelta(minutes=5)) -> str:
    """A short-lived credential one Kami service presents to another."""
    now = utc_now()
    return jwt.encode(
        {
            "sub": service,
            "kind": "service",
            "aud": SERVICE_AUDIENCE,
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
            "jti": str(uuid4()),
        },
        secret,
        algorithm=SERVICE_ALGORITHM,
    )


_bearer = HTTPBearer(auto_error=False, description="An access token from identity's /auth/login")


def _verifier(request: Request) -> TokenVerifier:
    verifier = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        raise RuntimeError("app.state.token_verifier is not set; call install_auth(app, ...)")
    return verifier  # type: ignore[no-any-return]


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(
            401, "unauthenticated", "Send an access token: Authorization: Bearer <token>."
        )
    return credentials.credentials


async def current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    return _verifier(request).verify_user(_token(credentials))


async def calling_service(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    return _verifier(request).verify_service(_token(credentials))


CurrentUser = Annotated[Principal, Depends(current_user)]
CallingService = Annotated[Principal, Depends(calling_service)]


def require_roles(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits a user holding any one of `roles`."""
    allowed = frozenset(roles)

    async def check(user: CurrentUser) -> Principal:
        if not (user.roles & allowed):
            names = ", ".join(sorted(r.value for r in allowed))
            raise ApiError(403, "forbidden", f"This needs one of the roles: {names}.")
        return user

    return check


def install_auth(app: Any, verifier: TokenVerifier) -> None:
    app.state.token_verifier = verifier
