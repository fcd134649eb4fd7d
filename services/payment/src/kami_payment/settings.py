"""Configuration of the payment service, from `KAMI_*` environment variables."""

from __future__ import annotations

from kami_events.settings import ServiceSettings


class PaymentSettings(ServiceSettings):
    service_name: str = "payment"
