"""The reseller service's Prometheus metrics (docs/metrics.md; dashboards in deploy/)."""

from __future__ import annotations

from prometheus_client import Counter

ORDERS = Counter(
    "kami_reseller_orders_total",
    "Reseller orders by what happened: requested, delivered, cancelled, refunded.",
    ["outcome"],
)
WEBHOOK_DELIVERIES = Counter(
    "kami_reseller_webhook_deliveries_total",
    "Webhook delivery attempts, by webhook type and outcome (delivered, failed).",
    ["type", "outcome"],
)
SIGNED_REQUESTS_REFUSED = Counter(
    "kami_reseller_signed_requests_refused_total",
    "Signed API requests refused with 401, by reason.",
    ["reason"],
)
