"""Ordering's MongoDB read models on the real FerretDB: version guards, the
idempotency index, deadline holds, pagination."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from kami_events.catalogue.catalog import (
    BuyerFieldSpec,
    DelistReason,
    OfferDelisted,
    OfferListed,
    OfferPriceChanged,
    ProductKind,
    ProductPublished,
)
from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.identity import SuspensionReason, UserSuspended
from kami_events.clock import ManualClock
from kami_events.money import Money
from kami_events.mongo import Document
from kami_ordering.adapters.catalog_view import MongoOfferCatalog
from kami_ordering.adapters.order_requests import MongoOrderRequests
from kami_ordering.adapters.order_views import InvalidCursor, MongoOrderViews, MongoSettlements
from kami_ordering.adapters.ports import OrderRequest
from kami_ordering.adapters.repository import LoadedOrder
from kami_ordering.domain.order import Deadline, DeadlineKind, Order, SagaTimers
from kami_ordering.domain.terms import OfferTerms

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
TIMERS = SagaTimers()


def offer_listed(price: int = 1000) -> OfferListed:
    return OfferListed(
        offer_id="offer-1",
        product_id="product-1",
        seller_id="seller-1",
        unit_price=price,
        delivery_mode=DeliveryMode.AUTO,
        manual_delivery_sla_minutes=None,
        guarantee_window_minutes=20,
        max_quantity_per_order=5,
    )


async def test_offers_follow_the_newest_catalog_event_and_never_roll_back(
    mongo_db: AsyncDatabase[Document],
) -> None:
    catalog = MongoOfferCatalog(mongo_db)
    await catalog.offer_listed(offer_listed(1000), 1)
    await catalog.offer_price_changed(
        OfferPriceChanged(
            offer_id="offer-1",
            product_id="product-1",
            seller_id="seller-1",
            old_unit_price=1000,
            new_unit_price=1200,
        ),
        2,
    )
    await catalog.offer_listed(offer_listed(1000), 1)  # redelivered: stays at version 2
    offer = await catalog.offer("offer-1")
    assert offer is not None
    assert offer.unit_price == Money.fen(1200)
    assert offer.guarantee_window == timedelta(minutes=20)
    assert offer.listed

    await catalog.offer_delisted(
        OfferDelisted(
            offer_id="offer-1",
            product_id="product-1",
            seller_id="seller-1",
            reason=DelistReason.SELLER_REQUEST,
        ),
        3,
    )
    delisted = await catalog.offer("offer-1")
    assert delisted is not None and not delisted.listed
    await catalog.offer_listed(offer_listed(900), 4)  # relisted
    relisted = await catalog.offer("offer-1")
    assert relisted is not None and relisted.listed and relisted.unit_price == Money.fen(900)

    # A price change for an offer ordering never saw listed creates nothing.
    await catalog.offer_price_changed(
        OfferPriceChanged(
            offer_id="offer-unknown",
            product_id="product-1",
            seller_id="seller-1",
            old_unit_price=1,
            new_unit_price=2,
        ),
        2,
    )
    assert await catalog.offer("offer-unknown") is None


async def test_offer_terms_are_trusted_for_a_while_and_this_process_writes_replace_them(
    mongo_db: AsyncDatabase[Document],
) -> None:
    now = [100.0]
    catalog = MongoOfferCatalog(mongo_db, trust_seconds=1.0, monotonic=lambda: now[0])
    await catalog.offer_listed(offer_listed(1000), 1)
    assert (await catalog.offer("offer-1")).unit_price == Money.fen(1000)  # type: ignore[union-attr]

    # Another replica consumed a price change: seen once the trust ran out.
    other = MongoOfferCatalog(mongo_db)
    change = OfferPriceChanged(
        offer_id="offer-1",
        product_id="product-1",
        seller_id="seller-1",
        old_unit_price=1000,
        new_unit_price=1200,
    )
    await other.offer_price_changed(change, 2)
    now[0] += 0.5
    assert (await catalog.offer("offer-1")).unit_price == Money.fen(1000)  # type: ignore[union-attr]
    now[0] += 0.6
    assert (await catalog.offer("offer-1")).unit_price == Money.fen(1200)  # type: ignore[union-attr]

    # This process's own write is seen at once.
    await catalog.offer_price_changed(change.model_copy(update={"new_unit_price": 1300}), 3)
    assert (await catalog.offer("offer-1")).unit_price == Money.fen(1300)  # type: ignore[union-attr]


async def test_products_keep_their_buyer_field_rules_and_suspensions_end(
    mongo_db: AsyncDatabase[Document],
) -> None:
    catalog = MongoOfferCatalog(mongo_db)
    await catalog.product_published(
        ProductPublished(
            product_id="product-1",
            category_id="cat",
            name="Membership",
            kind=ProductKind.MEMBERSHIP,
            face_value=None,
            required_buyer_fields=["game_account", "server"],
            buyer_fields=[
                BuyerFieldSpec(name="game_account", label="UID", pattern=r"[0-9]{5,12}"),
                BuyerFieldSpec(name="server", label="Server", choices=["north", "south"]),
            ],
        ),
        1,
    )
    product = await catalog.product("product-1")
    assert product is not None
    assert [(r.name, r.pattern, r.choices) for r in product.buyer_fields] == [
        ("game_account", r"[0-9]{5,12}", ()),
        ("server", None, ("north", "south")),
    ]

    await catalog.user_suspended(
        UserSuspended(
            user_id="buyer-1",
            reason=SuspensionReason.FRAUD_SUSPECTED,
            suspended_by="op",
            until=T0 + timedelta(days=1),
        ),
        3,
    )
    assert await catalog.is_suspended("buyer-1", T0)
    assert not await catalog.is_suspended("buyer-1", T0 + timedelta(days=2))
    assert not await catalog.is_suspended("buyer-2", T0)


def fresh_order(order_id: str, buyer: str = "buyer-1") -> Order:
    offer = OfferTerms(
        offer_id="offer-1",
        product_id="product-1",
        seller_id="seller-1",
        unit_price=Money.fen(500),
        delivery_mode=DeliveryMode.AUTO,
        manual_delivery_sla=None,
        guarantee_window=timedelta(minutes=15),
        max_quantity=5,
    )
    return Order.place(
        order_id, buyer_id=buyer, offer=offer, quantity=1, buyer_fields={}, now=T0, timers=TIMERS
    )


def placed_order(order_id: str, buyer: str = "buyer-1") -> Order:
    order = fresh_order(order_id, buyer)
    order.mark_committed()
    return order


async def test_deadlines_are_due_by_time_held_by_open_claims_and_versioned(
    mongo_db: AsyncDatabase[Document],
) -> None:
    views = MongoOrderViews(mongo_db)
    await views.ensure_indexes()
    early, late = placed_order("order-early"), placed_order("order-late")
    await views.sync(LoadedOrder(early, T0, T0), Deadline(DeadlineKind.PAYMENT, T0))
    await views.sync(
        LoadedOrder(late, T0, T0), Deadline(DeadlineKind.PAYMENT, T0 + timedelta(minutes=5))
    )
    assert await views.due(T0 - timedelta(seconds=1), 10) == []
    assert await views.due(T0 + timedelta(minutes=5), 10) == ["order-early", "order-late"]
    assert await views.due(T0 + timedelta(minutes=5), 1) == ["order-early"]

    await views.hold("order-early", "ticket-1")
    await views.hold("order-early", "ticket-2")
    assert await views.due(T0 + timedelta(minutes=5), 10) == ["order-late"]
    await views.release("order-early", "ticket-1")
    assert await views.due(T0 + timedelta(minutes=5), 10) == ["order-late"]
    await views.release("order-early", "ticket-2")
    assert "order-early" in await views.due(T0 + timedelta(minutes=5), 10)
    assert await views.count_past_deadline(T0 + timedelta(minutes=1)) == 1

    # The newest state clears the deadline: the order leaves the poller's list.
    newer = placed_order("order-late")
    newer.version = 3
    await views.sync(LoadedOrder(newer, T0, T0), None)
    assert await views.due(T0 + timedelta(hours=1), 10) == ["order-early"]
    assert await views.count_by_state() == {"PLACED": 2}
    assert await mongo_db["deadlines"].find_one({"_id": "order-late"}) is None
    assert await mongo_db["deadlines"].count_documents({}) == 1

    # A hold for an order whose views do not exist yet is kept until they do.
    await views.hold("order-new", "ticket-9")
    fresh = placed_order("order-new")
    await views.sync(LoadedOrder(fresh, T0, T0), Deadline(DeadlineKind.GUARANTEE, T0))
    assert "order-new" not in await views.due(T0 + timedelta(hours=1), 10)


async def test_a_buyers_orders_page_newest_first(mongo_db: AsyncDatabase[Document]) -> None:
    views = MongoOrderViews(mongo_db)
    await views.ensure_indexes()
    for n in range(5):
        order = placed_order(f"order-{n}")
        at = T0 + timedelta(minutes=n)
        await views.sync(LoadedOrder(order, at, at), None)
    await views.sync(LoadedOrder(placed_order("order-other", "buyer-2"), T0, T0), None)
    # order-3 moved on to version 2: its one row follows.
    moved = placed_order("order-3")
    moved.reserve(["k"], T0 + timedelta(minutes=15))
    moved.mark_committed()
    at = T0 + timedelta(minutes=3)
    await views.sync(LoadedOrder(moved, at, at), None)
    assert await mongo_db["orders"].count_documents({"order_id": "order-3"}) == 1

    first = await views.list_for_buyer("buyer-1", 2, None)
    assert [o.order_id for o in first.orders] == ["order-4", "order-3"]
    assert first.orders[1].state == "RESERVED"  # the newest version of order-3
    assert first.next_cursor is not None
    second = await views.list_for_buyer("buyer-1", 2, first.next_cursor)
    assert [o.order_id for o in second.orders] == ["order-2", "order-1"]
    assert second.next_cursor is not None
    last = await views.list_for_buyer("buyer-1", 2, second.next_cursor)
    assert [o.order_id for o in last.orders] == ["order-0"]
    assert last.next_cursor is None
    with pytest.raises(InvalidCursor):
        await views.list_for_buyer("buyer-1", 2, "not-a-cursor")


async def test_one_order_per_buyer_and_idempotency_key_even_when_racing(
    mongo_db: AsyncDatabase[Document],
) -> None:
    requests = MongoOrderRequests(mongo_db, ManualClock(T0))
    await requests.ensure_indexes()
    attempts = [fresh_order(f"order-{n}") for n in range(4)]
    recorded = await asyncio.gather(
        *(
            requests.claim(
                OrderRequest("buyer-1", "key-1", "fingerprint", order.id, order.pending_events)
            )
            for order in attempts
        )
    )
    assert len({r.order_id for r in recorded}) == 1
    found = await requests.find("buyer-1", "key-1")
    assert found is not None and found.order_id == recorded[0].order_id
    winner = next(order for order in attempts if order.id == found.order_id)
    assert found.events == winner.pending_events  # the events round-trip
    other_buyer = await requests.claim(
        OrderRequest("buyer-2", "key-1", "f", "order-x", attempts[0].pending_events)
    )
    assert other_buyer.order_id == "order-x"


async def test_settlements_are_recorded_once(mongo_db: AsyncDatabase[Document]) -> None:
    settlements = MongoSettlements(mongo_db)
    assert not await settlements.is_settled("order-1")
    await settlements.record("order-1", "payment-1", T0)
    await settlements.record("order-1", "payment-1", T0 + timedelta(minutes=1))
    assert await settlements.is_settled("order-1")
    doc = await mongo_db["settlements"].find_one({"_id": "order-1"})
    assert doc is not None and doc["settled_at"] == T0
