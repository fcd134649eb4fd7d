"""Configuration of the web service, from `KAMI_*` environment variables.

`KAMI_WEB_<SERVICE>_URL` names each service's public HTTP API (the local
ports by default); `KAMI_WEB_SESSION_KEY` is the base64 of the 32-byte
AES-GCM key that seals the session cookie. Without one the process makes
its own at start, so sessions end when it restarts (fine for a laptop; a
deployment with several processes must give them one key).
"""

from __future__ import annotations

import base64
import binascii

from pydantic import Field, SecretStr, field_validator

from kami_events.settings import ServiceSettings

# The backends this service calls, in the local table's order.
BACKENDS = ("identity", "catalog", "inventory", "ordering", "payment", "delivery", "aftersales")


def _local(port: int) -> str:
    return f"http://127.0.0.1:{port}"


class WebSettings(ServiceSettings):
    service_name: str = "web"
    http_port: int = Field(default=8108, ge=1, le=65535)

    web_identity_url: str = _local(8101)
    web_catalog_url: str = _local(8102)
    web_inventory_url: str = _local(8103)
    web_ordering_url: str = _local(8104)
    web_payment_url: str = _local(8105)
    web_delivery_url: str = _local(8106)
    web_aftersales_url: str = _local(8107)

    web_session_key: SecretStr | None = None
    # How long a login lasts in the browser (the cookie; identity's tokens are refreshed).
    web_session_max_age_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    # Secure cookies: "auto" when the request came over TLS (or a proxy said so).
    web_cookie_secure: bool | None = None
    web_default_language: str = Field(default="zh-CN", pattern=r"^(zh-CN|en)$")
    web_upstream_timeout_seconds: float = Field(default=10.0, gt=0)
    # Server push: the longest one long poll to ordering waits (ordering allows 30).
    web_order_wait_seconds: float = Field(default=25.0, gt=0, le=30)

    @field_validator("web_session_key")
    @classmethod
    def _key_is_32_bytes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            raw = base64.b64decode(value.get_secret_value(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("KAMI_WEB_SESSION_KEY must be base64") from None
        if len(raw) != 32:
            raise ValueError("KAMI_WEB_SESSION_KEY must be 32 bytes (base64 of)")
        return value

    def backend_url(self, service: str) -> str:
        url: str = getattr(self, f"web_{service}_url")
        return url.rstrip("/")

    def session_key_bytes(self) -> bytes | None:
        if self.web_session_key is None:
            return None
        return base64.b64decode(self.web_session_key.get_secret_value())
