"""A seller's deposit as events (aggregate `payment.deposit`, id = seller id).

The money itself is the ledger account `seller_deposit:<seller_id>`; this
aggregate publishes its changes. It mirrors the account's journal lines in
their order, one `DepositChanged` per line: its state is how many lines it
has mirrored, so mirroring the same line twice does nothing and a line can
never be skipped. A debit that leaves the balance below the minimum also
raises `DepositBelowMinimum` (catalog then delists the seller's offers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kami_events.aggregate import Aggregate
from kami_events.catalogue.payment import (
    DepositBelowMinimum,
    DepositChangeCause,
    DepositChanged,
)
from kami_events.event import Event


class DepositOutOfSync(Exception):
    """A journal line arrived out of order: the lines before it must be mirrored first."""


@dataclass(frozen=True)
class DepositLine:
    """One journal line of a deposit account: `amount` is signed (a credit,
    i.e. money in, is negative), `balance` is the natural balance after it."""

    seq: int
    amount: int
    balance: int
    cause: DepositChangeCause
    order_id: str | None = None


class Deposit(Aggregate):
    aggregate_type: ClassVar[str] = "payment.deposit"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.mirrored_lines = 0
        self.balance = 0
        self.minimum = 0
        self.below_minimum = False

    @property
    def seller_id(self) -> str:
        return self.id

    def mirror(self, line: DepositLine, minimum: int) -> bool:
        """Publish one journal line; False if it was already published."""
        if line.seq <= self.mirrored_lines:
            return False
        if line.seq != self.mirrored_lines + 1:
            raise DepositOutOfSync(
                f"deposit {self.id}: line {line.seq} after {self.mirrored_lines} mirrored"
            )
        if line.balance < 0:
            raise ValueError(f"deposit {self.id}: a deposit never goes below zero")
        direction = "credit" if line.amount < 0 else "debit"
        self._trigger(
            DepositChanged(
                seller_id=self.id,
                direction=direction,
                amount=abs(line.amount),
                balance=line.balance,
                minimum=minimum,
                cause=line.cause,
                order_id=line.order_id,
            )
        )
        if direction == "debit" and line.balance < minimum:
            self._trigger(
                DepositBelowMinimum(
                    seller_id=self.id,
                    balance=line.balance,
                    minimum=minimum,
                    shortfall=minimum - line.balance,
                )
            )
        return True

    def apply(self, event: Event) -> None:
        match event:
            case DepositChanged():
                self.mirrored_lines += 1
                self.balance = event.balance
                self.minimum = event.minimum
                self.below_minimum = event.balance < event.minimum
            case DepositBelowMinimum():
                self.below_minimum = True
            case _:
                super().apply(event)
