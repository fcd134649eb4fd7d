"""Configuration of the delivery service, from `KAMI_*` environment variables."""

from __future__ import annotations

from kami_events.settings import ServiceSettings


class DeliverySettings(ServiceSettings):
    service_name: str = "delivery"
