"""Keys and tokens for tests and the local demo: a fresh ES256 key pair and a
service secret, never the production ones."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from kami_events.catalogue.identity import Role
from kami_events.clock import utc_now
from kami_web.auth import AuthSettings, issue_service_token, issue_user_token


@dataclass(frozen=True)
class AuthKeys:
    private_key_pem: str
    public_key_pem: str
    service_secret: str

    @classmethod
    def generate(cls) -> AuthKeys:
        key = ec.generate_private_key(ec.SECP256R1())
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        public = (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        return cls(private, public, secrets.token_urlsafe(48))

    def settings(self) -> AuthSettings:
        return AuthSettings(
            auth_public_key=self.public_key_pem, service_token_secret=SecretStr(self.service_secret)
        )

    def user_token(
        self,
        user_id: str,
        *roles: Role,
        tier: str | None = "phone",
        ttl: timedelta = timedelta(minutes=5),
    ) -> str:
        return issue_user_token(
            self.private_key_pem,
            user_id,
            set(roles) or {Role.BUYER},
            tier=tier,
            now=utc_now(),
            ttl=ttl,
        )

    def service_token(self, service: str) -> str:
        return issue_service_token(self.service_secret, service)
