"""A seller's deposit publishes its journal lines in order, each once."""

from __future__ import annotations

import pytest

from kami_events.catalogue.payment import (
    DepositBelowMinimum,
    DepositChangeCause,
    DepositChanged,
)
from kami_payment.domain.deposit import Deposit, DepositLine, DepositOutOfSync


def test_each_line_becomes_one_deposit_changed_and_replays_change_nothing() -> None:
    deposit = Deposit("s1")
    assert deposit.mirror(DepositLine(1, -50_000, 50_000, DepositChangeCause.TOP_UP), 10_000)
    assert not deposit.mirror(DepositLine(1, -50_000, 50_000, DepositChangeCause.TOP_UP), 10_000)
    [changed] = deposit.pending_events
    assert isinstance(changed, DepositChanged)
    assert (changed.direction, changed.amount, changed.balance, changed.minimum) == (
        "credit",
        50_000,
        50_000,
        10_000,
    )


def test_a_deduction_below_the_minimum_says_so() -> None:
    deposit = Deposit("s1")
    deposit.mirror(DepositLine(1, -12_000, 12_000, DepositChangeCause.TOP_UP), 10_000)
    deposit.mirror(
        DepositLine(2, 5_000, 7_000, DepositChangeCause.REFUND_DRAWN, order_id="o-1"), 10_000
    )
    changed, below = deposit.pending_events[1:]
    assert isinstance(changed, DepositChanged) and changed.order_id == "o-1"
    assert changed.direction == "debit"
    assert isinstance(below, DepositBelowMinimum)
    assert (below.balance, below.minimum, below.shortfall) == (7_000, 10_000, 3_000)
    assert deposit.below_minimum and deposit.mirrored_lines == 2


def test_no_minimum_no_warning() -> None:
    deposit = Deposit("s1")
    deposit.mirror(DepositLine(1, -1, 1, DepositChangeCause.TOP_UP), 0)
    deposit.mirror(DepositLine(2, 1, 0, DepositChangeCause.REFUND_DRAWN), 0)
    assert [e.event_type for e in deposit.pending_events] == ["DepositChanged", "DepositChanged"]


def test_a_line_cannot_be_skipped() -> None:
    with pytest.raises(DepositOutOfSync):
        Deposit("s1").mirror(DepositLine(2, -1, 1, DepositChangeCause.TOP_UP), 0)
