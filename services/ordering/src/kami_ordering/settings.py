"""Configuration of the ordering service, from `KAMI_*` environment variables."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from kami_events.settings import ServiceSettings
from kami_ordering.domain.order import SagaTimers


class OrderingSettings(ServiceSettings):
    service_name: str = "ordering"
    http_port: int = Field(default=8104, ge=1, le=65535)

    # The saga's time limits (docs/saga.md); per-offer terms come from catalog.
    ordering_payment_window_minutes: float = Field(default=15, gt=0)
    ordering_auto_delivery_limit_minutes: float = Field(default=30, gt=0)
    ordering_delivery_grace_minutes: float = Field(default=10, ge=0)
    ordering_default_guarantee_window_minutes: float = Field(default=15, gt=0)

    # The deadline poller: how often it looks, and how many orders per pass.
    ordering_deadline_poll_seconds: float = Field(default=1.0, gt=0)
    ordering_deadline_batch_size: int = Field(default=100, ge=1, le=10_000)
    # How often the saga gauges (orders by state, sagas past deadline) are refreshed,
    # and how late a deadline must be to count as missed.
    ordering_metrics_refresh_seconds: float = Field(default=15.0, gt=0)
    ordering_overdue_after_seconds: float = Field(default=60.0, ge=0)

    # A buyer's long poll (GET /orders/{id}?wait_for=...) wakes when this process
    # changes the order, and reads it again this often for a change another replica made.
    ordering_wait_recheck_seconds: float = Field(default=1.0, gt=0, le=30)

    def timers(self) -> SagaTimers:
        return SagaTimers(
            payment_window=timedelta(minutes=self.ordering_payment_window_minutes),
            auto_delivery_limit=timedelta(minutes=self.ordering_auto_delivery_limit_minutes),
            delivery_grace=timedelta(minutes=self.ordering_delivery_grace_minutes),
            default_guarantee_window=timedelta(
                minutes=self.ordering_default_guarantee_window_minutes
            ),
        )
