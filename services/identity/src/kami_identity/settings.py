"""Configuration of the identity service, from `KAMI_*` environment variables."""

from __future__ import annotations

from kami_events.settings import ServiceSettings


class IdentitySettings(ServiceSettings):
    service_name: str = "identity"
