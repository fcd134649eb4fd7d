"""Configuration of the aftersales service, from `KAMI_*` environment variables.

Calls to delivery (key verification) carry a service credential signed with
`KAMI_SERVICE_TOKEN_SECRET`; user tokens are checked with
`KAMI_AUTH_PUBLIC_KEY` (both read by `kami_web.auth.AuthSettings`).
"""

from __future__ import annotations

from pydantic import Field

from kami_events.settings import ServiceSettings


class AftersalesSettings(ServiceSettings):
    service_name: str = "aftersales"
    http_port: int = Field(default=8107, ge=1, le=65535)

    # Delivery's internal key verification, and ordering's order timeline.
    aftersales_delivery_url: str = "http://127.0.0.1:8106"
    aftersales_ordering_url: str = "http://127.0.0.1:8104"
    aftersales_http_timeout_seconds: float = Field(default=5.0, gt=0)

    # An upheld claim refunding more than this (fen) waits for an agent.
    aftersales_auto_refund_max: int = Field(default=50_000, ge=0)

    # SLA per escalation level; the poller that escalates breached tickets.
    aftersales_agent_sla_minutes: int = Field(default=240, ge=1)
    aftersales_senior_agent_sla_minutes: int = Field(default=120, ge=1)
    aftersales_operator_sla_minutes: int = Field(default=480, ge=1)
    aftersales_sla_poll_seconds: float = Field(default=5.0, gt=0)

    # Issue rates: over the warning rate a seller (or offer) is flagged and
    # demoted in search, over the critical one delisted; in basis points of
    # delivered orders over the rolling window, judged from min_orders on.
    aftersales_flag_warning_bp: int = Field(default=500, ge=0, le=10_000)
    aftersales_flag_critical_bp: int = Field(default=2_000, ge=0, le=10_000)
    aftersales_flag_min_orders: int = Field(default=20, ge=1)
    aftersales_flag_window_days: int = Field(default=7, ge=1, le=90)
    aftersales_flag_review_seconds: float = Field(default=60.0, gt=0)
    aftersales_metrics_seconds: float = Field(default=15.0, gt=0)
