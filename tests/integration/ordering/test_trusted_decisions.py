"""The saga decides on the order as its process holds it (without asking the
database) and stays right when another process moved the order on: on the
real FerretDB, two ordering processes share one order's stream."""

from __future__ import annotations

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from kami_events.mongo import Document
from kami_events.store import ConcurrencyError, MongoEventStore
from kami_ordering.domain.order import OrderState, Outcome
from tests.unit.ordering.script import SagaScript


async def process(mongo_db: AsyncDatabase[Document], script: SagaScript) -> SagaScript:
    script.store = MongoEventStore(  # type: ignore[assignment]
        mongo_db, producer="ordering", clock=script.clock, trust_cached_seconds=2.0
    )
    await script.store.ensure_indexes()  # type: ignore[attr-defined]
    script.restart()
    return script


async def reserved_elsewhere(mongo_db: AsyncDatabase[Document]) -> tuple[SagaScript, SagaScript]:
    """An order placed by the first process and reserved by the second: the
    first still holds it as PLACED."""
    first = await process(mongo_db, SagaScript())
    await first.buyer_places_order()
    second = await process(mongo_db, SagaScript())
    second.order_id, second.keys = first.order_id, ["key-1", "key-2"]
    assert (await second.inventory_reserves()).changed
    return first, second


async def test_a_do_nothing_decision_on_a_stale_order_is_taken_again_on_the_stream(
    mongo_db: AsyncDatabase[Document],
) -> None:
    first, second = await reserved_elsewhere(mongo_db)
    first.keys = second.keys

    # On PLACED, expired keys would be nothing to do; on the stream's
    # RESERVED they cancel the order. The saga must see the stream.
    decision = await first.inventory_lets_the_reservation_expire()
    assert decision.outcome is Outcome.APPLIED
    assert (await first.order()).state is OrderState.CANCELLED
    stored = await second.repository.load(first.order_id, trust_seconds=0)
    assert stored is not None and stored.order.state is OrderState.CANCELLED


async def test_a_decision_on_a_stale_order_loses_its_append_and_is_taken_again(
    mongo_db: AsyncDatabase[Document],
) -> None:
    first, _ = await reserved_elsewhere(mongo_db)
    # This process, on its stale PLACED, would record a second reservation.
    first.keys = ["key-3", "key-4"]
    with pytest.raises(ConcurrencyError):  # the append race; the consumer retries
        await first.inventory_reserves()
    again = await first.inventory_reserves()
    assert not again.changed  # on the stream's RESERVED: nothing more to reserve
    assert (await first.order()).key_ids == ("key-1", "key-2")
