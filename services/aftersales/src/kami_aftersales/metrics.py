"""Aftersales' Prometheus metrics (dashboards in deploy/ use these names)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

TICKETS = Gauge(
    "kami_aftersales_tickets",
    "Tickets waiting for a decision, by state and type (category).",
    ["state", "type"],
)
TICKETS_OPENED = Counter(
    "kami_aftersales_tickets_opened_total", "Tickets opened, by type (category).", ["type"]
)
TICKETS_RESOLVED = Counter(
    "kami_aftersales_tickets_resolved_total",
    "Tickets decided, by type, resolution and whether a rule decided.",
    ["type", "resolution", "automatic"],
)
SLA_BREACHES = Counter(
    "kami_aftersales_sla_breaches_total",
    "Tickets escalated for a breached SLA, by level.",
    ["level"],
)
SELLER_FLAGS = Counter(
    "kami_aftersales_seller_flags_total",
    "SellerFlagged raised, by reason and severity.",
    ["reason", "severity"],
)
