"""The per-order money audit of `kami ledger check` (DESIGN §9.2)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kami_cli.ledger import OrderMoney, audit_orders, check_trial_balance, final_states
from kami_events.catalogue.common import RefundReason, RefundSource
from kami_events.catalogue.ordering import (
    CompletedBy,
    OrderCompleted,
    OrderEvent,
    OrderRefunded,
    OrderRefundRequested,
)
from kami_events.envelope import Envelope


def test_completed_orders_settled_and_refunded_orders_returned_are_fine() -> None:
    audit = audit_orders(
        {
            "o-done": OrderMoney(captured=950, settled=950),
            "o-refunded": OrderMoney(captured=950, returned=950, escrow_refunds=950),
            "o-claimed": OrderMoney(captured=950, settled=950, returned=950),  # from the deposit
            "o-paying": OrderMoney(captured=500),
            # Upheld partial claims: 400 back from escrow before settlement,
            # or drawn from the seller's deposit after it.
            "o-partly-escrow": OrderMoney(
                captured=950, settled=550, returned=400, escrow_refunds=400
            ),
            "o-partly-deposit": OrderMoney(captured=950, settled=950, returned=400),
        },
        {
            "o-partly-escrow": "COMPLETED",
            "o-partly-deposit": "COMPLETED",
            "o-done": "COMPLETED",
            "o-refunded": "REFUNDED",
            "o-claimed": "REFUNDED",
            "o-paying": "in flight (OrderPaid)",
        },
    )
    assert audit.problems == []
    assert (audit.orders_with_money, audit.settled_orders, audit.returned_orders) == (6, 3, 2)
    assert audit.in_flight == ["o-paying"]


def test_money_that_ends_nowhere_or_in_both_places_is_a_discrepancy() -> None:
    audit = audit_orders(
        {
            "o-neither": OrderMoney(captured=950),
            "o-both": OrderMoney(captured=950, settled=950, returned=950, escrow_refunds=950),
            "o-short": OrderMoney(captured=950, returned=900),
            "o-over": OrderMoney(captured=950, returned=1900),
            "o-unknown": OrderMoney(captured=100),
            "o-all-back": OrderMoney(captured=950, settled=950, returned=950),
        },
        {
            "o-neither": "COMPLETED",
            "o-both": "COMPLETED",
            "o-short": "CANCELLED",
            "o-over": "REFUNDED",
            "o-all-back": "COMPLETED",  # all of it returned, yet completed
        },
    )
    problems = "\n".join(audit.problems)
    assert "o-neither (COMPLETED): its money must end with the seller" in problems
    assert "o-both (COMPLETED): escrow paid out 1900 of 950" in problems
    assert "o-both (COMPLETED): its money must end with the seller" in problems
    assert "o-short (CANCELLED): its money must be back with the buyer" in problems
    assert "o-over (REFUNDED): returned more than captured" in problems
    assert "o-unknown: money moved" in problems
    assert "o-all-back (COMPLETED): its money must end with the seller" in problems


def test_the_trial_balance_must_sum_to_zero() -> None:
    assert check_trial_balance({"total": 0, "totals": {}}) == []
    [problem] = check_trial_balance({"total": 5, "totals": {"escrow": 5}, "movements_in_flight": 0})
    assert "does not sum to zero: total 5" in problem


ORDER = {"order_id": "o-1", "buyer_id": "b-1", "seller_id": "s-1", "offer_id": "f-1"}
REFUND = ORDER | {
    "payment_id": "p-1",
    "amount": 400,
    "source": RefundSource.ESCROW,
    "reason": RefundReason.CLAIM_UPHELD,
}


def history(*events: OrderEvent) -> list[Envelope[Any]]:
    return [
        Envelope.wrap(
            event,
            producer="ordering",
            aggregate_id="o-1",
            aggregate_version=version,
            correlation_id="o-1",
            occurred_at=datetime(2026, 6, 1, tzinfo=UTC),
        )
        for version, event in enumerate(events, 1)
    ]


COMPLETED = OrderCompleted(**ORDER, completed_by=CompletedBy.BUYER_CONFIRMED, total=950)


def test_a_completed_order_with_a_claim_upheld_in_part_stays_completed() -> None:
    requested = OrderRefundRequested(**REFUND, refund_id="r-1", void_key_ids=[])
    done = OrderRefunded(**REFUND, refund_id="r-1", ends_order=False)
    assert final_states(history(COMPLETED, requested)) == {
        "o-1": "in flight (OrderRefundRequested)"
    }
    assert final_states(history(COMPLETED, requested, done)) == {"o-1": "COMPLETED"}


def test_an_order_refunded_in_full_is_refunded_once_its_refund_is_done() -> None:
    requested = OrderRefundRequested(**REFUND | {"amount": 950}, refund_id="r-1", void_key_ids=[])
    done = OrderRefunded(**REFUND | {"amount": 950}, refund_id="r-1")
    # Asked again after it was done (keys of a late delivery to void): still refunded.
    again = OrderRefundRequested(**REFUND | {"amount": 950}, refund_id="r-1", void_key_ids=["k"])
    assert final_states(history(COMPLETED, requested, done, again)) == {"o-1": "REFUNDED"}
