"""The catalog's read models, built from events only.

Sources: the catalog's own stores (products and offers, published; categories
and reviews, private) and the log of events consumed from other services.
Every update is idempotent and independent of the order in which different
streams arrive:

- state taken from one stream is written only if its stream version is newer
  than the one already applied (`*_version` fields), so a re-applied or late
  event never overwrites a newer one;
- facts (orders, deliveries, tickets, reviews) are upserted by their own id;
- an offer's and a seller's counts (sales, completed orders, ratings,
  deliveries, tickets) are kept in `kami_events.counters` buckets
  (`offer:<id>`, `seller:<id>`): a fact's write first counts what it changes
  (its new contribution less its old one, read from the fact), once per
  fact version, so a count never reads the history it counts;
- summaries (an offer's liveness, a product's cheapest live offer) are
  recomputed from those facts and counts rather than incremented.

Applying an event writes its facts and notes which summaries it touched;
`recount` recomputes each of those once. The projector recounts after each
consumed batch and each batch of its own commits, so a flash of events on one
offer costs one recount of the offer, its product and its seller.

So applying the same events again, or in another interleaving, gives the
same documents: the rebuild (`rebuild_projections`) compares equal to the
live read models.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from kami_catalog.adapters.consumed_log import ConsumedLog
from kami_catalog.adapters.search_index import ProductIndex
from kami_catalog.domain.events import (
    CategoryAdded,
    CategoryMoved,
    CategoryRenamed,
    OfferReviewed,
)
from kami_catalog.domain.search import (
    DEMOTED_OFFSET,
    NO_PRICE_ASC,
    NO_PRICE_DESC,
    SearchableText,
)
from kami_events.catalogue.aftersales import SellerFlagCleared, SellerFlagged, TicketOpened
from kami_events.catalogue.catalog import (
    OfferDelisted,
    OfferListed,
    OfferPriceChanged,
    ProductPublished,
)
from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.delivery import DeliveryFailed, KeyDelivered
from kami_events.catalogue.identity import SellerApproved, UserSuspended
from kami_events.catalogue.inventory import StockChanged
from kami_events.catalogue.ordering import OrderCompleted, OrderPlaced
from kami_events.catalogue.payment import DepositBelowMinimum, DepositChanged
from kami_events.counters import Counted, RevisionCounters
from kami_events.envelope import Envelope
from kami_events.mongo import Document, upsert_one
from kami_events.store import MongoEventStore

READ_MODELS = (
    "categories",
    "products",
    "offers",
    "sellers",
    "orders",
    "deliveries",
    "tickets",
    "reviews",
)
# The counts' buckets: emptied with the read models, but not compared by a
# rebuild (the revisions' order follows the order events were applied in).
COUNTS = ("stats_counts", "stats_count_heads")
CHECKPOINTS = "projection_checkpoints"


class CatalogReadModels:
    """The collections of the read models, and how each event changes them."""

    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self.db = database
        self.categories = database["categories"]
        self.products = database["products"]
        self.offers = database["offers"]
        self.sellers = database["sellers"]
        self.orders = database["orders"]
        self.deliveries = database["deliveries"]
        self.tickets = database["tickets"]
        self.reviews = database["reviews"]
        self.counts = RevisionCounters(
            database[COUNTS[0]], database[COUNTS[1]], base=self._counted_before
        )
        # Products whose document changed since the last `take_changed_products`.
        self._changed_products: set[str] = set()
        # What applied events touched and `recount` recomputes, in this order
        # (an offer's sales feed its liveness, which feeds its product's summary).
        self._stale_offer_stats: set[str] = set()
        self._stale_offers: set[str] = set()
        self._stale_products: set[str] = set()
        self._stale_sellers: set[str] = set()
        self._handlers: dict[type[Any], Callable[[Envelope[Any]], Awaitable[None]]] = {
            CategoryAdded: self._category_added,
            CategoryRenamed: self._category_renamed,
            CategoryMoved: self._category_moved,
            ProductPublished: self._product_published,
            OfferListed: self._offer_listed,
            OfferPriceChanged: self._offer_price_changed,
            OfferDelisted: self._offer_delisted,
            OfferReviewed: self._offer_reviewed,
            StockChanged: self._stock_changed,
            OrderPlaced: self._order_placed,
            OrderCompleted: self._order_completed,
            KeyDelivered: self._delivered,
            DeliveryFailed: self._delivery_failed,
            TicketOpened: self._ticket_opened,
            SellerApproved: self._seller_approved,
            UserSuspended: self._user_suspended,
            DepositBelowMinimum: self._deposit_below_minimum,
            DepositChanged: self._deposit_changed,
            SellerFlagged: self._seller_flagged,
            SellerFlagCleared: self._seller_flag_cleared,
        }

    async def ensure_indexes(self) -> None:
        # Search runs on the in-memory index (`search_index.py`); these serve
        # the projection's own lookups.
        await self.categories.create_index("parent_id")
        await self.products.create_index("category_id")
        await self.offers.create_index([("product_id", ASCENDING), ("live", ASCENDING)])
        await self.offers.create_index("seller_id")
        await self.orders.create_index([("offer_id", ASCENDING), ("buyer_id", ASCENDING)])
        await self.orders.create_index([("product_id", ASCENDING), ("completed", ASCENDING)])
        await self.orders.create_index([("completed", ASCENDING), ("completed_at", ASCENDING)])
        await self.orders.create_index("seller_id")
        await self.deliveries.create_index("seller_id")
        await self.tickets.create_index("seller_id")
        await self.reviews.create_index([("offer_id", ASCENDING), ("posted_at", DESCENDING)])
        await self.reviews.create_index("seller_id")
        await self.counts.ensure_indexes()

    async def clear(self) -> None:
        for name in (*READ_MODELS, *COUNTS):
            await self.db[name].delete_many({})
        self.counts.forget()
        self._changed_products.clear()
        for stale in self._stale():
            stale.clear()

    def _stale(self) -> tuple[set[str], ...]:
        return (
            self._stale_offer_stats,
            self._stale_offers,
            self._stale_products,
            self._stale_sellers,
        )

    async def recount(self) -> None:
        """Recompute every summary the events applied since the last recount
        touched, each once."""
        stats, self._stale_offer_stats = self._stale_offer_stats, set()
        for offer_id in sorted(stats):
            await self._refresh_offer_stats(offer_id)
        offers, self._stale_offers = self._stale_offers, set()
        for offer_id in sorted(offers):
            await self._refresh_offer(offer_id)
        products, self._stale_products = self._stale_products, set()
        for product_id in sorted(products):
            await self._refresh_product_summary(product_id)
        sellers, self._stale_sellers = self._stale_sellers, set()
        for seller_id in sorted(sellers):
            await self._refresh_seller(seller_id)

    def take_changed_products(self) -> set[str]:
        changed, self._changed_products = self._changed_products, set()
        return changed

    async def apply(self, envelope: Envelope[Any]) -> None:
        handler = self._handlers.get(type(envelope.payload))
        if handler is not None:
            await handler(envelope)

    # -- categories ---------------------------------------------------------------------------

    async def _category_added(self, envelope: Envelope[CategoryAdded]) -> None:
        event = envelope.payload
        parent_path = await self._path_of(event.parent_id)
        applied = await _guarded_set(
            self.categories,
            event.category_id,
            "version",
            envelope.aggregate_version,
            {
                "name": event.name,
                "parent_id": event.parent_id,
                "path": [*parent_path, event.category_id],
                "added_at": envelope.occurred_at,
            },
        )
        if applied:
            await self._refresh_subtree(event.category_id)

    async def _category_renamed(self, envelope: Envelope[CategoryRenamed]) -> None:
        event = envelope.payload
        if await _guarded_set(
            self.categories,
            event.category_id,
            "version",
            envelope.aggregate_version,
            {"name": event.name},
        ):
            await self._refresh_subtree(event.category_id)

    async def _category_moved(self, envelope: Envelope[CategoryMoved]) -> None:
        event = envelope.payload
        if await _guarded_set(
            self.categories,
            event.category_id,
            "version",
            envelope.aggregate_version,
            {"parent_id": event.parent_id},
        ):
            await self._refresh_subtree(event.category_id)

    async def _path_of(self, category_id: str | None) -> list[str]:
        if category_id is None:
            return []
        doc = await self.categories.find_one({"_id": category_id}, {"path": 1})
        return list(doc["path"]) if doc and doc.get("path") else [category_id]

    async def _refresh_subtree(self, root_id: str) -> None:
        """Recompute the paths under `root_id` from the parent links, then the
        products filed anywhere below it (their category names are searchable)."""
        root = await self.categories.find_one({"_id": root_id})
        if root is None:
            return
        queue = [(root_id, [*await self._path_of(root.get("parent_id")), root_id])]
        subtree: list[str] = []
        while queue:
            category_id, path = queue.pop()
            subtree.append(category_id)
            await self.categories.update_one(
                {"_id": category_id}, {"$set": {"path": path, "depth": len(path) - 1}}
            )
            async for child in self.categories.find({"parent_id": category_id}, {"_id": 1}):
                if child["_id"] not in path:
                    queue.append((child["_id"], [*path, child["_id"]]))
        async for product in self.products.find({"category_id": {"$in": subtree}}, {"_id": 1}):
            await self._refresh_product_text(product["_id"])

    # -- products -----------------------------------------------------------------------------

    async def _product_published(self, envelope: Envelope[ProductPublished]) -> None:
        event = envelope.payload
        details = event.model_dump(mode="json", exclude={"product_id"})
        details["updated_at"] = envelope.occurred_at
        if await _guarded_set(
            self.products, event.product_id, "version", envelope.aggregate_version, details
        ):
            await self.products.update_one(
                {"_id": event.product_id}, {"$min": {"published_at": envelope.occurred_at}}
            )
            await self._refresh_product_text(event.product_id)
            self._stale_products.add(event.product_id)

    async def _refresh_product_text(self, product_id: str) -> None:
        product = await self.products.find_one(
            {"_id": product_id}, {"name": 1, "aliases": 1, "brand": 1, "category_id": 1}
        )
        if product is None:
            return
        path = await self._path_of(product["category_id"])
        names: list[str] = []
        for category_id in path:
            category = await self.categories.find_one({"_id": category_id}, {"name": 1})
            if category is not None:
                names.append(category["name"])
        self._changed_products.add(product_id)
        text = SearchableText(
            name=product["name"],
            aliases=product.get("aliases", []),
            brand=product.get("brand"),
            category_names=names,
        )
        await self.products.update_one(
            {"_id": product_id},
            {
                "$set": {
                    "category_path": path,
                    "category_names": names,
                    "terms": sorted(text.terms()),
                }
            },
        )

    async def _refresh_product_summary(self, product_id: str) -> None:
        """What search and the product page show about a product's offers:
        read from its offers one by one (`offer_ids`), by `_id`."""
        product = await self.products.find_one({"_id": product_id}, {"offer_ids": 1})
        if product is None:
            return
        self._changed_products.add(product_id)
        offers = [
            offer
            for offer_id in product.get("offer_ids", [])
            if (offer := await self.offers.find_one({"_id": offer_id})) is not None
        ]
        live = [o for o in offers if o.get("live")]
        # Offers of a flagged seller (or flagged themselves) are demoted: while
        # an offer in good standing is live, search shows only those.
        flagged_sellers = {
            seller_id
            for seller_id in {str(o["seller_id"]) for o in live}
            if ((await self.sellers.find_one({"_id": seller_id}, {"flagged": 1})) or {}).get(
                "flagged"
            )
        }
        promoted = [
            o for o in live if not o.get("flagged") and o["seller_id"] not in flagged_sellers
        ]
        demoted = bool(live) and not promoted
        live = promoted or live
        prices = [int(o["unit_price"]) for o in live]
        rating_sum = sum(int(o.get("rating_sum", 0)) for o in offers)
        rating_count = sum(int(o.get("rating_count", 0)) for o in offers)
        await self.products.update_one(
            {"_id": product_id},
            {
                "$set": {
                    "live_offers": len(live),
                    "in_stock": bool(live),
                    "min_price": min(prices) if prices else None,
                    # A product only demoted offers sell sorts after the others by price.
                    "sort_price": min(prices) + demoted * DEMOTED_OFFSET
                    if prices
                    else NO_PRICE_ASC,
                    "sort_price_desc": (
                        min(prices) - demoted * DEMOTED_OFFSET if prices else NO_PRICE_DESC
                    ),
                    "demoted": demoted,
                    "stock": sum(
                        int(o.get("stock_available") or 0)
                        for o in live
                        if o["delivery_mode"] == DeliveryMode.AUTO.value
                    ),
                    "delivery_modes": sorted({str(o["delivery_mode"]) for o in live}),
                    "sales": sum(int(o.get("sales", 0)) for o in offers),
                    "rating_sum": rating_sum,
                    "rating_count": rating_count,
                    "rating_milli": rating_sum * 1000 // rating_count if rating_count else 0,
                }
            },
        )

    # -- offers -------------------------------------------------------------------------------

    async def _offer_listed(self, envelope: Envelope[OfferListed]) -> None:
        event = envelope.payload
        await self._offer_state(
            envelope,
            {
                "product_id": event.product_id,
                "seller_id": event.seller_id,
                "status": "listed",
                "delist_reason": None,
                "unit_price": event.unit_price,
                "delivery_mode": event.delivery_mode.value,
                "manual_delivery_sla_minutes": event.manual_delivery_sla_minutes,
                "guarantee_window_minutes": event.guarantee_window_minutes,
                "min_quantity_per_order": event.min_quantity_per_order,
                "max_quantity_per_order": event.max_quantity_per_order,
            },
        )

    async def _offer_price_changed(self, envelope: Envelope[OfferPriceChanged]) -> None:
        event = envelope.payload
        await self._offer_state(
            envelope,
            {
                "product_id": event.product_id,
                "seller_id": event.seller_id,
                "unit_price": event.new_unit_price,
            },
        )

    async def _offer_delisted(self, envelope: Envelope[OfferDelisted]) -> None:
        event = envelope.payload
        await self._offer_state(
            envelope,
            {
                "product_id": event.product_id,
                "seller_id": event.seller_id,
                "status": "delisted",
                "delist_reason": event.reason.value,
            },
        )

    async def _offer_state(self, envelope: Envelope[Any], fields: Document) -> None:
        offer_id = envelope.aggregate_id
        fields["updated_at"] = envelope.occurred_at
        if await _guarded_set(self.offers, offer_id, "version", envelope.aggregate_version, fields):
            await self.offers.update_one(
                {"_id": offer_id}, {"$min": {"first_listed_at": envelope.occurred_at}}
            )
            # A product is always published before its offers are listed.
            await self.products.update_one(
                {"_id": fields["product_id"]}, {"$addToSet": {"offer_ids": offer_id}}
            )
            self._stale_offers.add(offer_id)

    async def _stock_changed(self, envelope: Envelope[StockChanged]) -> None:
        event = envelope.payload
        if await _guarded_set(
            self.offers,
            event.offer_id,
            "stock_version",
            envelope.aggregate_version,
            {"stock_available": event.available, "stock_reserved": event.reserved},
        ):
            self._stale_offers.add(event.offer_id)

    async def _refresh_offer(self, offer_id: str) -> None:
        """Whether the offer is live (on sale and, for automatic delivery, with
        stock); then its product's summary."""
        offer = await self.offers.find_one({"_id": offer_id})
        if offer is None:
            return
        has_stock = offer.get("delivery_mode") == DeliveryMode.MANUAL.value or (
            int(offer.get("stock_available") or 0) > 0
        )
        live = offer.get("status") == "listed" and has_stock
        if offer.get("live") != live:  # most stock changes leave it as it is
            await self.offers.update_one({"_id": offer_id}, {"$set": {"live": live}})
        if offer.get("product_id"):
            self._stale_products.add(offer["product_id"])

    async def _refresh_offer_stats(self, offer_id: str) -> None:
        """The offer's sales and rating, from its counts."""
        counts = await self.counts.read(_offer_bucket(offer_id))
        await self.offers.update_one(
            {"_id": offer_id},
            {"$set": {name: counts.get(name, 0) for name in OFFER_COUNTS}},
            upsert=True,
        )
        self._stale_offers.add(offer_id)

    # -- reviews ------------------------------------------------------------------------------

    async def _offer_reviewed(self, envelope: Envelope[OfferReviewed]) -> None:
        event = envelope.payload
        before = await self.reviews.find_one({"_id": event.review_id}, {"rating": 1})
        rating: dict[str, int] = {
            "rating_sum": event.rating - int(before["rating"] if before else 0),
            "rating_count": 0 if before else 1,
        }
        if any(rating.values()):
            counted = f"review:{event.review_id}@{envelope.aggregate_version}"
            await self.counts.add(_offer_bucket(event.offer_id), counted, rating)
            await self.counts.add(_seller_bucket(event.seller_id), counted, rating)
        await _upsert(
            self.reviews,
            event.review_id,
            {
                "offer_id": event.offer_id,
                "product_id": event.product_id,
                "seller_id": event.seller_id,
                "buyer_id": event.buyer_id,
                "order_id": event.order_id,
                "rating": event.rating,
                "comment": event.comment,
                "posted_at": envelope.occurred_at,
            },
        )
        self._stale_offer_stats.add(event.offer_id)
        self._stale_sellers.add(event.seller_id)

    # -- orders, deliveries, tickets ------------------------------------------------------------

    async def _order_placed(self, envelope: Envelope[OrderPlaced]) -> None:
        event = envelope.payload
        before = await self.orders.find_one(
            {"_id": event.order_id}, {"completed": 1, "quantity": 1}
        )
        # Completed before it was seen placed (out of order): its sales were
        # counted at the quantity assumed then.
        if before is not None and before.get("completed"):
            assumed = int(before.get("quantity") or 1)
            if assumed != event.quantity:
                await self.counts.add(
                    _offer_bucket(event.offer_id),
                    f"placed:{event.order_id}",
                    {"sales": event.quantity - assumed},
                )
            self._stale_offer_stats.add(event.offer_id)
        await _upsert(
            self.orders,
            event.order_id,
            {
                "buyer_id": event.buyer_id,
                "seller_id": event.seller_id,
                "offer_id": event.offer_id,
                "product_id": event.product_id,
                "quantity": event.quantity,
            },
        )

    async def _order_completed(self, envelope: Envelope[OrderCompleted]) -> None:
        event = envelope.payload
        completion: Document = {
            "buyer_id": event.buyer_id,
            "seller_id": event.seller_id,
            "offer_id": event.offer_id,
            "completed": True,
            "completed_at": envelope.occurred_at,
        }
        before = await self.orders.find_one(
            {"_id": event.order_id}, {"completed": 1, "quantity": 1}
        )
        if before is None:
            # OrderPlaced (earlier on the same stream) normally says these. Not
            # `$setOnInsert`: FerretDB drops it beside `$set` (docs/storage.md).
            offer = await self.offers.find_one({"_id": event.offer_id}, {"product_id": 1})
            completion["quantity"] = 1
            completion["product_id"] = offer.get("product_id") if offer else None
        if before is None or not before.get("completed"):
            quantity = int((before or completion).get("quantity") or 1)
            counted = f"completed:{event.order_id}"
            await self.counts.add(
                _offer_bucket(event.offer_id),
                counted,
                {"sales": quantity, "completed_orders": 1},
            )
            await self.counts.add(_seller_bucket(event.seller_id), counted, {"completed_orders": 1})
        await _upsert(self.orders, event.order_id, completion)
        self._stale_offer_stats.add(event.offer_id)
        self._stale_sellers.add(event.seller_id)

    async def _delivered(self, envelope: Envelope[KeyDelivered]) -> None:
        await self._delivery_outcome(envelope, "delivered")

    async def _delivery_failed(self, envelope: Envelope[DeliveryFailed]) -> None:
        await self._delivery_outcome(envelope, "failed")

    async def _delivery_outcome(
        self, envelope: Envelope[KeyDelivered] | Envelope[DeliveryFailed], outcome: str
    ) -> None:
        event = envelope.payload
        version = envelope.aggregate_version
        before = await self.deliveries.find_one(
            {"_id": event.delivery_id}, {"outcome": 1, "version": 1}
        )
        if before is not None and int(before.get("version") or 0) >= version:
            return  # a later outcome of this delivery stands
        if before is None or before.get("outcome") != outcome:
            changed = {DELIVERY_COUNTS[outcome]: 1}
            if before is not None and before.get("outcome") in DELIVERY_COUNTS:
                changed[DELIVERY_COUNTS[str(before["outcome"])]] = -1
            await self.counts.add(
                _seller_bucket(event.seller_id), f"delivery:{event.delivery_id}@{version}", changed
            )
        await _guarded_set(
            self.deliveries,
            event.delivery_id,
            "version",
            version,
            {
                "order_id": event.order_id,
                "seller_id": event.seller_id,
                "offer_id": event.offer_id,
                "outcome": outcome,
            },
        )
        self._stale_sellers.add(event.seller_id)

    async def _ticket_opened(self, envelope: Envelope[TicketOpened]) -> None:
        event = envelope.payload
        if await self.tickets.find_one({"_id": event.ticket_id}, {"_id": 1}) is None:
            await self.counts.add(
                _seller_bucket(event.seller_id), f"ticket:{event.ticket_id}", {"tickets_opened": 1}
            )
        await _upsert(
            self.tickets,
            event.ticket_id,
            {"seller_id": event.seller_id, "offer_id": event.offer_id, "order_id": event.order_id},
        )
        self._stale_sellers.add(event.seller_id)

    # -- sellers ------------------------------------------------------------------------------

    async def _seller_approved(self, envelope: Envelope[SellerApproved]) -> None:
        event = envelope.payload
        await _guarded_set(
            self.sellers,
            event.user_id,
            "approval_version",
            envelope.aggregate_version,
            {"shop_name": event.shop_name, "approved_at": envelope.occurred_at},
        )
        self._stale_sellers.add(event.user_id)

    async def _user_suspended(self, envelope: Envelope[UserSuspended]) -> None:
        event = envelope.payload
        await _guarded_set(
            self.sellers,
            event.user_id,
            "suspension_version",
            envelope.aggregate_version,
            {"suspended": True, "suspended_until": event.until},
        )
        self._stale_sellers.add(event.user_id)

    async def _deposit_below_minimum(self, envelope: Envelope[DepositBelowMinimum]) -> None:
        event = envelope.payload
        await _guarded_set(
            self.sellers,
            event.seller_id,
            "deposit_version",
            envelope.aggregate_version,
            {"deposit_below_minimum": True, "deposit_balance": event.balance},
        )
        self._stale_sellers.add(event.seller_id)

    async def _deposit_changed(self, envelope: Envelope[DepositChanged]) -> None:
        event = envelope.payload
        await _guarded_set(
            self.sellers,
            event.seller_id,
            "deposit_version",
            envelope.aggregate_version,
            {
                "deposit_below_minimum": event.balance < event.minimum,
                "deposit_balance": event.balance,
            },
        )
        self._stale_sellers.add(event.seller_id)

    async def _seller_flagged(self, envelope: Envelope[SellerFlagged]) -> None:
        event = envelope.payload
        await self._set_flag(envelope, event.offer_id, event.reason.value, event.severity)

    async def _seller_flag_cleared(self, envelope: Envelope[SellerFlagCleared]) -> None:
        event = envelope.payload
        await self._set_flag(envelope, event.offer_id, event.reason.value, None)

    async def _set_flag(
        self, envelope: Envelope[Any], offer_id: str | None, reason: str, severity: str | None
    ) -> None:
        """A flag per reason on the seller (or on one offer); `flagged` is the
        worst of them. A warning demotes the offers in search, a critical
        seller flag delists them (`SellerStanding`)."""
        seller_id = envelope.payload.seller_id
        collection, doc_id = (self.offers, offer_id) if offer_id else (self.sellers, seller_id)
        doc = await collection.find_one({"_id": doc_id}, {"flags": 1, "flag_version": 1}) or {}
        if int(doc.get("flag_version", 0)) >= envelope.aggregate_version:
            return
        flags = dict(doc.get("flags") or {})
        if severity is None:
            flags.pop(reason, None)
        else:
            flags[reason] = severity
        worst = "critical" if "critical" in flags.values() else ("warning" if flags else None)
        await collection.update_one(
            {"_id": doc_id},
            {
                "$set": {
                    "flags": flags,
                    "flagged": worst,
                    "flag_reason": next(iter(sorted(flags)), None),
                    "flag_version": envelope.aggregate_version,
                }
            },
            upsert=True,
        )
        if offer_id:
            self._stale_offers.add(offer_id)
            return
        self._stale_sellers.add(seller_id)
        async for offer in self.offers.find({"seller_id": seller_id}, {"_id": 1}):
            self._stale_offers.add(str(offer["_id"]))

    async def _refresh_seller(self, seller_id: str) -> None:
        counts = await self.counts.read(_seller_bucket(seller_id))
        await self.sellers.update_one(
            {"_id": seller_id},
            {"$set": {name: counts.get(name, 0) for name in SELLER_COUNTS}},
            upsert=True,
        )

    async def _counted_before(self, bucket: str) -> Counted:
        """A bucket's counts from the facts, for an offer or a seller whose
        facts were written before their counts were kept (once per bucket:
        it reads the whole history). No event of it is counted yet, and
        every fact written since is counted before it is written."""
        kind, _, owner = bucket.partition(":")
        if kind == "offer":
            rating_sum, rating_count = await self._ratings({"offer_id": owner})
            completed = {"offer_id": owner, "completed": True}
            return Counted(
                {
                    "sales": await self._sum_quantity(completed),
                    "completed_orders": await self.orders.count_documents(completed),
                    "rating_sum": rating_sum,
                    "rating_count": rating_count,
                }
            )
        rating_sum, rating_count = await self._ratings({"seller_id": owner})
        return Counted(
            {
                "deliveries_succeeded": await self.deliveries.count_documents(
                    {"seller_id": owner, "outcome": "delivered"}
                ),
                "deliveries_failed": await self.deliveries.count_documents(
                    {"seller_id": owner, "outcome": "failed"}
                ),
                "tickets_opened": await self.tickets.count_documents({"seller_id": owner}),
                "completed_orders": await self.orders.count_documents(
                    {"seller_id": owner, "completed": True}
                ),
                "rating_sum": rating_sum,
                "rating_count": rating_count,
            }
        )

    # -- sums ---------------------------------------------------------------------------------

    async def _sum_quantity(self, match: Document) -> int:
        cursor = await self.orders.aggregate(
            [{"$match": match}, {"$group": {"_id": None, "total": {"$sum": "$quantity"}}}]
        )
        rows = [row async for row in cursor]
        return int(rows[0]["total"]) if rows else 0

    async def _ratings(self, match: Document) -> tuple[int, int]:
        # Counted apart: FerretDB 1.24 reports 0 for `$sum: 1` beside another accumulator.
        count = await self.reviews.count_documents(match)
        if not count:
            return 0, 0
        cursor = await self.reviews.aggregate(
            [{"$match": match}, {"$group": {"_id": None, "total": {"$sum": "$rating"}}}]
        )
        rows = [row async for row in cursor]
        return (int(rows[0]["total"]) if rows else 0), count


OFFER_COUNTS = ("sales", "completed_orders", "rating_sum", "rating_count")
SELLER_COUNTS = (
    "deliveries_succeeded",
    "deliveries_failed",
    "tickets_opened",
    "completed_orders",
    "rating_sum",
    "rating_count",
)
DELIVERY_COUNTS = {"delivered": "deliveries_succeeded", "failed": "deliveries_failed"}


def _offer_bucket(offer_id: str) -> str:
    return f"offer:{offer_id}"


def _seller_bucket(seller_id: str) -> str:
    return f"seller:{seller_id}"


async def _guarded_set(
    collection: AsyncCollection[Document],
    doc_id: str,
    version_field: str,
    version: int,
    fields: Document,
) -> bool:
    """Set `fields` unless a version >= `version` of the same stream was applied.
    Returns whether it wrote."""
    try:
        result = await collection.update_one(
            {
                "_id": doc_id,
                "$or": [{version_field: {"$exists": False}}, {version_field: {"$lt": version}}],
            },
            {"$set": {**fields, version_field: version}},
            upsert=True,
        )
    except DuplicateKeyError:
        return False  # the document exists with a newer version
    return result.matched_count > 0 or result.upserted_id is not None


async def _upsert(collection: AsyncCollection[Document], doc_id: str, fields: Document) -> None:
    await upsert_one(collection, {"_id": doc_id}, {"$set": fields})


# -- keeping the read models up to date ---------------------------------------------------------


@dataclass(frozen=True)
class StoreSource:
    name: str
    store: MongoEventStore


class Projector:
    """Keeps the read models up to date, one writer at a time.

    The catalog's own commits are applied in store position order (positions
    are dense: the store inserts each commit at the highest position + 1), with
    a checkpoint per store; it runs after every command (read-your-writes) and
    periodically (anything a crash left behind). Events consumed from other
    services are applied as they arrive and kept in the consumed-event log;
    after each consumed batch (`settle_consumed`) the log gets the batch's
    events in one write and the read models their recounts.

    Every write to the read models goes through one lock: FerretDB applies an
    update as read, modify, write, so two concurrent writers to one document
    could lose an update (docs/storage.md). That lock holds within one
    process only, and nothing elects one projector among catalog's replicas
    (the chart autoscales the service): so a seller's or offer's standing is
    recounted from the recorded facts at each change rather than incremented,
    and a write that two replicas raced on is made right by the next one.
    """

    def __init__(
        self,
        read_models: CatalogReadModels,
        sources: Sequence[StoreSource],
        consumed: ConsumedLog,
        *,
        index: ProductIndex | None = None,
        batch_size: int = 500,
    ) -> None:
        self.read_models = read_models
        self.index = index
        self._sources = sources
        self._consumed = consumed
        self._checkpoints = read_models.db[CHECKPOINTS]
        self._batch_size = batch_size
        self._lock = asyncio.Lock()
        # Applied, not yet in the consumed-event log (by event id, in order).
        self._unlogged: dict[str, Envelope[Any]] = {}

    async def catch_up(self) -> int:
        """Apply every commit not yet applied; returns how many were applied."""
        async with self._lock:
            applied = 0
            for source in self._sources:
                applied += await self._catch_up(source)
            await self._refresh_index()
            return applied

    async def apply_consumed(self, envelope: Envelope[Any]) -> None:
        """Apply an event consumed from another service, and keep it."""
        await self.take_consumed(envelope)
        await self.settle_consumed()

    async def take_consumed(self, envelope: Envelope[Any]) -> None:
        """Apply an event consumed from another service; it is kept in the
        log, and its recounts made, by the next `settle_consumed`."""
        async with self._lock:
            # Noted before applying: an event whose handler fails half-way and
            # is dead-lettered is still kept, and a rebuild applies it whole.
            self._unlogged.setdefault(str(envelope.event_id), envelope)
            await self.read_models.apply(envelope)

    async def settle_consumed(self) -> None:
        """Keep the events taken since the last settle, and recount what they
        touched (run after each consumed batch, before it is finished)."""
        async with self._lock:
            await self._consumed.record_all(list(self._unlogged.values()))
            self._unlogged.clear()
            await self.read_models.recount()
            await self._refresh_index()

    async def load_index(self) -> None:
        """Load the search index from the products read model (at start)."""
        if self.index is not None:
            async with self._lock:
                self.read_models.take_changed_products()
                await self.index.load(self.read_models.products)

    async def _refresh_index(self) -> None:
        changed = self.read_models.take_changed_products()
        if self.index is not None and changed:
            await self.index.refresh(self.read_models.products, sorted(changed))

    async def rebuild(self) -> None:
        """Rebuild every read model from scratch: the catalog's own commits,
        then the consumed events in arrival order. Run it with the service
        stopped: a live write racing the rebuild could be lost."""
        async with self._lock:
            await self.read_models.clear()
            await self._checkpoints.delete_many({})
            for source in self._sources:
                await self._catch_up(source)
            async for envelope in self._consumed.replay(self._batch_size):
                await self.read_models.apply(envelope)
            await self.read_models.recount()
            self.read_models.take_changed_products()
            if self.index is not None:
                await self.index.load(self.read_models.products)

    async def _catch_up(self, source: StoreSource) -> int:
        checkpoint = await self._checkpoint(source.name)
        applied = 0
        while True:
            commits = await source.store.read_commits(checkpoint, limit=self._batch_size)
            for commit in commits:
                for envelope in commit.events:
                    await self.read_models.apply(envelope)
                checkpoint = commit.position
                applied += 1
            if commits:
                # Before the checkpoint: what these commits touched is not
                # known again once it has moved past them.
                await self.read_models.recount()
                await self._checkpoints.update_one(
                    {"_id": source.name}, {"$set": {"position": checkpoint}}, upsert=True
                )
            if len(commits) < self._batch_size:
                return applied

    async def _checkpoint(self, name: str) -> int:
        doc = await self._checkpoints.find_one({"_id": name})
        return int(doc["position"]) if doc else 0
