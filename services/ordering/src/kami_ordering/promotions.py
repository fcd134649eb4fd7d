"""Handlers of the commerce terms (docs/commerce.md): load the offer's pricing
or the coupon, let it decide, save what it decided."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import uuid4

from kami_events.catalogue.ordering import CouponScope, DiscountFunder
from kami_events.clock import Clock
from kami_events.repository import AggregateRepository
from kami_events.store import CommitContext, ConcurrencyError
from kami_ordering.adapters.ports import OfferCatalog
from kami_ordering.adapters.quotas import MongoQuotaClaims
from kami_ordering.domain.promotions import (
    Coupon,
    CouponTerms,
    FlashSale,
    OfferPricing,
)
from kami_ordering.domain.terms import OfferTerms, PlacementRefused, RefusalKind


@dataclass(frozen=True)
class CouponUsage:
    held: int
    redeemed: int


class Promotions:
    def __init__(
        self,
        *,
        catalog: OfferCatalog,
        pricing: AggregateRepository[OfferPricing],
        coupons: AggregateRepository[Coupon],
        quotas: MongoQuotaClaims,
        clock: Clock,
    ) -> None:
        self._catalog = catalog
        self._pricing = pricing
        self._coupons = coupons
        self._quotas = quotas
        self._clock = clock

    async def set_tiers(
        self, offer_id: str, seller_id: str, tiers: list[tuple[int, int]], request_id: str
    ) -> OfferPricing:
        offer = await self._offer(offer_id)

        def decide(pricing: OfferPricing) -> None:
            pricing.set_tiers(offer, seller_id, tiers)

        return await self._change_pricing(offer_id, decide, request_id)

    async def schedule_flash_sale(
        self,
        offer_id: str,
        seller_id: str,
        *,
        unit_price: int,
        starts_at: datetime,
        ends_at: datetime,
        stock_cap: int,
        per_buyer_limit: int,
        request_id: str,
    ) -> FlashSale:
        offer = await self._offer(offer_id)
        sale_id = str(uuid4())

        def decide(pricing: OfferPricing) -> None:
            pricing.schedule_flash_sale(
                offer,
                seller_id,
                flash_sale_id=sale_id,
                unit_price=unit_price,
                starts_at=starts_at,
                ends_at=ends_at,
                stock_cap=stock_cap,
                per_buyer_limit=per_buyer_limit,
                now=self._clock(),
            )

        pricing = await self._change_pricing(offer_id, decide, request_id)
        return pricing.flash_sales[sale_id]

    async def pricing(self, offer_id: str) -> OfferPricing:
        return await self._pricing.get(offer_id) or OfferPricing(offer_id)

    async def issue_coupon(self, code: str, terms: CouponTerms, request_id: str) -> Coupon:
        if terms.funded_by is DiscountFunder.SELLER and terms.scope is CouponScope.OFFERS:
            for offer_id in terms.offer_ids:
                offer = await self._catalog.offer(offer_id)
                if offer is None or offer.seller_id != terms.issuer_id:
                    raise PlacementRefused(
                        RefusalKind.FORBIDDEN,
                        "not_your_offer",
                        f"Offer {offer_id} is not one of yours.",
                    )
        coupon = Coupon.issue(code, terms)
        try:
            await self._coupons.save(
                coupon, CommitContext(correlation_id=code, causation_id=request_id)
            )
        except ConcurrencyError:
            raise PlacementRefused(
                RefusalKind.UNAVAILABLE, "coupon_code_taken", f"Coupon {code} exists already."
            ) from None
        return coupon

    async def coupon(self, code: str) -> Coupon | None:
        return await self._coupons.get(code)

    async def coupon_usage(self, code: str) -> CouponUsage:
        slots = [s for s in await self._quotas.slots(f"coupon:{code}") if s["slot"] == "total"]
        redeemed = sum(1 for s in slots if s["status"] == "redeemed")
        return CouponUsage(held=len(slots) - redeemed, redeemed=redeemed)

    async def _offer(self, offer_id: str) -> OfferTerms:
        offer = await self._catalog.offer(offer_id)
        if offer is None:
            raise PlacementRefused(
                RefusalKind.NOT_FOUND, "offer_not_found", f"There is no offer {offer_id}."
            )
        return offer

    async def _change_pricing(
        self, offer_id: str, decide: Callable[[OfferPricing], None], request_id: str
    ) -> OfferPricing:
        # Two sellers' requests racing on one offer: the loser decides again on the new state.
        for _ in range(5):
            pricing = await self.pricing(offer_id)
            decide(pricing)
            try:
                await self._pricing.save(
                    pricing, CommitContext(correlation_id=offer_id, causation_id=request_id)
                )
            except ConcurrencyError:
                continue
            return pricing
        raise PlacementRefused(
            RefusalKind.UNAVAILABLE, "pricing_busy", "The offer's pricing kept changing; retry."
        )
