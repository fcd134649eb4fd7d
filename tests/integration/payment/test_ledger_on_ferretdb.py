"""The ledger's protocol on the real server: unique indexes decide races,
single-document writes only, a crash mid-movement is finished by a later pass."""

from __future__ import annotations

import asyncio

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from kami_events.catalogue.payment import PaymentChannel
from kami_events.mongo import Document
from kami_payment.adapters.journal import MongoJournal, MovementState
from kami_payment.domain.ledger import (
    Movement,
    MovementPurpose,
    buyer_wallet,
    channel_clearing,
    credit,
    debit,
    escrow,
)
from kami_payment.ledger import Ledger, SimulatedCrash

WALLET = buyer_wallet("b1")
CLEARING = channel_clearing(PaymentChannel.ALIPAY)


def top_up(movement_id: str, amount: int) -> Movement:
    postings = (debit(CLEARING, amount), credit(WALLET, amount))
    return Movement(movement_id, MovementPurpose.WALLET_TOP_UP, postings)


def spend(movement_id: str, amount: int, payment_id: str) -> Movement:
    postings = (debit(WALLET, amount), credit(escrow(payment_id), amount))
    return Movement(
        movement_id, MovementPurpose.PAYMENT_CAPTURE, postings, {"payment_id": payment_id}
    )


async def journal_on(db: AsyncDatabase[Document]) -> MongoJournal:
    journal = MongoJournal(db)
    await journal.ensure_indexes()
    return journal


async def test_racing_debits_on_ferretdb_never_overdraw(mongo_db: AsyncDatabase[Document]) -> None:
    journal = await journal_on(mongo_db)
    ledger = Ledger(journal)
    await ledger.execute(top_up("top:1", 1_000))

    # 12 debits of 100 race for 1000 fen (two separate ledgers, as two replicas).
    other = Ledger(MongoJournal(mongo_db))
    results = await asyncio.gather(
        *(
            (ledger if i % 2 else other).execute(spend(f"spend:{i}", 100, f"p{i}"))
            for i in range(12)
        )
    )

    outcomes = sorted(r.state.value for r in results)
    assert outcomes == ["applied"] * 10 + ["rejected"] * 2
    assert await ledger.balance(WALLET) == 0
    lines = await mongo_db["ledger_lines"].find({"account": WALLET.id}, sort=[("seq", 1)]).to_list()
    assert [line["seq"] for line in lines] == list(range(1, 12))
    assert all(-line["balance_after"] >= 0 for line in lines)  # credit-normal: never negative
    trial = await ledger.trial_balance()
    assert trial.balanced and trial.movements_in_flight == 0


async def test_a_crash_mid_movement_is_recovered_once(mongo_db: AsyncDatabase[Document]) -> None:
    journal = await journal_on(mongo_db)
    await Ledger(journal).execute(top_up("top:1", 700))

    with pytest.raises(SimulatedCrash):
        await Ledger(journal, crash_after_lines=1).execute(spend("spend:1", 300, "p1"))

    half = await Ledger(journal).trial_balance()
    assert (half.total, half.movements_in_flight) == (300, 1)

    # Two recoverers at once (the sweeper and a retried request) finish it once.
    recovering = Ledger(journal)
    pending = await journal.get_movement("spend:1")
    assert pending is not None and pending.state is MovementState.PENDING
    finished = await asyncio.gather(recovering.complete(pending), Ledger(journal).complete(pending))

    assert {f.state for f in finished} == {MovementState.APPLIED}
    assert await recovering.balance(WALLET) == 400
    assert await recovering.balance(escrow("p1")) == 300
    trial = await recovering.trial_balance()
    assert trial.balanced and trial.movements_in_flight == 0


async def test_resubmitting_a_movement_moves_money_once(mongo_db: AsyncDatabase[Document]) -> None:
    ledger = Ledger(await journal_on(mongo_db))
    results = await asyncio.gather(*(ledger.execute(top_up("top:same", 250)) for _ in range(5)))
    assert {r.state for r in results} == {MovementState.APPLIED}
    assert await ledger.balance(WALLET) == 250
    assert await mongo_db["ledger_lines"].count_documents({"account": WALLET.id}) == 1


async def test_a_fresh_process_finds_an_accounts_last_line_by_its_ids(
    mongo_db: AsyncDatabase[Document],
) -> None:
    ledger = Ledger(await journal_on(mongo_db))
    for n in range(1, 38):
        await ledger.execute(top_up(f"top-{n}", n))
    # Another process (nothing remembered) walks the ids: 37 lines, 1 + ... + 37.
    fresh = Ledger(await journal_on(mongo_db))
    assert await fresh.balance(WALLET) == 37 * 38 // 2
    last = await MongoJournal(mongo_db).last_line(WALLET)
    assert last is not None and last.seq == 37
    assert [line.seq for line in await fresh.lines_after(WALLET, 30)] == list(range(31, 38))


async def test_a_crash_after_the_lines_before_the_movement_finished_applies_it_once(
    mongo_db: AsyncDatabase[Document],
) -> None:
    journal = await journal_on(mongo_db)
    ledger = Ledger(journal)
    applied = await ledger.execute(top_up("top-1", 500))
    assert applied.applied
    # The process died after writing the lines, before marking the movement.
    await mongo_db["ledger_movements"].update_one(
        {"_id": "top-1"}, {"$set": {"state": MovementState.PENDING.value}}
    )
    restarted = Ledger(await journal_on(mongo_db))
    pending = await restarted.get("top-1")
    assert pending is not None and pending.state is MovementState.PENDING
    assert (await restarted.complete(pending)).applied
    assert await ledger.balance(WALLET) == 500
    assert await mongo_db["ledger_lines"].count_documents({"account": WALLET.id}) == 1
    assert await mongo_db["ledger_lines"].count_documents({}) == 2
