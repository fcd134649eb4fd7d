"""Payment's small stores decide their races by unique inserts (docs/storage.md):
checked here with real concurrency on the real server."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

from pymongo.asynchronous.database import AsyncDatabase

from kami_events.catalogue.payment import PaymentChannel
from kami_events.mongo import Document
from kami_payment.adapters.gateways.alipay import AlipayNotifier
from kami_payment.adapters.gateways.base import TradeStatus
from kami_payment.adapters.gateways.simulator import (
    MongoTradeBook,
    SimulatedGateway,
    SimulatorError,
)
from kami_payment.adapters.read_models import MongoCredentials, MongoDailySpend

DAY = date(2026, 3, 2)


async def test_racing_payments_never_exceed_the_daily_limit(
    mongo_db: AsyncDatabase[Document],
) -> None:
    spend = MongoDailySpend(mongo_db)
    await spend.ensure_indexes()

    fits = await asyncio.gather(
        *(spend.reserve("b1", DAY, f"p{i}", 3_000, 10_000) for i in range(10))
    )

    assert sum(fits) == 3
    assert await spend.spent("b1", DAY) == 9_000
    counted = [f"p{i}" for i, ok in enumerate(fits) if ok]
    # Counting the same payment again (a retried request) changes nothing.
    assert await spend.reserve("b1", DAY, counted[0], 3_000, 10_000)
    assert await spend.spent("b1", DAY) == 9_000
    await spend.release("b1", DAY, counted[0], 3_000)
    await spend.release("b1", DAY, counted[0], 3_000)
    assert await spend.spent("b1", DAY) == 6_000
    # Released, it may be counted again, once.
    again = await asyncio.gather(
        *(spend.reserve("b1", DAY, counted[0], 3_000, 10_000) for _ in range(3))
    )
    assert all(again) and await spend.spent("b1", DAY) == 9_000
    assert await spend.spent("b1", DAY + timedelta(days=1)) == 0


async def test_racing_password_attempts_get_distinct_slots_up_to_the_limit(
    mongo_db: AsyncDatabase[Document],
) -> None:
    credentials = MongoCredentials(mongo_db)
    await credentials.ensure_indexes()
    await credentials.set_hash("b1", "$argon2id$fake")
    credential = await credentials.get("b1")
    assert credential is not None

    slots = await asyncio.gather(*(credentials.claim_attempt(credential, 5) for _ in range(12)))

    assert sorted(s for s in slots if s is not None) == [1, 2, 3, 4, 5]
    assert slots.count(None) == 7
    until = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
    await credentials.new_generation(credential, locked_until=until)
    locked = await credentials.get("b1")
    assert locked is not None and locked.locked(until - timedelta(seconds=1))
    assert await credentials.claim_attempt(locked, 5) == 1  # a fresh run of attempts


async def test_a_payment_racing_a_close_at_the_channel_is_decided_once(
    mongo_db: AsyncDatabase[Document],
) -> None:
    book = MongoTradeBook(mongo_db)
    await book.ensure_indexes()
    gateway = SimulatedGateway(PaymentChannel.ALIPAY, book, AlipayNotifier(b"s" * 32))
    expires = datetime.now(UTC) + timedelta(minutes=5)
    for n in range(5):
        trade = await gateway.create_trade(f"out-{n}", 100, "race", expires)

        async def pay(trade_no: str = trade.gateway_trade_no) -> str:
            try:
                await gateway.pay(trade_no)
            except SimulatorError:
                return "refused"
            return "paid"

        async def close(out_trade_no: str = f"out-{n}") -> str:
            state = await gateway.close_trade(out_trade_no)
            assert state is not None
            return state.status.value

        outcomes = list(await asyncio.gather(pay(), close(), pay(), close()))
        final = await gateway.query_trade(f"out-{n}")
        assert final is not None
        if final.status is TradeStatus.PAID:
            assert outcomes == ["paid", "paid", "paid", "paid"]
        else:
            assert final.status is TradeStatus.CLOSED
            assert outcomes == ["refused", "closed", "refused", "closed"]


async def test_a_rehash_racing_password_changes_never_overwrites_one(
    mongo_db: AsyncDatabase[Document],
) -> None:
    credentials = MongoCredentials(mongo_db)
    await credentials.set_hash("b2", "$argon2id$old-parameters")
    checked = await credentials.get("b2")
    assert checked is not None and checked.revision == 0

    # A rehash of the checked password races three password changes.
    rehashed, *_ = await asyncio.gather(
        credentials.rehash(checked, "$argon2id$rehashed"),
        *(credentials.set_hash("b2", f"$argon2id$changed-{n}") for n in range(3)),
    )

    current = await credentials.get("b2")
    assert current is not None and current.revision == (4 if rehashed else 3)
    assert current.password_hash.startswith("$argon2id$changed-")
    # A rehash of a revision no longer current stores nothing.
    assert not await credentials.rehash(checked, "$argon2id$late")
    assert (await credentials.get("b2")) == current
