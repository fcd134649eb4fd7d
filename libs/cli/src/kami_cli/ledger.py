"""`kami ledger check`: is every fen accounted for (DESIGN §9.2)?

Two independent looks at the money:

- payment's trial balance (`GET /ledger/trial-balance`): the sum over every
  account must be zero once no movement is in flight;
- per order, from the event stores of payment and ordering (read-only): the
  money captured for an order must end with the seller (the order completed
  and its gross settled) or back with the buyer (the order refunded or
  cancelled and all of it returned), never both, never neither; escrow never
  pays out more than it received. Orders still in flight are counted, not
  judged. One exception to "never both": an upheld after-sales claim may give
  part of a completed order back (`OrderRefunded` with `ends_order` false),
  out of escrow before settlement or from the seller's deposit after it; then
  what escrow settled and refunded adds up to what was captured, and less
  than all of it went back.

"Back with the buyer" is a refund to the wallet or the original channel, or
a chargeback (the channel returned it); a refund with destination `none` is
the recovery of a chargeback from the seller's deposit, not a second return.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from kami_events.envelope import Envelope
from kami_events.mongo import Document
from kami_events.store import MongoEventStore

TERMINAL = {
    "OrderCompleted": "COMPLETED",
    "OrderRefunded": "REFUNDED",
    "OrderCancelled": "CANCELLED",
}


@dataclass
class OrderMoney:
    captured: int = 0
    settled: int = 0  # gross moved from escrow to the seller (and fee)
    returned: int = 0  # back with the buyer
    escrow_refunds: int = 0  # of `returned`, paid from escrow
    reversed_before_settlement: int = 0  # chargebacks escrow paid


@dataclass
class LedgerAudit:
    orders_with_money: int = 0
    settled_orders: int = 0
    returned_orders: int = 0
    in_flight: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


async def read_envelopes(database: AsyncDatabase[Document]) -> list[Envelope[Any]]:
    """Every event of one service's store, in commit order."""
    store = MongoEventStore(database, producer="kami-cli")
    envelopes: list[Envelope[Any]] = []
    position = 0
    while True:
        commits = await store.read_commits(position, limit=500)
        if not commits:
            return envelopes
        for commit in commits:
            envelopes.extend(commit.events)
        position = commits[-1].position


def final_states(ordering_events: Iterable[Envelope[Any]]) -> dict[str, str]:
    """Each order's end state, or its last event type while it is in flight.

    A refund is in flight from its `OrderRefundRequested` until its
    `OrderRefunded`; once done, a partial compensation (`ends_order` false)
    leaves the order as it was (a claim upheld in part on a completed order
    leaves it completed, not in flight for ever)."""
    latest: dict[str, tuple[int, str]] = {}
    requested: dict[str, set[str]] = defaultdict(set)
    done: dict[str, set[str]] = defaultdict(set)
    for envelope in ordering_events:
        if envelope.aggregate_type != "ordering.order":
            continue
        order_id, kind = envelope.aggregate_id, envelope.event_type
        if kind == "OrderRefundRequested":
            requested[order_id].add(envelope.payload.refund_id)
            continue
        if kind == "OrderRefunded":
            done[order_id].add(envelope.payload.refund_id)
            if getattr(envelope.payload, "ends_order", True) is False:
                continue  # a partial compensation: the order went on as it was
        seen = latest.get(order_id)
        if seen is None or envelope.aggregate_version > seen[0]:
            latest[order_id] = (envelope.aggregate_version, kind)
    for order_id in requested:
        if requested[order_id] - done[order_id]:
            latest[order_id] = (0, "OrderRefundRequested")
    return {
        order_id: TERMINAL.get(event_type, f"in flight ({event_type})")
        for order_id, (_, event_type) in latest.items()
    }


def money_by_order(payment_events: Iterable[Envelope[Any]]) -> dict[str, OrderMoney]:
    money: dict[str, OrderMoney] = defaultdict(OrderMoney)
    for envelope in payment_events:
        event, kind = envelope.payload, envelope.event_type
        if kind == "PaymentConfirmed":
            money[event.order_id].captured += event.amount
        elif kind == "PaymentFailed":
            money[event.order_id].captured += event.captured_amount
        elif kind == "FundsSettled":
            money[event.order_id].settled += event.gross
        elif kind == "PaymentRefunded" and event.destination != "none":
            money[event.order_id].returned += event.amount
            if event.source == "escrow":
                money[event.order_id].escrow_refunds += event.amount
        elif kind == "PaymentReversed":
            money[event.order_id].returned += event.amount
            if not event.settled:
                money[event.order_id].reversed_before_settlement += event.amount
    return dict(money)


def audit_orders(money: dict[str, OrderMoney], states: dict[str, str]) -> LedgerAudit:
    audit = LedgerAudit()
    for order_id, m in sorted(money.items()):
        if m.captured == 0 and m.settled == 0 and m.returned == 0:
            continue
        audit.orders_with_money += 1
        state = states.get(order_id)
        said = f"captured {m.captured}, settled {m.settled}, returned {m.returned}"
        escrow_out = m.settled + m.escrow_refunds + m.reversed_before_settlement
        if state is None:
            audit.problems.append(
                f"order {order_id}: money moved ({said}) but ordering has no order"
            )
            continue
        if m.returned > m.captured:
            audit.problems.append(
                f"order {order_id} ({state}): returned more than captured: {said}"
            )
        if escrow_out > m.captured:
            audit.problems.append(
                f"order {order_id} ({state}): escrow paid out {escrow_out} of {m.captured}: {said}"
            )
        if state == "COMPLETED":
            audit.settled_orders += 1
            # All of it settled to the seller, less what escrow gave back for a
            # partial claim; a claim after settlement drew its refund from the seller.
            if m.settled + m.escrow_refunds != m.captured or m.returned >= m.captured > 0:
                audit.problems.append(
                    f"order {order_id} (COMPLETED): its money must end with the seller: {said}"
                )
        elif state in ("REFUNDED", "CANCELLED"):
            audit.returned_orders += 1
            if m.returned != m.captured:
                audit.problems.append(
                    f"order {order_id} ({state}): its money must be back with the buyer: {said}"
                )
        else:
            audit.in_flight.append(order_id)
    return audit


def check_trial_balance(trial: dict[str, Any]) -> list[str]:
    if trial.get("total") != 0:
        in_flight = trial.get("movements_in_flight")
        return [
            f"the ledger does not sum to zero: total {trial.get('total')} "
            f"({in_flight} movements in flight), totals {trial.get('totals')}"
        ]
    return []
