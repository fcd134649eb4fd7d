"""A batch of consumed events is applied event by event and recounted once
per batch: the summaries come out as if each event had been recounted on its
own, the consumed-event log keeps every event in order, and a rebuild from it
gives the same read models."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import uuid4

from kami_catalog.adapters.consumed_log import ConsumedLog
from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.delivery import DeliveryChannel, KeyDelivered
from kami_events.catalogue.inventory import StockChanged
from kami_events.catalogue.ordering import CompletedBy, OrderCompleted, OrderPlaced
from kami_events.envelope import Envelope
from kami_events.mongo import Document
from tests.integration.catalog.conftest import CatalogUnderTest
from tests.integration.catalog.shop import build_shop
from tests.integration.catalog.test_rebuild import snapshot


async def test_a_batch_of_events_on_one_offer_leaves_the_summaries_a_rebuild_gives(
    catalog: CatalogUnderTest,
) -> None:
    c = catalog
    shop = await build_shop(c)
    offer_id = shop.offers["a:M1"]
    before = await c.ok("GET", f"/offers/{offer_id}")
    order_id = str(uuid4())
    common = {"order_id": order_id, "buyer_id": "b-9", "seller_id": "s-a", "offer_id": offer_id}
    logged_before = await c.service.runtime.db["consumed_events"].count_documents({})

    outcomes = await c.feed_batch(
        [
            (StockChanged(offer_id=offer_id, available=9, reserved=1), "inventory"),
            (
                OrderPlaced(
                    **common,
                    product_id=shop.products["M1"],
                    quantity=1,
                    unit_price=before["unit_price"],
                    total=before["unit_price"],
                    delivery_mode=DeliveryMode.AUTO,
                    payment_deadline=c.clock() + timedelta(minutes=15),
                ),
                "ordering",
            ),
            (StockChanged(offer_id=offer_id, available=9, reserved=0), "inventory"),
            (
                KeyDelivered(
                    delivery_id=f"d-{order_id}",
                    order_id=order_id,
                    buyer_id="b-9",
                    offer_id=offer_id,
                    seller_id="s-a",
                    key_ids=["k-9"],
                    channels=[DeliveryChannel.VAULT],
                    mode=DeliveryMode.AUTO,
                ),
                "delivery",
            ),
            (
                OrderCompleted(
                    **common, completed_by=CompletedBy.BUYER_CONFIRMED, total=before["unit_price"]
                ),
                "ordering",
            ),
            # The last word on the offer's stock: it sold out.
            (StockChanged(offer_id=offer_id, available=0, reserved=0), "inventory"),
        ]
    )
    assert outcomes == ["handled"] * 6

    offer = await c.ok("GET", f"/offers/{offer_id}")
    assert offer["sales"] == before["sales"] + 1
    seller = await c.service.read_models.sellers.find_one({"_id": "s-a"})
    assert seller is not None and seller["deliveries_succeeded"] == 1
    # Sold out: the offer is no longer live, and its product counts the other
    # seller's offer only (which has no stock either).
    product = await c.service.read_models.products.find_one({"_id": shop.products["M1"]})
    assert product is not None and product["stock"] == 0
    offer_doc = await c.service.read_models.offers.find_one({"_id": offer_id})
    assert offer_doc is not None and offer_doc["live"] is False

    logged = [
        doc["envelope"]
        async for doc in c.service.runtime.db["consumed_events"].find().sort("seq", 1)
    ][logged_before:]
    # In the order they were applied: different keys run at once, each key's
    # events in their order.
    assert sorted(e["event_type"] for e in logged) == sorted(
        ["StockChanged"] * 3 + ["OrderPlaced", "KeyDelivered", "OrderCompleted"]
    )
    assert [e["payload"]["available"] for e in logged if e["event_type"] == "StockChanged"] == [
        9,
        9,
        0,
    ]

    live = await snapshot(c)
    await c.service.projector.rebuild()
    assert await snapshot(c) == live


async def test_two_processes_logging_batches_at_once_keep_every_event_once(
    catalog: CatalogUnderTest,
) -> None:
    """Two replicas of catalog share the log: each takes seqs after the last it
    knows, and a seq the other took sends it back to one-by-one inserts."""
    c = catalog
    db = c.service.runtime.db
    first, second = ConsumedLog(db), ConsumedLog(db)

    def stock(n: int) -> Envelope[Any]:
        return c.envelope(
            StockChanged(offer_id=f"o-{n}", available=n, reserved=0), producer="inventory"
        )

    await first.record(stock(0))  # each now knows the highest seq
    await second.record(stock(1))
    batches = [[stock(n) for n in range(start, start + 5)] for start in range(10, 40, 5)]
    for index, batch in enumerate(batches):
        await (first if index % 2 else second).record_all(batch)
    # A redelivered batch keeps nothing twice.
    await first.record_all(batches[0])

    rows: list[Document] = [doc async for doc in db["consumed_events"].find().sort("seq", 1)]
    ids = [row["_id"] for row in rows]
    assert len(ids) == len(set(ids)) == 2 + 30
    seqs = [row["seq"] for row in rows]
    assert len(seqs) == len(set(seqs))
    replayed = [str(envelope.event_id) async for envelope in first.replay()]
    assert replayed == ids
