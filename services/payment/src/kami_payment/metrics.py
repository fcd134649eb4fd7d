"""Prometheus metrics of the payment service (DESIGN §7)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LEDGER_TOTALS = Gauge(
    "kami_ledger_balance_fen",
    "Sum of the applied postings per ledger account type, in fen (debits positive, "
    "credits negative); the types sum to zero",
    ["account_type"],
)
LEDGER_IN_FLIGHT = Gauge(
    "kami_ledger_movements_in_flight",
    "Ledger movements recorded but not yet applied or rejected (the sweeper finishes them)",
)
MOVEMENTS = Counter(
    "kami_ledger_movements_total",
    "Ledger movements finished, by purpose and outcome (applied, rejected)",
    ["purpose", "outcome"],
)
REFUNDS = Counter(
    "kami_payment_refunds_total",
    "Refunds recorded, by source (escrow, seller_deposit) and reason",
    ["source", "reason"],
)
REFUNDED_FEN = Counter(
    "kami_payment_refunded_fen_total",
    "Fen refunded (or recovered after a chargeback), by source",
    ["source"],
)
SETTLED_FEN = Counter(
    "kami_payment_settled_fen_total",
    "Fen settled to sellers: seller net, platform fee, and platform-funded discounts paid",
    ["part"],
)
PAYMENTS = Counter(
    "kami_payments_total",
    "Payment intents that ended, by channel and outcome (confirmed, failed reason)",
    ["channel", "outcome"],
)
CALLBACKS = Counter(
    "kami_payment_callbacks_total",
    "Channel notifications received, by channel, kind (payment, reversal) and outcome",
    ["channel", "kind", "outcome"],
)
GATEWAY_POLLS = Counter(
    "kami_payment_gateway_polls_total",
    "Trades the poller queried because no callback came, by channel and what it found",
    ["channel", "found"],
)
DEPOSITS_BELOW_MINIMUM = Gauge(
    "kami_payment_deposits_below_minimum",
    "Sellers whose deposit is below the minimum (their offers stay delisted until they top up)",
)
PASSWORD_CHECKS_IN_FLIGHT = Gauge(
    "kami_payment_password_checks_in_flight",
    "Payment-password checks (argon2id) admitted to the pool's threads now",
)
PASSWORD_CHECKS_QUEUED = Gauge(
    "kami_payment_password_checks_queued",
    "Payment-password checks admitted and waiting for a thread of the pool",
)
PASSWORD_CHECKS_REJECTED = Counter(
    "kami_payment_password_checks_rejected_total",
    "Payment-password checks refused with 429 before they started, by reason "
    "(queue_full, wait_too_long)",
    ["reason"],
)
PASSWORD_CHECK_SECONDS = Histogram(
    "kami_payment_password_check_seconds",
    "Time one argon2id hash or verification took on a thread of the pool",
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0),
)
