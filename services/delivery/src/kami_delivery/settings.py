"""Configuration of the delivery service, from `KAMI_*` environment variables.

The vault key has no default: the service does not start without
`KAMI_DELIVERY_VAULT_KEY` (base64 of 32 random bytes, AES-256-GCM). Calls to
inventory carry a service credential signed with `KAMI_SERVICE_TOKEN_SECRET`,
and user tokens are checked with `KAMI_AUTH_PUBLIC_KEY` (both read by
`kami_web.auth.AuthSettings`, as in every service).
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from kami_delivery.adapters.cipher import decode_vault_key
from kami_events.settings import ServiceSettings


class DeliverySettings(ServiceSettings):
    service_name: str = "delivery"
    http_port: int = Field(default=8106, ge=1, le=65535)

    delivery_vault_key: SecretStr

    # Inventory's internal API, where the plaintext of a paid order's keys comes from.
    delivery_inventory_url: str = "http://127.0.0.1:8103"
    delivery_inventory_timeout_seconds: float = Field(default=5.0, gt=0)

    # The priority lane: concurrent workers, how long a claimed job is theirs,
    # how often an idle lane looks for due retries.
    delivery_lane_workers: int = Field(default=4, ge=1, le=64)
    delivery_lane_lease_seconds: float = Field(default=60.0, gt=0)
    delivery_lane_idle_poll_seconds: float = Field(default=1.0, gt=0)
    # Inventory unreachable: bounded retries with capped backoff, then parked.
    delivery_max_attempts: int = Field(default=8, ge=1, le=100)
    delivery_retry_base_seconds: float = Field(default=1.0, gt=0)
    delivery_retry_max_seconds: float = Field(default=60.0, gt=0)

    # Manual delivery: the SLA when the offer names none, and the expiry poller.
    delivery_manual_sla_minutes: int = Field(default=30, ge=1, le=10080)
    delivery_manual_poll_seconds: float = Field(default=5.0, gt=0)

    # The simulated issuer answers key verification for every product (local
    # platform and tests only: `kami_delivery.adapters.issuers`).
    delivery_issuer_simulator_enabled: bool = False
    # Services allowed to ask for key verdicts (never the keys).
    delivery_verify_services: list[str] = Field(default_factory=lambda: ["aftersales"])

    @field_validator("delivery_vault_key")
    @classmethod
    def _is_a_vault_key(cls, value: SecretStr) -> SecretStr:
        decode_vault_key(value.get_secret_value())
        return value
