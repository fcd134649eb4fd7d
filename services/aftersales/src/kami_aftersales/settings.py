"""Configuration of the aftersales service, from `KAMI_*` environment variables."""

from __future__ import annotations

from kami_events.settings import ServiceSettings


class AftersalesSettings(ServiceSettings):
    service_name: str = "aftersales"
