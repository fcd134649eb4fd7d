"""Reads over the catalog's read models: browsing, search, price comparison,
reviews, hot picks, and the facts command handlers need (seller standing,
completed orders)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from pymongo import ASCENDING, DESCENDING

from kami_catalog.adapters.projections import CatalogReadModels
from kami_catalog.adapters.search_index import ProductIndex
from kami_catalog.domain.comparison import (
    OfferLine,
    ReliabilityPolicy,
    SellerReliability,
    best_value,
)
from kami_catalog.domain.errors import Rejected
from kami_catalog.domain.offer import SellerStanding
from kami_catalog.domain.search import (
    SORT_KEYS,
    SortOrder,
    decode_cursor,
    effective_order,
    encode_cursor,
    fingerprint,
    key_values,
    parse_query,
    sort_key,
)
from kami_catalog.views import (
    CategoryNode,
    ComparisonLine,
    HotPick,
    OfferView,
    PriceComparison,
    ProductCard,
    ProductPage,
    ReviewView,
    SearchPage,
    SellerReliabilityView,
)
from kami_events.catalogue.common import DeliveryMode
from kami_events.mongo import Document

MAX_PAGE = 100


@dataclass(frozen=True)
class SearchRequest:
    q: str | None = None
    category: str | None = None
    face_value_min: int | None = None
    face_value_max: int | None = None
    delivery_mode: DeliveryMode | None = None
    in_stock: bool = False
    price_min: int | None = None
    price_max: int | None = None
    sort: SortOrder | None = None
    limit: int = 20
    cursor: str | None = None


class CatalogQueries:
    def __init__(
        self,
        read_models: CatalogReadModels,
        index: ProductIndex,
        *,
        policy: ReliabilityPolicy | None = None,
    ) -> None:
        self._rm = read_models
        self._index = index
        self._policy = policy or ReliabilityPolicy()

    # -- categories ---------------------------------------------------------------------------

    async def category_tree(self) -> list[CategoryNode]:
        docs = [doc async for doc in self._rm.categories.find().sort("_id", ASCENDING)]
        nodes = {
            d["_id"]: CategoryNode(
                category_id=d["_id"], name=d["name"], parent_id=d.get("parent_id"), path=d["path"]
            )
            for d in docs
        }
        roots: list[CategoryNode] = []
        for node in nodes.values():
            parent = nodes.get(node.parent_id) if node.parent_id else None
            (parent.children if parent else roots).append(node)
        return roots

    async def category(self, category_id: str) -> CategoryNode:
        trees = await self.category_tree()
        stack = list(trees)
        while stack:
            node = stack.pop()
            if node.category_id == category_id:
                return node
            stack.extend(node.children)
        raise Rejected.not_found("category_not_found", f"No category {category_id!r}.")

    # -- search -------------------------------------------------------------------------------

    async def search(self, request: SearchRequest) -> SearchPage:
        if not 1 <= request.limit <= MAX_PAGE:
            raise Rejected.invalid("invalid_limit", f"limit is 1 to {MAX_PAGE}.")
        query = parse_query(request.q)
        order = effective_order(request.sort, query)
        filters = await self._filters(request)
        print_ = fingerprint(
            {"q": list(query.terms), "segments": list(query.segments), "filters": filters}
        )
        after = None
        if request.cursor:
            last = decode_cursor(request.cursor, order, print_)
            after = sort_key(order, dict(zip((f for f, _ in SORT_KEYS[order]), last, strict=True)))
        rows = self._index.search(query, filters, order, after, request.limit + 1)
        more = len(rows) > request.limit
        rows = rows[: request.limit]
        next_cursor = (
            encode_cursor(order, print_, key_values(order, rows[-1])) if more and rows else None
        )
        return SearchPage(
            items=[_card(row, with_relevance=not query.empty) for row in rows],
            next_cursor=next_cursor,
            sort=order.value,
        )

    async def _filters(self, request: SearchRequest) -> Document:
        filters: Document = {}
        if request.category:
            if await self._rm.categories.find_one({"_id": request.category}, {"_id": 1}) is None:
                raise Rejected.not_found("category_not_found", f"No category {request.category!r}.")
            filters["category"] = request.category
        face = _range(request.face_value_min, request.face_value_max, "face_value")
        if face:
            filters["face_value"] = face
        price = _range(request.price_min, request.price_max, "price")
        if price:
            filters["price"] = price
        if request.delivery_mode is not None:
            filters["delivery_mode"] = request.delivery_mode.value
        if request.in_stock:
            filters["in_stock"] = True
        return filters

    # -- products and offers --------------------------------------------------------------------

    async def product(self, product_id: str) -> ProductPage:
        doc = await self._rm.products.find_one({"_id": product_id}, {"terms": 0})
        if doc is None or "name" not in doc:
            raise Rejected.not_found("product_not_found", f"No product {product_id!r}.")
        return ProductPage(
            **_card(doc).model_dump(),
            aliases=doc.get("aliases", []),
            category_path=doc.get("category_path", []),
            scope=doc.get("scope"),
            validity_days=doc.get("validity_days"),
            usage_rules=doc.get("usage_rules"),
            binds_to_account=doc.get("binds_to_account", False),
            required_buyer_fields=doc.get("required_buyer_fields", []),
            buyer_fields=doc.get("buyer_fields", []),
            tutorial=doc.get("tutorial"),
            faq=doc.get("faq", []),
            image_urls=doc.get("image_urls", []),
        )

    async def offer(self, offer_id: str) -> OfferView:
        doc = await self._rm.offers.find_one({"_id": offer_id})
        if doc is None or "status" not in doc:
            raise Rejected.not_found("offer_not_found", f"No offer {offer_id!r}.")
        return _offer(doc)

    async def offers_of_seller(self, seller_id: str) -> list[OfferView]:
        cursor = self._rm.offers.find({"seller_id": seller_id, "status": {"$exists": True}})
        return [_offer(doc) async for doc in cursor.sort("_id", ASCENDING)]

    async def comparison(self, product_id: str) -> PriceComparison:
        product = await self._rm.products.find_one({"_id": product_id}, {"terms": 0})
        if product is None or "name" not in product:
            raise Rejected.not_found("product_not_found", f"No product {product_id!r}.")
        # Point lookups by `_id`: the only ones FerretDB answers from an index.
        offers = [
            offer
            for offer_id in product.get("offer_ids", [])
            if (offer := await self._rm.offers.find_one({"_id": offer_id})) and offer.get("live")
        ]
        sellers: dict[str, Document] = {}
        for seller_id in sorted({o["seller_id"] for o in offers}):
            sellers[seller_id] = await self._rm.sellers.find_one({"_id": seller_id}) or {}
        lines: list[tuple[OfferView, SellerReliability, Document]] = []
        for doc in offers:
            seller = sellers.get(doc["seller_id"], {})
            reliability = _reliability(seller)
            if doc.get("flagged") and reliability.flagged is None:
                # The offer itself is flagged (its own issue rate), not its seller.
                reliability = replace(reliability, flagged=str(doc["flagged"]))
            lines.append((_offer(doc), reliability, seller))
        best = best_value(
            [
                OfferLine(
                    offer_id=view.offer_id,
                    seller_id=view.seller_id,
                    unit_price=view.unit_price,
                    stock=view.stock,
                    delivery_mode=view.delivery_mode,
                    reliability=reliability,
                )
                for view, reliability, _ in lines
            ],
            self._policy,
        )
        # Flagged offers are demoted: after every offer in good standing.
        lines.sort(
            key=lambda line: (line[1].flagged is not None, line[0].unit_price, line[0].offer_id)
        )
        return PriceComparison(
            product=_card(product),
            offers=[
                ComparisonLine(
                    offer=view,
                    seller=self._seller_view(view.seller_id, reliability, seller),
                    best_value=view.offer_id == best,
                )
                for view, reliability, seller in lines
            ],
            best_value_offer_id=best,
        )

    async def seller(self, seller_id: str) -> SellerReliabilityView:
        doc = await self._rm.sellers.find_one({"_id": seller_id})
        if doc is None:
            raise Rejected.not_found("seller_not_found", f"No seller {seller_id!r}.")
        return self._seller_view(seller_id, _reliability(doc), doc)

    def _seller_view(
        self, seller_id: str, reliability: SellerReliability, doc: Document
    ) -> SellerReliabilityView:
        return SellerReliabilityView(
            seller_id=seller_id,
            shop_name=doc.get("shop_name"),
            delivery_success_bp=reliability.delivery_success_bp,
            ticket_rate_bp=reliability.ticket_rate_bp,
            rating_milli=reliability.rating_milli,
            rating_count=reliability.rating_count,
            completed_orders=reliability.completed_orders,
            flagged=reliability.flagged,
            reliable=reliability.reliable(self._policy),
        )

    # -- reviews and hot picks ----------------------------------------------------------------

    async def reviews_of(self, offer_id: str, limit: int = 50) -> list[ReviewView]:
        cursor = (
            self._rm.reviews.find({"offer_id": offer_id})
            .sort([("posted_at", DESCENDING), ("_id", ASCENDING)])
            .limit(min(max(limit, 1), MAX_PAGE))
        )
        return [
            ReviewView(
                review_id=doc["_id"],
                offer_id=doc["offer_id"],
                buyer_id=doc["buyer_id"],
                rating=doc["rating"],
                comment=doc.get("comment"),
                posted_at=doc["posted_at"],
            )
            async for doc in cursor
        ]

    async def hot_picks(self, now: datetime, *, days: int, limit: int) -> list[HotPick]:
        """The products with the most keys sold in orders completed in the last `days`."""
        if not 1 <= days <= 90 or not 1 <= limit <= MAX_PAGE:
            raise Rejected.invalid("invalid_window", f"days is 1 to 90, limit 1 to {MAX_PAGE}.")
        cursor = await self._rm.orders.aggregate(
            [
                {
                    "$match": {
                        "completed": True,
                        "completed_at": {"$gte": now - timedelta(days=days)},
                    }
                },
                {"$group": {"_id": "$product_id", "units": {"$sum": "$quantity"}}},
            ]
        )
        totals = [(int(row["units"]), row["_id"]) async for row in cursor if row["_id"]]
        totals.sort(key=lambda t: (-t[0], t[1]))
        picks: list[HotPick] = []
        for units, product_id in totals:
            doc = await self._rm.products.find_one({"_id": product_id}, {"terms": 0})
            if doc is not None and "name" in doc:
                picks.append(HotPick(product=_card(doc), units_sold=units))
            if len(picks) == limit:
                break
        return picks

    # -- facts for command handlers -------------------------------------------------------------

    async def standing_of(self, seller_id: str, now: datetime) -> SellerStanding:
        doc = await self._rm.sellers.find_one({"_id": seller_id}) or {}
        until = doc.get("suspended_until")
        return SellerStanding(
            seller_id=seller_id,
            suspended=bool(doc.get("suspended")) and (until is None or until > now),
            deposit_below_minimum=bool(doc.get("deposit_below_minimum")),
            flagged_critical=doc.get("flagged") == "critical",
        )

    async def completed_order_of(self, buyer_id: str, offer_id: str) -> str | None:
        doc = await self._rm.orders.find_one(
            {"offer_id": offer_id, "buyer_id": buyer_id, "completed": True},
            {"_id": 1},
            sort=[("_id", ASCENDING)],
        )
        return str(doc["_id"]) if doc else None

    async def offer_ids_of_seller(self, seller_id: str) -> list[str]:
        cursor = self._rm.offers.find({"seller_id": seller_id}, {"_id": 1})
        return [str(doc["_id"]) async for doc in cursor]

    async def offers_awaiting_suspension_end(self, now: datetime) -> list[str]:
        """Offers delisted for a suspension that has run out."""
        sellers = [
            doc["_id"]
            async for doc in self._rm.sellers.find(
                {"suspended": True, "suspended_until": {"$lte": now}}, {"_id": 1}
            )
        ]
        if not sellers:
            return []
        cursor = self._rm.offers.find(
            {
                "seller_id": {"$in": sellers},
                "status": "delisted",
                "delist_reason": "seller_suspended",
            },
            {"_id": 1},
        )
        return [str(doc["_id"]) async for doc in cursor]


def _range(low: int | None, high: int | None, name: str) -> tuple[int | None, int | None] | None:
    if low is not None and high is not None and low > high:
        raise Rejected.invalid(f"invalid_{name}_range", f"{name}_min must not exceed {name}_max.")
    return None if low is None and high is None else (low, high)


def _card(doc: Document, *, with_relevance: bool = False) -> ProductCard:
    images = doc.get("image_urls") or []
    return ProductCard(
        product_id=doc["_id"],
        name=doc["name"],
        kind=doc["kind"],
        category_id=doc["category_id"],
        category_names=doc.get("category_names", []),
        brand=doc.get("brand"),
        face_value=doc.get("face_value"),
        delivery_mode=doc.get("delivery_mode"),
        image_url=images[0] if images else None,
        min_price=doc.get("min_price"),
        live_offers=doc.get("live_offers", 0),
        in_stock=doc.get("in_stock", False),
        stock=doc.get("stock", 0),
        sales=doc.get("sales", 0),
        rating_milli=doc.get("rating_milli", 0),
        rating_count=doc.get("rating_count", 0),
        demoted=bool(doc.get("demoted", False)),
        relevance=doc.get("relevance") if with_relevance else None,
    )


def _offer(doc: Document) -> OfferView:
    manual = doc["delivery_mode"] == DeliveryMode.MANUAL.value
    return OfferView(
        offer_id=doc["_id"],
        product_id=doc["product_id"],
        seller_id=doc["seller_id"],
        status=doc["status"],
        delist_reason=doc.get("delist_reason"),
        live=bool(doc.get("live")),
        unit_price=doc["unit_price"],
        delivery_mode=doc["delivery_mode"],
        manual_delivery_sla_minutes=doc.get("manual_delivery_sla_minutes"),
        guarantee_window_minutes=doc["guarantee_window_minutes"],
        min_quantity_per_order=doc.get("min_quantity_per_order", 1),
        max_quantity_per_order=doc["max_quantity_per_order"],
        stock=None if manual else int(doc.get("stock_available") or 0),
        sales=doc.get("sales", 0),
        rating_milli=(doc["rating_sum"] * 1000 // doc["rating_count"])
        if doc.get("rating_count")
        else 0,
        rating_count=doc.get("rating_count", 0),
    )


def _reliability(doc: Document) -> SellerReliability:
    return SellerReliability(
        deliveries_succeeded=doc.get("deliveries_succeeded", 0),
        deliveries_failed=doc.get("deliveries_failed", 0),
        tickets_opened=doc.get("tickets_opened", 0),
        completed_orders=doc.get("completed_orders", 0),
        rating_sum=doc.get("rating_sum", 0),
        rating_count=doc.get("rating_count", 0),
        flagged=doc.get("flagged"),
    )
