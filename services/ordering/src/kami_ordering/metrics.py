"""Prometheus metrics of the purchase saga (DESIGN §7): orders by state,
saga duration by outcome, sagas past their deadline, and what each incoming
reply did to its order."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ORDERS_BY_STATE = Gauge(
    "kami_saga_orders",
    "Orders in each saga state (from the orders read model)",
    ["state"],
)
SAGAS_PAST_DEADLINE = Gauge(
    "kami_saga_past_deadline",
    "Orders whose deadline passed longer ago than the poller should take to fire it",
)
SAGA_DURATION = Histogram(
    "kami_saga_duration_seconds",
    "From OrderPlaced to the saga's end state, by outcome",
    ["outcome"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400),
)
SAGA_DECISIONS = Counter(
    "kami_saga_decisions_total",
    "What an incoming reply or deadline did to its order "
    "(applied, compensated, duplicate, ignored, rejected)",
    ["trigger", "outcome"],
)
ORDERS_PLACED = Counter(
    "kami_orders_placed_total",
    "Orders placed, by delivery mode",
    ["delivery_mode"],
)
# The buyers' status reads, apart from the saga's work (the bench counts them apart).
STATUS_REQUESTS = Counter(
    "kami_order_status_requests_total",
    "GET /orders/{id} requests answered, by whether they waited (wait_for)",
    ["waited"],
)
STATUS_READ_COMMANDS = Counter(
    "kami_order_status_read_commands_total",
    "MongoDB commands made by GET /orders/{id} (also counted in kami_mongo_command_seconds)",
    ["collection", "command"],
)
# Commerce (docs/commerce.md): coupon uses and flash-sale keys, claimed under
# their limits at placement, given back or redeemed as the order ends.
QUOTA_CLAIMS = Counter(
    "kami_quota_claims_total",
    "Claims of a coupon use or flash-sale key at placement, by quota kind "
    "(coupon, flash) and result (claimed, buyer_limit, exhausted)",
    ["kind", "result"],
)
QUOTA_RELEASES = Counter(
    "kami_quota_releases_total",
    "Orders that gave their claimed coupon use or flash-sale key back (cancelled, "
    "expired or refunded), by quota kind",
    ["kind"],
)
COUPON_REDEMPTIONS = Counter(
    "kami_coupon_redemptions_total",
    "Coupon uses made final (the order was delivered), by who funds the discount",
    ["funded_by"],
)
COUPON_DISCOUNT = Counter(
    "kami_coupon_discount_fen_total",
    "Discount of the redeemed coupons in fen, by who funds it",
    ["funded_by"],
)
