"""The session cookie: sealed (AES-GCM), so the browser holds the access
token without being able to read or change it, and the server keeps no
session store.

A session always exists once a page was served: before login it carries
only the CSRF token (session-bound CSRF: every form posts it back and it
must match the sealed one), after login also the tokens identity issued.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

COOKIE_NAME = "kami_session"
# Bound into the seal, so a value sealed for another purpose never opens as a session.
_ASSOCIATED_DATA = b"kami-web-session-v1"


def token_roles(token: str) -> frozenset[str]:
    """The roles an access token carries, read without checking its signature."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return frozenset(str(role) for role in claims.get("roles", []))
    except (IndexError, ValueError, binascii.Error, AttributeError):
        return frozenset()


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Session:
    csrf: str = field(default_factory=new_csrf_token)
    user_id: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    # When the access token runs out (epoch seconds), to refresh before it does.
    access_expires_at: float | None = None
    issued_at: float = field(default_factory=time.time)

    @property
    def logged_in(self) -> bool:
        return self.access_token is not None

    @property
    def roles(self) -> frozenset[str]:
        """The roles the access token was issued with: only to choose which
        links the page shows (every service checks the token itself)."""
        return token_roles(self.access_token) if self.access_token else frozenset()

    def logged_in_as(
        self, user_id: str, access_token: str, refresh_token: str, expires_in: int
    ) -> Session:
        """A new CSRF token at login: one seen before it cannot be replayed after."""
        return Session(
            user_id=user_id,
            access_token=access_token,
            refresh_token=refresh_token,
            access_expires_at=time.time() + expires_in,
        )

    def refreshed(self, access_token: str, refresh_token: str, expires_in: int) -> Session:
        return replace(
            self,
            access_token=access_token,
            refresh_token=refresh_token,
            access_expires_at=time.time() + expires_in,
        )


class SessionSealer:
    def __init__(self, key: bytes, max_age_seconds: int) -> None:
        if len(key) != 32:
            raise ValueError("the session key is 32 bytes")
        self._aead = AESGCM(key)
        self.max_age_seconds = max_age_seconds

    def seal(self, session: Session) -> str:
        nonce = secrets.token_bytes(12)
        plain = json.dumps(asdict(session), separators=(",", ":")).encode()
        sealed = nonce + self._aead.encrypt(nonce, plain, _ASSOCIATED_DATA)
        return base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def open(self, value: str | None) -> Session | None:
        """The session, or None when the cookie is missing, forged, altered or too old."""
        if not value or len(value) > 8192:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            plain = self._aead.decrypt(raw[:12], raw[12:], _ASSOCIATED_DATA)
            data: dict[str, Any] = json.loads(plain)
            session = Session(**data)
        except (binascii.Error, ValueError, InvalidTag, TypeError):
            return None
        if time.time() - session.issued_at > self.max_age_seconds:
            return None
        return session
