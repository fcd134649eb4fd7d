"""Prometheus metrics of the payment service (DESIGN §7)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from kami_web.passwords import PasswordCheckMetrics

LEDGER_TOTALS = Gauge(
    "kami_ledger_balance_fen",
    "Sum of the applied postings per ledger account type, in fen (debits positive, "
    "credits negative); the types sum to zero",
    ["account_type"],
)
LEDGER_IN_FLIGHT = Gauge(
    "kami_ledger_movements_in_flight",
    "Ledger movements stored but not yet finished as applied or rejected, which happens with "
    "the write recording their follow-up (the sweeper finishes them)",
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
PASSWORD_CHECKS = PasswordCheckMetrics.named("payment", "Payment-password")
