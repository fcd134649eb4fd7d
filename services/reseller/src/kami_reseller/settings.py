"""Configuration of the reseller service, from `KAMI_*` environment variables.

`KAMI_RESELLER_SECRET_KEY` (base64 of 32 bytes) encrypts the resellers' API
secrets at rest (AES-256-GCM): a secret must be recoverable to check an HMAC,
so it is encrypted, not hashed. User tokens (operators, the reseller's own
user) are checked with `KAMI_AUTH_PUBLIC_KEY`; calls to delivery's internal
key API carry a service credential signed with `KAMI_SERVICE_TOKEN_SECRET`.
"""

from __future__ import annotations

import base64
import binascii

from pydantic import Field, SecretStr, field_validator

from kami_events.settings import ServiceSettings


class ResellerSettings(ServiceSettings):
    service_name: str = "reseller"
    http_port: int = Field(default=8109, ge=1, le=65535)

    reseller_secret_key: SecretStr
    reseller_delivery_url: str = "http://127.0.0.1:8106"
    reseller_http_timeout_seconds: float = Field(default=5.0, gt=0)

    # Webhooks: each attempt's timeout, and the exponential backoff between attempts.
    reseller_webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    reseller_webhook_base_delay_seconds: float = Field(default=2.0, gt=0)
    reseller_webhook_max_delay_seconds: float = Field(default=1800.0, gt=0)
    reseller_webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    reseller_webhook_poll_seconds: float = Field(default=1.0, gt=0)
    # Expired nonces are swept this often (FerretDB has no TTL indexes).
    reseller_nonce_sweep_seconds: float = Field(default=60.0, gt=0)

    @field_validator("reseller_secret_key")
    @classmethod
    def _secret_key_is_256_bits(cls, value: SecretStr) -> SecretStr:
        try:
            raw = base64.b64decode(value.get_secret_value(), validate=True)
        except (binascii.Error, ValueError) as error:
            raise ValueError("KAMI_RESELLER_SECRET_KEY must be base64") from error
        if len(raw) != 32:
            raise ValueError("KAMI_RESELLER_SECRET_KEY must be 32 bytes (AES-256)")
        return value

    @property
    def secret_key(self) -> bytes:
        return base64.b64decode(self.reseller_secret_key.get_secret_value())
