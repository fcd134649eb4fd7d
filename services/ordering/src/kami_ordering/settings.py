"""Configuration of the ordering service, from `KAMI_*` environment variables."""

from __future__ import annotations

from kami_events.settings import ServiceSettings


class OrderingSettings(ServiceSettings):
    service_name: str = "ordering"
