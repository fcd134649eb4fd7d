"""A seller's reliability counts and an offer's sales are incremented as
facts arrive, not recounted: on the real FerretDB they still equal a recount
of the facts after redelivered events, attempts that failed half-way and a
rebuild from the consumed-event log."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import AutoReconnect

from kami_catalog.adapters.consumed_log import ConsumedLog
from kami_catalog.adapters.projections import CatalogReadModels, Projector, StoreSource
from kami_events.catalogue.common import AggregateEvent, DeliveryMode
from kami_events.catalogue.delivery import (
    DeliveryChannel,
    DeliveryFailed,
    DeliveryFailure,
    KeyDelivered,
)
from kami_events.catalogue.ordering import CompletedBy, OrderCompleted, OrderPlaced
from kami_events.clock import utc_now
from kami_events.envelope import Envelope
from kami_events.mongo import Document
from kami_events.store import MongoEventStore

SELLER, OFFER = "s-1", "offer-1"


class FailsOnce:
    """A collection whose first write matching `fails` raises, as if the
    database went away between two writes of a handler."""

    def __init__(self, inner: AsyncCollection[Document], fails: Any) -> None:
        self._inner = inner
        self._fails = fails
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def update_one(self, query: Document, update: Document, **kw: Any) -> Any:
        self._maybe_fail(query, update)
        return await self._inner.update_one(query, update, **kw)

    async def find_one_and_update(self, query: Document, update: Document, **kw: Any) -> Any:
        self._maybe_fail(query, update)
        return await self._inner.find_one_and_update(query, update, **kw)

    def _maybe_fail(self, query: Document, update: Document) -> None:
        if not self.failed and self._fails(query, update):
            self.failed = True
            raise AutoReconnect("the database went away")


def envelope(event: AggregateEvent, version: int = 1) -> Envelope[Any]:
    return Envelope.wrap(
        event,
        producer="test",
        aggregate_id=event.aggregate_id,
        aggregate_version=version,
        correlation_id="c",
        occurred_at=utc_now(),
        event_id=uuid4(),
    )


def delivered(n: int) -> KeyDelivered:
    return KeyDelivered(
        delivery_id=f"d-{n}",
        order_id=f"o-{n}",
        buyer_id="b-1",
        offer_id=OFFER,
        seller_id=SELLER,
        key_ids=[f"k-{n}"],
        channels=[DeliveryChannel.VAULT],
        mode=DeliveryMode.AUTO,
    )


def failed(n: int) -> DeliveryFailed:
    return DeliveryFailed(
        delivery_id=f"d-{n}",
        order_id=f"o-{n}",
        buyer_id="b-1",
        offer_id=OFFER,
        seller_id=SELLER,
        reason=DeliveryFailure.KEY_INVALID,
        key_ids=[f"k-{n}"],
        faulty_key_ids=[f"k-{n}"],
    )


def placed(n: int, quantity: int) -> OrderPlaced:
    return OrderPlaced(
        order_id=f"o-{n}",
        buyer_id="b-1",
        seller_id=SELLER,
        offer_id=OFFER,
        product_id="p-1",
        quantity=quantity,
        unit_price=1_000,
        total=1_000 * quantity,
        delivery_mode=DeliveryMode.AUTO,
        payment_deadline=utc_now() + timedelta(minutes=15),
    )


def completed(n: int, quantity: int) -> OrderCompleted:
    return OrderCompleted(
        order_id=f"o-{n}",
        buyer_id="b-1",
        seller_id=SELLER,
        offer_id=OFFER,
        completed_by=CompletedBy.BUYER_CONFIRMED,
        total=1_000 * quantity,
    )


async def apply_retrying(projector: Projector, message: Envelope[Any]) -> None:
    """As the consumer does: a failed handler gets the same message again."""
    for _ in range(3):
        try:
            await projector.apply_consumed(message)
            return
        except AutoReconnect:
            continue
    raise AssertionError("still failing")


async def recount(db: AsyncDatabase[Document]) -> dict[str, int]:
    sales = [
        row
        async for row in await db["orders"].aggregate(
            [
                {"$match": {"offer_id": OFFER, "completed": True}},
                {"$group": {"_id": None, "total": {"$sum": "$quantity"}}},
            ]
        )
    ]
    return {
        "deliveries_succeeded": await db["deliveries"].count_documents(
            {"seller_id": SELLER, "outcome": "delivered"}
        ),
        "deliveries_failed": await db["deliveries"].count_documents(
            {"seller_id": SELLER, "outcome": "failed"}
        ),
        "completed_orders": await db["orders"].count_documents(
            {"seller_id": SELLER, "completed": True}
        ),
        "sales": int(sales[0]["total"]) if sales else 0,
    }


async def counted(db: AsyncDatabase[Document]) -> dict[str, int]:
    seller = await db["sellers"].find_one({"_id": SELLER}) or {}
    offer = await db["offers"].find_one({"_id": OFFER}) or {}
    return {
        "deliveries_succeeded": seller.get("deliveries_succeeded", 0),
        "deliveries_failed": seller.get("deliveries_failed", 0),
        "completed_orders": seller.get("completed_orders", 0),
        "sales": offer.get("sales", 0),
    }


@pytest.mark.parametrize(
    "fault",
    [
        # Between recording the fact and counting it.
        "count",
        # Between counting it and marking it counted.
        "mark",
    ],
)
async def test_counts_equal_a_recount_after_redeliveries_failures_and_a_rebuild(
    mongo_db: AsyncDatabase[Document], fault: str
) -> None:
    store = MongoEventStore(mongo_db, producer="catalog")
    await store.ensure_indexes()
    consumed = ConsumedLog(mongo_db)
    await consumed.ensure_indexes()
    models = CatalogReadModels(mongo_db)
    await models.ensure_indexes()
    projector = Projector(models, [StoreSource("events", store)], consumed)

    messages = [
        envelope(placed(1, 2)),
        envelope(delivered(1)),
        envelope(completed(1, 2), version=2),
        # Completed before it was seen placed: counted as one key, then as three.
        envelope(completed(2, 3), version=2),
        envelope(placed(2, 3)),
        envelope(failed(3)),
        envelope(delivered(4)),
        envelope(placed(5, 1)),
        envelope(completed(5, 1), version=2),
    ]
    for message in messages:
        await apply_retrying(projector, message)
        await apply_retrying(projector, message)  # redelivered
    assert await counted(mongo_db) == await recount(mongo_db)

    # An attempt fails half-way through each kind of fact, then is retried
    # (and redelivered once more).
    is_inc = {
        "count": lambda q, u: "$inc" in u,
        "mark": lambda q, u: u.get("$set", {}).get("counted") is True,
    }[fault]
    for collection, message in (
        ("deliveries" if fault == "mark" else "sellers", envelope(delivered(6))),
        ("deliveries" if fault == "mark" else "sellers", envelope(failed(7))),
        ("orders" if fault == "mark" else "offers", envelope(completed(8, 1), version=2)),
    ):
        original = getattr(models, collection)
        flaky = FailsOnce(original, is_inc)
        setattr(models, collection, flaky)
        try:
            await apply_retrying(projector, message)
        finally:
            setattr(models, collection, original)
        assert flaky.failed, collection
        await apply_retrying(projector, message)

    counts = await recount(mongo_db)
    assert counts == {
        "deliveries_succeeded": 3,
        "deliveries_failed": 2,
        "completed_orders": 4,
        "sales": 2 + 3 + 1 + 1,
    }
    assert await counted(mongo_db) == counts

    live = {
        name: [doc async for doc in mongo_db[name].find().sort("_id", 1)]
        for name in ("sellers", "offers", "orders", "deliveries")
    }
    await projector.rebuild()
    assert await counted(mongo_db) == counts
    rebuilt = {
        name: [doc async for doc in mongo_db[name].find().sort("_id", 1)]
        for name in ("sellers", "offers", "orders", "deliveries")
    }
    assert rebuilt == live
