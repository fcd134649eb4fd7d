"""Commerce routes (docs/commerce.md): quantity tiers and flash sales of an
offer (its seller), coupons (a seller for its offers, an operator for a
category or everything).

- `PUT /offers/{id}/price-tiers` (seller): the offer's unit price by quantity;
- `POST /offers/{id}/flash-sales` (seller): a price and a stock cap for a window;
- `GET /offers/{id}/pricing`: both, as buyers see them;
- `POST /coupons` (seller or operator) and `GET /coupons/{code}`: a coupon, its
  terms and how many uses are held and redeemed.

Refusals are 4xx with a stable code: 403 `not_your_offer`, 404
`offer_not_found` / `coupon_not_found`, 409 `coupon_code_taken` /
`flash_sale_overlaps`, 422 `tiers_invalid` / `flash_sale_invalid` /
`coupon_invalid`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import uuid4

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from kami_events.catalogue.common import ID_PATTERN
from kami_events.catalogue.identity import Role
from kami_events.catalogue.ordering import CouponKind, CouponScope, DiscountFunder
from kami_ordering.domain.promotions import Coupon, CouponTerms, FlashSale, OfferPricing
from kami_ordering.domain.terms import PlacementRefused, RefusalKind
from kami_ordering.promotions import Promotions
from kami_web.auth import Principal, require_roles
from kami_web.errors import ApiError, ErrorResponse

router = APIRouter(tags=["commerce"])

Seller = Annotated[Principal, Depends(require_roles(Role.SELLER))]
Issuer = Annotated[Principal, Depends(require_roles(Role.SELLER, Role.OPERATOR))]
ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse} for status in (401, 403, 404, 409, 422)
}
_STATUS = {
    RefusalKind.NOT_FOUND: 404,
    RefusalKind.UNAVAILABLE: 409,
    RefusalKind.INVALID: 422,
    RefusalKind.FORBIDDEN: 403,
    RefusalKind.EXHAUSTED: 409,
}


def _promotions(request: Request) -> Promotions:
    return request.app.state.promotions  # type: ignore[no-any-return]


Deps = Annotated[Promotions, Depends(_promotions)]
OfferId = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]


class TierBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_quantity: int = Field(ge=2, le=1000, strict=True)
    unit_price: int = Field(gt=0, le=10**10, strict=True)


class TiersBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tiers: list[TierBody] = Field(max_length=20)


class FlashSaleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit_price: int = Field(gt=0, le=10**10, strict=True)
    starts_at: datetime
    ends_at: datetime
    stock_cap: int = Field(ge=1, le=100_000, strict=True)
    per_buyer_limit: int = Field(ge=1, le=1000, strict=True)


class FlashSaleView(BaseModel):
    flash_sale_id: str
    unit_price: int
    starts_at: datetime
    ends_at: datetime
    stock_cap: int
    per_buyer_limit: int


class PricingView(BaseModel):
    offer_id: str
    tiers: list[TierBody]
    flash_sales: list[FlashSaleView]


class CouponBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=3, max_length=32)
    kind: CouponKind
    amount_off: int = Field(default=0, ge=0, le=10**10, strict=True)
    percent_off: int = Field(default=0, ge=0, le=100, strict=True)
    max_off: int | None = Field(default=None, gt=0, le=10**10, strict=True)
    min_spend: int = Field(default=0, ge=0, le=10**10, strict=True)
    offer_ids: list[OfferId] = Field(default_factory=list, max_length=100)
    category_id: OfferId | None = None
    scope: CouponScope | None = Field(
        default=None,
        description="offers (a seller's coupon), category or all (an operator's); "
        "by default offers for a seller, all for an operator without a category_id.",
    )
    starts_at: datetime
    ends_at: datetime
    per_buyer_limit: int = Field(ge=1, le=1000, strict=True)
    total_limit: int = Field(ge=1, le=100_000, strict=True)


class CouponView(BaseModel):
    code: str
    issuer_id: str
    funded_by: str
    kind: str
    amount_off: int
    percent_off: int
    max_off: int | None
    min_spend: int
    scope: str
    offer_ids: list[str]
    category_id: str | None
    starts_at: datetime
    ends_at: datetime
    per_buyer_limit: int
    total_limit: int
    held: int = Field(description="Uses held by unpaid or undelivered orders.")
    redeemed: int = Field(description="Uses made final by a delivery.")


def _refused(refused: PlacementRefused) -> ApiError:
    return ApiError(_STATUS[refused.kind], refused.code, refused.message)


@router.put(
    "/offers/{offer_id}/price-tiers",
    response_model=PricingView,
    summary="Set the offer's unit price by quantity (its seller)",
    responses=ERRORS,
)
async def set_price_tiers(
    offer_id: str, body: TiersBody, seller: Seller, deps: Deps
) -> PricingView:
    try:
        pricing = await deps.set_tiers(
            offer_id,
            seller.subject,
            [(t.min_quantity, t.unit_price) for t in body.tiers],
            str(uuid4()),
        )
    except PlacementRefused as refused:
        raise _refused(refused) from None
    return _pricing_view(pricing)


@router.post(
    "/offers/{offer_id}/flash-sales",
    status_code=201,
    response_model=FlashSaleView,
    summary="Schedule a flash sale of the offer (its seller)",
    responses=ERRORS,
)
async def schedule_flash_sale(
    offer_id: str, body: FlashSaleBody, seller: Seller, deps: Deps
) -> FlashSaleView:
    if body.starts_at.tzinfo is None or body.ends_at.tzinfo is None:
        raise ApiError(422, "flash_sale_invalid", "Times need a UTC offset.")
    try:
        sale = await deps.schedule_flash_sale(
            offer_id,
            seller.subject,
            unit_price=body.unit_price,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            stock_cap=body.stock_cap,
            per_buyer_limit=body.per_buyer_limit,
            request_id=str(uuid4()),
        )
    except PlacementRefused as refused:
        raise _refused(refused) from None
    return _sale_view(sale)


@router.get(
    "/offers/{offer_id}/pricing",
    response_model=PricingView,
    summary="The offer's quantity tiers and flash sales",
)
async def offer_pricing(offer_id: str, deps: Deps) -> PricingView:
    return _pricing_view(await deps.pricing(offer_id))


@router.post(
    "/coupons",
    status_code=201,
    response_model=CouponView,
    summary="Issue a coupon (a seller for its offers, an operator for a category or all)",
    responses=ERRORS,
)
async def issue_coupon(body: CouponBody, issuer: Issuer, deps: Deps) -> CouponView:
    if body.starts_at.tzinfo is None or body.ends_at.tzinfo is None:
        raise ApiError(422, "coupon_invalid", "Times need a UTC offset.")
    as_operator = Role.OPERATOR in issuer.roles
    if as_operator:
        funded_by = DiscountFunder.PLATFORM
        scope = body.scope or (CouponScope.CATEGORY if body.category_id else CouponScope.ALL)
    else:
        funded_by = DiscountFunder.SELLER
        scope = body.scope or CouponScope.OFFERS
        if scope is not CouponScope.OFFERS:
            raise ApiError(403, "forbidden", "A seller's coupon is for its own offers.")
    terms = CouponTerms(
        issuer_id=issuer.subject,
        funded_by=funded_by,
        kind=body.kind,
        amount_off=body.amount_off,
        percent_off=body.percent_off,
        max_off=body.max_off,
        min_spend=body.min_spend,
        scope=scope,
        offer_ids=tuple(body.offer_ids),
        category_id=body.category_id,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        per_buyer_limit=body.per_buyer_limit,
        total_limit=body.total_limit,
    )
    try:
        coupon = await deps.issue_coupon(body.code.strip().upper(), terms, str(uuid4()))
    except PlacementRefused as refused:
        raise _refused(refused) from None
    return await _coupon_view(coupon, deps)


@router.get(
    "/coupons/{code}",
    response_model=CouponView,
    summary="A coupon's terms and uses",
    responses=ERRORS,
)
async def show_coupon(code: str, user: Issuer, deps: Deps) -> CouponView:
    coupon = await deps.coupon(code.strip().upper())
    if coupon is None or coupon.terms is None:
        raise ApiError(404, "coupon_not_found", f"There is no coupon {code}.")
    if Role.OPERATOR not in user.roles and coupon.terms.issuer_id != user.subject:
        raise ApiError(404, "coupon_not_found", f"There is no coupon {code}.")
    return await _coupon_view(coupon, deps)


def _sale_view(sale: FlashSale) -> FlashSaleView:
    return FlashSaleView(
        flash_sale_id=sale.flash_sale_id,
        unit_price=sale.unit_price,
        starts_at=sale.starts_at,
        ends_at=sale.ends_at,
        stock_cap=sale.stock_cap,
        per_buyer_limit=sale.per_buyer_limit,
    )


def _pricing_view(pricing: OfferPricing) -> PricingView:
    return PricingView(
        offer_id=pricing.id,
        tiers=[
            TierBody(min_quantity=t.min_quantity, unit_price=t.unit_price) for t in pricing.tiers
        ],
        flash_sales=[_sale_view(s) for s in pricing.flash_sales.values()],
    )


async def _coupon_view(coupon: Coupon, deps: Promotions) -> CouponView:
    terms = coupon.terms
    assert terms is not None
    usage = await deps.coupon_usage(coupon.id)
    return CouponView(
        code=coupon.id,
        issuer_id=terms.issuer_id,
        funded_by=terms.funded_by.value,
        kind=terms.kind.value,
        amount_off=terms.amount_off,
        percent_off=terms.percent_off,
        max_off=terms.max_off,
        min_spend=terms.min_spend,
        scope=terms.scope.value,
        offer_ids=list(terms.offer_ids),
        category_id=terms.category_id,
        starts_at=terms.starts_at,
        ends_at=terms.ends_at,
        per_buyer_limit=terms.per_buyer_limit,
        total_limit=terms.total_limit,
        held=usage.held,
        redeemed=usage.redeemed,
    )
