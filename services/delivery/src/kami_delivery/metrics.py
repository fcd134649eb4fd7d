"""Delivery's Prometheus metrics (served on `/metrics` with the shared ones)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERY_OUTCOMES = Counter(
    "kami_delivery_outcomes_total",
    "Deliveries concluded (delivered, failed) or parked for an operator, by mode",
    ["mode", "outcome"],
)
QUEUE_WAIT = Histogram(
    "kami_delivery_queue_wait_seconds",
    "From payment to the automatic delivery's outcome, by the buyer's delivery priority",
    ["priority"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
)
QUEUE_JOBS = Gauge(
    "kami_delivery_queue_jobs",
    "Automatic deliveries in the priority lane, by state (queued, working, parked)",
    ["state"],
)
INVENTORY_FAILURES = Counter(
    "kami_delivery_inventory_failures_total",
    "Key-reveal calls to inventory that failed (retried, never a delivery failure)",
)
PLAINTEXT_ACCESS = Counter(
    "kami_vault_plaintext_access_total",
    "Audited reveals and exports of plaintext keys from the vault",
    ["action"],
)
NOTIFICATIONS = Counter(
    "kami_delivery_notifications_total", "Notifications sent, by channel", ["channel"]
)
