"""The projector applies the catalog's commits once each, in position order,
from where it stopped; consumed events are kept in arrival order."""

from __future__ import annotations

import asyncio
from uuid import uuid4

from pymongo.asynchronous.database import AsyncDatabase

from kami_catalog.adapters.consumed_log import ConsumedLog
from kami_catalog.adapters.projections import CatalogReadModels, Projector, StoreSource
from kami_catalog.domain.events import CategoryAdded
from kami_events.catalogue.catalog import ProductKind, ProductPublished
from kami_events.catalogue.inventory import StockChanged
from kami_events.clock import utc_now
from kami_events.envelope import Envelope
from kami_events.mongo import Document
from kami_events.store import CommitContext, MongoEventStore


def published(product_id: str, name: str) -> ProductPublished:
    return ProductPublished(
        product_id=product_id,
        category_id="steam",
        name=name,
        kind=ProductKind.GIFT_CARD,
        face_value=5_000,
    )


def projector_over(db: AsyncDatabase[Document], store: MongoEventStore) -> Projector:
    private = MongoEventStore(db, producer="catalog", collection="private_events")
    return Projector(
        CatalogReadModels(db),
        [StoreSource("events", store), StoreSource("private_events", private)],
        ConsumedLog(db),
        batch_size=2,
    )


async def test_commits_are_applied_once_in_order_from_the_checkpoint(
    mongo_db: AsyncDatabase[Document],
) -> None:
    store = MongoEventStore(mongo_db, producer="catalog")
    private = MongoEventStore(mongo_db, producer="catalog", collection="private_events")
    await store.ensure_indexes()
    await private.ensure_indexes()
    context = CommitContext("c")
    await private.append(
        "catalog.category",
        "steam",
        0,
        [CategoryAdded(category_id="steam", name="Steam", parent_id=None, added_by="op")],
        context,
    )
    for n in range(1, 6):
        await store.append("catalog.product", f"p-{n}", 0, [published(f"p-{n}", "Steam")], context)
    # p-1 republished twice: the last name wins.
    await store.append("catalog.product", "p-1", 1, [published("p-1", "Steam 50")], context)
    await store.append("catalog.product", "p-1", 2, [published("p-1", "Steam 100")], context)

    projector = projector_over(mongo_db, store)
    assert await projector.catch_up() == 8  # in batches of two
    assert await projector.catch_up() == 0
    products = mongo_db["products"]
    p1 = await products.find_one({"_id": "p-1"})
    assert p1 is not None and (p1["name"], p1["version"]) == ("Steam 100", 3)
    assert p1["category_names"] == ["Steam"] and "100" in p1["terms"]

    # A new projector (a restarted process) continues from the checkpoint.
    await store.append("catalog.product", "p-6", 0, [published("p-6", "Steam 6")], context)
    assert await projector_over(mongo_db, store).catch_up() == 1
    assert await products.count_documents({}) == 6

    # Re-applying old commits (a lost checkpoint) regresses nothing.
    await mongo_db["projection_checkpoints"].delete_many({})
    assert await projector.catch_up() == 9
    p1 = await products.find_one({"_id": "p-1"})
    assert p1 is not None and p1["name"] == "Steam 100"


async def test_consumed_events_are_kept_once_each_in_arrival_order(
    mongo_db: AsyncDatabase[Document],
) -> None:
    log = ConsumedLog(mongo_db)
    await log.ensure_indexes()
    envelopes = [
        Envelope.wrap(
            StockChanged(offer_id="o-1", available=n, reserved=0),
            producer="inventory",
            aggregate_id="o-1",
            aggregate_version=n,
            correlation_id="c",
            occurred_at=utc_now(),
            event_id=uuid4(),
        )
        for n in range(1, 21)
    ]
    # Concurrent arrivals, each delivered twice: kept once each, none lost.
    results = await asyncio.gather(*(log.record(e) for e in envelopes + envelopes))
    assert sum(results) == 20
    replayed = [e async for e in log.replay(batch_size=7)]
    assert sorted(e.event_id for e in replayed) == sorted(e.event_id for e in envelopes)
    seqs = [doc["seq"] async for doc in log.events.find().sort("seq", 1)]
    assert seqs == list(range(1, 21))
