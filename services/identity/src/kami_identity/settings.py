"""Configuration of the identity service, from `KAMI_*` environment variables.

Secrets have no defaults; the service does not start without:

- `KAMI_IDENTITY_SIGNING_KEY`: PEM, the EC P-256 private key that signs access tokens;
- `KAMI_IDENTITY_ID_NUMBER_KEY`: base64 of 32 bytes, AES-256-GCM for ID numbers and names;
- `KAMI_IDENTITY_FINGERPRINT_KEY`: base64 of at least 32 bytes, the HMAC key of
  ID-number fingerprints, OTP hashes and refresh-token / phone-proof MACs.

The matching public
key is `KAMI_AUTH_PUBLIC_KEY`, read by `kami_web.auth.AuthSettings` as in
every other service; identity refuses to start if it does not match.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from kami_events.settings import ServiceSettings
from kami_identity.domain.phone import Phone
from kami_identity.domain.tiers import TierTable


class RateLimitSetting(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: int = Field(ge=1)
    window_seconds: int = Field(ge=1)


class RateLimits(BaseModel):
    """`KAMI_IDENTITY_RATE_LIMITS` as JSON overrides any of these."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    otp_per_phone: RateLimitSetting = RateLimitSetting(limit=5, window_seconds=3600)
    otp_per_ip: RateLimitSetting = RateLimitSetting(limit=30, window_seconds=3600)
    login_per_phone: RateLimitSetting = RateLimitSetting(limit=10, window_seconds=900)
    login_per_ip: RateLimitSetting = RateLimitSetting(limit=100, window_seconds=900)
    register_per_ip: RateLimitSetting = RateLimitSetting(limit=20, window_seconds=3600)


PhoneList = Annotated[list[str], NoDecode]


class IdentitySettings(ServiceSettings):
    service_name: str = "identity"

    identity_signing_key: SecretStr
    identity_id_number_key: SecretStr
    identity_fingerprint_key: SecretStr

    # One-time codes.
    identity_otp_ttl_seconds: int = Field(default=300, ge=30)
    identity_otp_max_attempts: int = Field(default=5, ge=1)
    identity_otp_resend_cooldown_seconds: int = Field(default=60, ge=0)
    identity_otp_lock_seconds: int = Field(default=900, ge=1)
    # How long a verified phone may take to finish registration.
    identity_phone_proof_ttl_seconds: int = Field(default=900, ge=60)

    # Tokens: a short access token bounds how long a suspended user's token works.
    identity_access_token_ttl_seconds: int = Field(default=300, ge=30, le=3600)
    identity_refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=300)

    identity_tiers: TierTable = TierTable()
    identity_rate_limits: RateLimits = RateLimits()

    # Phones (comma-separated or a JSON list) whose registration gets a staff role:
    # how the first operator account comes to exist.
    identity_operator_phones: PhoneList = Field(default_factory=list)
    identity_support_phones: PhoneList = Field(default_factory=list)

    # The recording SMS sender's database (the simulated carrier, not identity's
    # data); `<identity's database>_sms_sink` unless set.
    identity_sms_sink_database: str | None = None

    # Advanced (L2) verification: the provider call and its retries.
    identity_l2_provider_timeout_seconds: float = Field(default=10.0, gt=0)
    identity_l2_retry_base_seconds: float = Field(default=5.0, gt=0)
    identity_l2_retry_max_seconds: float = Field(default=300.0, gt=0)
    identity_l2_max_attempts: int = Field(default=10, ge=1)
    identity_l2_poll_interval_seconds: float = Field(default=2.0, gt=0)
    identity_l2_simulator_timeouts: int = Field(default=2, ge=0)

    # An unconfirmed ID-number claim older than this, whose user never got
    # verified, is abandoned (its request crashed) and may be taken over.
    identity_id_claim_grace_seconds: int = Field(default=600, ge=1)
    identity_purge_interval_seconds: float = Field(default=300.0, gt=0)

    # argon2id cost (OWASP's 12 MiB, 3 passes, 1 lane; older hashes are redone
    # at the next login); lower it only in tests.
    identity_argon2_time_cost: int = Field(default=3, ge=1)
    identity_argon2_memory_kib: int = Field(default=12 * 1024, ge=8)
    identity_argon2_parallelism: int = Field(default=1, ge=1)
    # The bounded pool of hashes and checks (as payment's): this many at once
    # bound the memory; beyond `max_queued` waiting, or an estimated wait over
    # `max_wait_seconds`, a login or registration gets 429 with Retry-After.
    identity_password_checks_concurrency: int = Field(default=2, ge=1, le=64)
    identity_password_checks_max_queued: int = Field(default=64, ge=0)
    identity_password_checks_max_wait_seconds: float = Field(default=2.0, gt=0)

    @property
    def sms_sink_database(self) -> str:
        return self.identity_sms_sink_database or f"{self.database_name}_sms_sink"

    @field_validator("identity_operator_phones", "identity_support_phones", mode="before")
    @classmethod
    def _split_phones(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                return json.loads(value)
            return [part for part in value.split(",") if part.strip()]
        return value

    @field_validator("identity_operator_phones", "identity_support_phones")
    @classmethod
    def _valid_phones(cls, value: list[str]) -> list[str]:
        return [Phone.parse(raw).number for raw in value]
