"""Configuration of the inventory service, from `KAMI_*` environment variables."""

from __future__ import annotations

from kami_events.settings import ServiceSettings


class InventorySettings(ServiceSettings):
    service_name: str = "inventory"
