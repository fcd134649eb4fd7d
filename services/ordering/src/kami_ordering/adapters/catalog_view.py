"""Ordering's read model of catalog's products and offers (docs/saga.md: "Offers
reach ordering as events"), and of suspended buyers (identity's `UserSuspended`).

One document per product, offer and suspended user, each written only by an
event newer than the one it holds (`version` = the event's aggregate version),
so a redelivered or replayed event never rolls a price back.

Placement reads an offer's and a product's terms for every order; in a flash
sale they are the same few documents, so they are trusted for a moment
(`kami_events.trusted`). Suspensions are read every time: they are per buyer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from kami_events.catalogue.catalog import (
    OfferDelisted,
    OfferListed,
    OfferPriceChanged,
    ProductPublished,
)
from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.identity import UserSuspended
from kami_events.money import Money
from kami_events.mongo import Document, write_newer
from kami_events.trusted import TrustedReads
from kami_ordering.domain.terms import BuyerFieldRule, OfferTerms, ProductTerms


class MongoOfferCatalog:
    def __init__(
        self,
        db: AsyncDatabase[Document],
        *,
        trust_seconds: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._products: AsyncCollection[Document] = db["products"]
        self._offers: AsyncCollection[Document] = db["offers"]
        self._suspensions: AsyncCollection[Document] = db["suspensions"]
        self._trusted = TrustedReads(trust_seconds, monotonic=monotonic)

    # -- projection -------------------------------------------------------------------

    async def product_published(self, event: ProductPublished, version: int) -> None:
        specs = {spec.name: spec for spec in event.buyer_fields}
        fields = []
        for name in event.required_buyer_fields:
            spec = specs.get(name)
            fields.append(
                {
                    "name": name,
                    "pattern": spec.pattern if spec else None,
                    "choices": list(spec.choices) if spec else [],
                }
            )
        try:
            await write_newer(
                self._products,
                event.product_id,
                version,
                {
                    "name": event.name,
                    "kind": event.kind.value,
                    "face_value": event.face_value,
                    "currency": event.currency,
                    "buyer_fields": fields,
                    "category_id": event.category_id,
                },
            )
        finally:
            self._trusted.written(f"product:{event.product_id}")

    async def offer_listed(self, event: OfferListed, version: int) -> None:
        try:
            await write_newer(
                self._offers,
                event.offer_id,
                version,
                {
                    "product_id": event.product_id,
                    "seller_id": event.seller_id,
                    "unit_price": event.unit_price,
                    "currency": event.currency,
                    "delivery_mode": event.delivery_mode.value,
                    "manual_delivery_sla_minutes": event.manual_delivery_sla_minutes,
                    "guarantee_window_minutes": event.guarantee_window_minutes,
                    "min_quantity": event.min_quantity_per_order,
                    "max_quantity": event.max_quantity_per_order,
                    "listed": True,
                },
            )
        finally:
            self._trusted.written(f"offer:{event.offer_id}")

    async def offer_price_changed(self, event: OfferPriceChanged, version: int) -> None:
        try:
            await _update_newer(
                self._offers,
                event.offer_id,
                version,
                {"unit_price": event.new_unit_price, "currency": event.currency},
            )
        finally:
            self._trusted.written(f"offer:{event.offer_id}")

    async def offer_delisted(self, event: OfferDelisted, version: int) -> None:
        try:
            await _update_newer(self._offers, event.offer_id, version, {"listed": False})
        finally:
            self._trusted.written(f"offer:{event.offer_id}")

    async def user_suspended(self, event: UserSuspended, version: int) -> None:
        await write_newer(
            self._suspensions,
            event.user_id,
            version,
            {"reason": event.reason.value, "until": event.until},
        )

    # -- reads ------------------------------------------------------------------------

    async def offer(self, offer_id: str) -> OfferTerms | None:
        return await self._trusted.get(f"offer:{offer_id}", lambda: self._read_offer(offer_id))

    async def product(self, product_id: str) -> ProductTerms | None:
        return await self._trusted.get(
            f"product:{product_id}", lambda: self._read_product(product_id)
        )

    async def _read_offer(self, offer_id: str) -> OfferTerms | None:
        doc = await self._offers.find_one({"_id": offer_id})
        if doc is None:
            return None
        sla = doc.get("manual_delivery_sla_minutes")
        return OfferTerms(
            offer_id=offer_id,
            product_id=doc["product_id"],
            seller_id=doc["seller_id"],
            unit_price=Money.fen(int(doc["unit_price"]), doc.get("currency", "CNY")),
            delivery_mode=DeliveryMode(doc["delivery_mode"]),
            manual_delivery_sla=timedelta(minutes=sla) if sla else None,
            guarantee_window=timedelta(minutes=int(doc["guarantee_window_minutes"])),
            min_quantity=int(doc.get("min_quantity", 1)),
            max_quantity=int(doc["max_quantity"]),
            listed=bool(doc["listed"]),
        )

    async def _read_product(self, product_id: str) -> ProductTerms | None:
        doc = await self._products.find_one({"_id": product_id})
        if doc is None:
            return None
        return ProductTerms(
            product_id=product_id,
            name=doc["name"],
            kind=doc["kind"],
            face_value=doc.get("face_value"),
            buyer_fields=tuple(
                BuyerFieldRule(
                    name=field["name"],
                    pattern=field.get("pattern"),
                    choices=tuple(field.get("choices") or ()),
                )
                for field in doc.get("buyer_fields", [])
            ),
            category_id=doc.get("category_id"),
        )

    async def is_suspended(self, user_id: str, now: datetime) -> bool:
        doc = await self._suspensions.find_one({"_id": user_id})
        if doc is None:
            return False
        until = doc.get("until")
        return until is None or until > now


async def _update_newer(
    collection: AsyncCollection[Document], doc_id: str, version: int, fields: dict[str, Any]
) -> None:
    """Change a document ordering already has, unless it holds a later version.
    (A change to an offer ordering never saw listed has nothing to change.)"""
    await collection.update_one(
        {"_id": doc_id, "version": {"$lt": version}},
        {"$set": {**fields, "version": version}},
    )
