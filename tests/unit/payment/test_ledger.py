"""The ledger: movement rules (pure) and the apply protocol (on the in-memory
journal; the same protocol runs against FerretDB in the integration tests)."""

from __future__ import annotations

import asyncio

import pytest

from kami_events.catalogue.payment import PaymentChannel
from kami_events.clock import ManualClock
from kami_payment.adapters.journal import JournalLine, LineInsert, MovementState, StoredMovement
from kami_payment.domain.ledger import (
    Account,
    AccountType,
    Movement,
    MovementPurpose,
    buyer_wallet,
    channel_clearing,
    credit,
    debit,
    escrow,
    platform_fee,
    seller_deposit,
    seller_receivable,
)
from kami_payment.ledger import Ledger, SimulatedCrash
from tests.unit.payment.fakes import InMemoryJournal

WALLET = buyer_wallet("b1")
CLEARING = channel_clearing(PaymentChannel.WECHAT_PAY)


def top_up(movement_id: str, amount: int, account: Account = WALLET) -> Movement:
    return Movement(
        movement_id,
        MovementPurpose.WALLET_TOP_UP,
        (debit(CLEARING, amount), credit(account, amount)),
    )


def spend(movement_id: str, amount: int, to: str = "p1") -> Movement:
    return Movement(
        movement_id,
        MovementPurpose.PAYMENT_CAPTURE,
        (debit(WALLET, amount), credit(escrow(to), amount)),
        {"payment_id": to},
    )


def test_a_movement_balances_and_names_each_account_once() -> None:
    with pytest.raises(ValueError, match="debits and credits differ"):
        Movement("m", MovementPurpose.REFUND, (debit(WALLET, 5), credit(CLEARING, 4)))
    with pytest.raises(ValueError, match="twice"):
        Movement("m", MovementPurpose.REFUND, (debit(WALLET, 5), credit(WALLET, 5)))
    with pytest.raises(ValueError, match="at least two"):
        Movement("m", MovementPurpose.REFUND, (debit(WALLET, 5),))


def test_at_most_one_guarded_debit_and_it_is_applied_first() -> None:
    with pytest.raises(ValueError, match="one guarded"):
        Movement(
            "m",
            MovementPurpose.REFUND,
            (debit(WALLET, 5), debit(seller_deposit("s"), 5), credit(CLEARING, 10)),
        )
    movement = Movement(
        "m",
        MovementPurpose.REFUND,
        (credit(CLEARING, 10), debit(seller_receivable("s"), 4), debit(seller_deposit("s"), 6)),
    )
    assert movement.in_application_order()[0].account == seller_deposit("s")
    assert movement.amount == 10


def test_natural_balances_read_as_their_holder_reads_them() -> None:
    assert WALLET.natural(-500) == 500  # a wallet holding 5 yuan
    assert CLEARING.natural(500) == 500  # the channel holds 5 yuan for Kami
    assert Account.parse("seller_deposit:s-1") == seller_deposit("s-1")
    assert AccountType.ESCROW.never_negative and not AccountType.PLATFORM_FEES.never_negative


@pytest.mark.parametrize(
    ("gross", "bps", "fee"),
    [(10_000, 500, 500), (999, 500, 50), (990, 500, 50), (989, 500, 49), (1, 10_000, 1), (7, 0, 0)],
)
def test_platform_fee_rounds_half_up_in_whole_fen(gross: int, bps: int, fee: int) -> None:
    assert platform_fee(gross, bps) == fee


async def test_a_movement_is_applied_once_however_often_it_is_submitted() -> None:
    journal = InMemoryJournal()
    ledger = Ledger(journal, clock=ManualClock())
    for _ in range(3):
        stored = await ledger.execute(top_up("top:1", 1_000))
        assert stored.state is MovementState.APPLIED
    assert await ledger.balance(WALLET) == 1_000
    assert len(journal.by_account[WALLET]) == 1
    assert (await ledger.trial_balance()).balanced


async def test_a_guarded_debit_beyond_the_balance_is_refused_and_moves_nothing() -> None:
    journal = InMemoryJournal()
    ledger = Ledger(journal, clock=ManualClock())
    await ledger.execute(top_up("top:1", 300))
    refused = await ledger.execute(spend("spend:1", 301))
    assert refused.state is MovementState.REJECTED
    assert await ledger.balance(WALLET) == 300
    assert await ledger.balance(escrow("p1")) == 0
    # The refusal is final for that id, even once the wallet could cover it.
    await ledger.execute(top_up("top:2", 1))
    assert (await ledger.execute(spend("spend:1", 301))).state is MovementState.REJECTED
    assert await ledger.balance(WALLET) == 301


async def test_racing_debits_never_overdraw_the_wallet() -> None:
    journal = InMemoryJournal()
    # Two processes on one journal: only the journal's unique keys decide between them.
    ledgers = [Ledger(journal, clock=ManualClock()) for _ in range(2)]
    await ledgers[0].execute(top_up("top:1", 1_000))

    results = await asyncio.gather(
        *(ledgers[i % 2].execute(spend(f"spend:{i}", 150, to=f"p{i}")) for i in range(20))
    )

    applied = [r for r in results if r.state is MovementState.APPLIED]
    assert len(applied) == 6  # 6 × 150 = 900; a 7th would overdraw
    assert await ledgers[1].balance(WALLET) == 100
    assert all(WALLET.natural(line.balance_after) >= 0 for line in journal.by_account[WALLET])
    assert [line.seq for line in journal.by_account[WALLET]] == list(range(1, 8))
    assert (await ledgers[1].trial_balance()).balanced


async def test_one_process_posts_to_an_account_in_turn_without_colliding() -> None:
    journal = InMemoryJournal()
    ledger = Ledger(journal, clock=ManualClock())
    outcomes: list[LineInsert] = []
    insert_line = journal.insert_line

    async def counted(line: JournalLine) -> LineInsert:
        outcomes.append(await insert_line(line))
        return outcomes[-1]

    journal.insert_line = counted  # type: ignore[method-assign]
    await asyncio.gather(*(ledger.execute(top_up(f"top:{i}", 10)) for i in range(20)))

    assert outcomes == [LineInsert.INSERTED] * 40
    assert [line.seq for line in journal.by_account[WALLET]] == list(range(1, 21))
    assert await ledger.balance(WALLET) == 200


async def test_a_crash_mid_movement_is_finished_by_a_later_pass() -> None:
    journal = InMemoryJournal()
    await Ledger(journal).execute(top_up("top:1", 500))
    crashing = Ledger(journal, crash_after_lines=1)

    with pytest.raises(SimulatedCrash):
        await crashing.execute(spend("spend:1", 200))

    # Half-applied: the wallet was debited, escrow not yet credited.
    assert journal.balance(WALLET) == 300
    assert journal.balance(escrow("p1")) == 0
    trial = await Ledger(journal).trial_balance()
    assert (trial.total, trial.movements_in_flight) == (200, 1)

    recovering = Ledger(journal)
    [pending] = [m for m in await recovering.unfinished() if m.state is MovementState.PENDING]
    assert pending.id == "spend:1"
    finished = await recovering.complete(pending)

    assert finished.state is MovementState.APPLIED
    assert journal.balance(WALLET) == 300  # debited once, not twice
    assert journal.balance(escrow("p1")) == 200
    trial = await recovering.trial_balance()
    assert trial.balanced and trial.movements_in_flight == 0


async def test_a_refusal_and_an_application_of_the_same_line_exclude_each_other() -> None:
    journal = InMemoryJournal()
    ledger = Ledger(journal)
    await ledger.execute(top_up("top:1", 100))
    movement = spend("spend:1", 100)
    await journal.insert_movement(movement, ManualClock()())
    # Another worker refused the line first (the wallet was empty then).
    assert await journal.insert_rejection(
        f"spend:1|{WALLET.id}", "spend:1", WALLET, ManualClock()()
    )
    stored = await journal.get_movement("spend:1")
    assert stored is not None
    assert (await ledger.complete(stored)).state is MovementState.REJECTED
    assert journal.balance(WALLET) == 100


async def test_attempts_of_a_flow_stop_at_the_first_applied_one() -> None:
    journal = InMemoryJournal()
    ledger = Ledger(journal)
    planned: list[str] = []

    async def plan(movement_id: str) -> Movement:
        planned.append(movement_id)
        return spend(movement_id, 400)

    refused = await ledger.execute_attempts("capture:p1", plan, replan_on_rejection=False)
    assert refused is not None and refused.state is MovementState.REJECTED
    await ledger.execute(top_up("top:1", 500))
    applied = await ledger.execute_attempts("capture:p1", plan, replan_on_rejection=False)
    again = await ledger.execute_attempts("capture:p1", plan, replan_on_rejection=False)

    assert applied is not None and applied.id == "capture:p1:2" and applied.applied
    assert again is not None and again.id == "capture:p1:2"
    assert planned == ["capture:p1:1", "capture:p1:2"]
    assert journal.balance(WALLET) == 100


class _NoSeparateRecordedMark(InMemoryJournal):
    async def mark_recorded(self, movement_id: str) -> None:
        raise AssertionError(f"{movement_id}: marked recorded in a write of its own")


async def test_a_movement_left_decided_is_finished_and_recorded_in_one_write() -> None:
    journal = _NoSeparateRecordedMark()
    ledger = Ledger(journal)
    await ledger.execute(top_up("top:1", 100))

    decided = await ledger.execute(spend("spend:1", 60), finish=False)
    assert decided.applied and decided.decided is MovementState.APPLIED
    assert journal.movements["spend:1"].state is MovementState.PENDING
    assert journal.balance(WALLET) == 40  # its lines are written

    finished = await ledger.finish(decided, recorded=True)
    stored = journal.movements["spend:1"]
    assert (stored.state, stored.recorded) == (MovementState.APPLIED, True)
    assert (finished.state, finished.recorded, finished.decided) == (
        MovementState.APPLIED,
        True,
        None,
    )


async def test_a_decided_movement_another_worker_finished_is_still_marked_recorded() -> None:
    journal = InMemoryJournal()
    ledger = Ledger(journal)
    await ledger.execute(top_up("top:1", 100))
    decided = await ledger.execute(spend("spend:1", 500), finish=False)
    assert decided.decided is MovementState.REJECTED
    # The sweeper finished it meanwhile (without its follow-up).
    await ledger.complete(journal.movements["spend:1"])

    finished = await ledger.finish(decided, recorded=True)
    assert (finished.state, finished.recorded) == (MovementState.REJECTED, True)
    assert journal.movements["spend:1"].recorded
    assert journal.balance(WALLET) == 100


class _CountedReads(InMemoryJournal):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get_movement(self, movement_id: str) -> StoredMovement | None:
        self.reads += 1
        return await super().get_movement(movement_id)


async def test_a_flow_planned_first_looks_for_no_attempt_and_still_finds_one_stored() -> None:
    journal = _CountedReads()
    ledger = Ledger(journal)
    await ledger.execute(top_up("top:1", 1000))
    planned: list[str] = []

    async def plan(movement_id: str) -> Movement:
        planned.append(movement_id)
        return spend(movement_id, 400)

    first = await ledger.execute_attempts(
        "capture:p1", plan, replan_on_rejection=False, plan_first=True
    )
    assert first is not None and first.id == "capture:p1:1" and first.applied
    assert journal.reads == 0
    # Asked again (a retried request): the stored attempt, applied once.
    again = await ledger.execute_attempts(
        "capture:p1", plan, replan_on_rejection=False, plan_first=True
    )
    assert again is not None and again.id == "capture:p1:1" and again.applied
    assert journal.balance(WALLET) == 600


async def test_a_flow_planned_first_walks_past_a_refused_attempt() -> None:
    journal = InMemoryJournal()
    ledger = Ledger(journal)

    async def plan(movement_id: str) -> Movement:
        return spend(movement_id, 400)

    refused = await ledger.execute_attempts(
        "capture:p1", plan, replan_on_rejection=False, plan_first=True, finish=False
    )
    assert refused is not None and refused.decided is MovementState.REJECTED
    await ledger.finish(refused, recorded=True)
    await ledger.execute(top_up("top:1", 500))
    applied = await ledger.execute_attempts(
        "capture:p1", plan, replan_on_rejection=False, plan_first=True
    )
    assert applied is not None and applied.id == "capture:p1:2" and applied.applied
    assert journal.movements["capture:p1:1"].state is MovementState.REJECTED
    assert journal.balance(WALLET) == 100


async def test_a_flow_planned_first_that_plans_nothing_returns_its_applied_attempt() -> None:
    journal = InMemoryJournal()
    ledger = Ledger(journal)
    await ledger.execute(top_up("top:1", 500))
    settled = False

    async def plan(movement_id: str) -> Movement | None:
        return None if settled else spend(movement_id, 400)

    first = await ledger.execute_attempts(
        "settle:p1", plan, replan_on_rejection=True, plan_first=True
    )
    settled = True
    again = await ledger.execute_attempts(
        "settle:p1", plan, replan_on_rejection=True, plan_first=True
    )
    assert first is not None and again is not None and again.id == first.id == "settle:p1:1"
    assert journal.balance(WALLET) == 100
