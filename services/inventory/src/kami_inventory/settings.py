"""Configuration of the inventory service, from `KAMI_*` environment variables.

The two secrets have no default: the service refuses to start without them.
`KAMI_INVENTORY_MASTER_KEY` (base64 of 32 bytes) wraps each pool's data key;
`KAMI_INVENTORY_FINGERPRINT_KEY` (base64 of at least 32 bytes) keys the HMAC
that recognises a key uploaded twice without decrypting anything. Losing the
master key loses every key in stock; rotating the fingerprint key makes
earlier uploads unrecognisable as duplicates.
"""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator

from kami_events.settings import ServiceSettings


def _decode_key(value: SecretStr, *, name: str, exact: int | None, minimum: int) -> bytes:
    try:
        raw = base64.b64decode(value.get_secret_value(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name} must be base64") from None
    if exact is not None and len(raw) != exact:
        raise ValueError(f"{name} must decode to exactly {exact} bytes, got {len(raw)}")
    if len(raw) < minimum:
        raise ValueError(f"{name} must decode to at least {minimum} bytes, got {len(raw)}")
    return raw


class InventorySettings(ServiceSettings):
    service_name: str = "inventory"
    http_port: int = Field(default=8103, ge=1, le=65535)

    inventory_master_key: SecretStr
    inventory_fingerprint_key: SecretStr

    # Imports: a whole file must fit in one request.
    inventory_max_import_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    inventory_max_import_keys: int = Field(default=10_000, ge=1, le=100_000)
    inventory_max_key_length: int = Field(default=256, ge=8, le=4096)
    # A key with no expiry of its own (TXT, or an empty CSV cell) and no batch
    # expiry gets its product's validity, else this many days.
    inventory_default_key_validity_days: int = Field(default=365, ge=1, le=3650)
    # How an expiry written without a zone (`2026-12-31 23:59`) is read.
    inventory_seller_timezone: str = "Asia/Shanghai"

    # Never reserve a key that expires within this margin, and block such keys.
    inventory_expiry_margin_minutes: int = Field(default=24 * 60, ge=0)
    # A reservation is held until the order's payment deadline plus this grace,
    # so a payment confirmed at the last second still finds its keys.
    inventory_reservation_grace_seconds: int = Field(default=120, ge=0)

    # The maintenance job: near-expiry blocking and finishing interrupted work.
    inventory_maintenance_interval_seconds: float = Field(default=60.0, gt=0)
    # How often the `kami_inventory_keys` gauge is read from the pools' stock records.
    inventory_metrics_refresh_seconds: float = Field(default=15.0, gt=0)
    # Work left half-done for this long is presumed abandoned by a dead process.
    inventory_stale_work_seconds: float = Field(default=30.0, gt=0)

    # Services whose credential may reveal keys (internal API).
    inventory_reveal_services: list[str] = Field(default_factory=lambda: ["delivery"])

    @field_validator("inventory_master_key")
    @classmethod
    def _master_key_is_256_bits(cls, value: SecretStr) -> SecretStr:
        _decode_key(value, name="KAMI_INVENTORY_MASTER_KEY", exact=32, minimum=32)
        return value

    @field_validator("inventory_fingerprint_key")
    @classmethod
    def _fingerprint_key_is_long_enough(cls, value: SecretStr) -> SecretStr:
        _decode_key(value, name="KAMI_INVENTORY_FINGERPRINT_KEY", exact=None, minimum=32)
        return value

    @field_validator("inventory_seller_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def master_key(self) -> bytes:
        return base64.b64decode(self.inventory_master_key.get_secret_value())

    @property
    def fingerprint_key(self) -> bytes:
        return base64.b64decode(self.inventory_fingerprint_key.get_secret_value())

    @property
    def default_key_validity(self) -> timedelta:
        return timedelta(days=self.inventory_default_key_validity_days)

    @property
    def expiry_margin(self) -> timedelta:
        return timedelta(minutes=self.inventory_expiry_margin_minutes)

    @property
    def reservation_grace(self) -> timedelta:
        return timedelta(seconds=self.inventory_reservation_grace_seconds)
