"""The catalog's HTTP API: thin routes that validate, dispatch and shape.

Browsing, search, price comparison, reviews and hot picks are public.
Operators manage categories and products, approved sellers (role `seller`)
their offers, buyers review offers they bought.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated
from uuid import uuid4

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from kami_catalog.adapters.queries import SearchRequest
from kami_catalog.domain.category import Category
from kami_catalog.domain.events import CategoryName, Slug
from kami_catalog.domain.offer import Offer, OfferTerms
from kami_catalog.domain.product import ProductSpec
from kami_catalog.domain.search import SortOrder
from kami_catalog.handlers import Request as Command
from kami_catalog.views import (
    CategoryNode,
    HotPick,
    OfferView,
    PriceComparison,
    ProductPage,
    ReviewView,
    SearchPage,
    SellerReliabilityView,
)
from kami_events.catalogue.catalog import DelistReason
from kami_events.catalogue.common import ID_PATTERN, DeliveryMode
from kami_events.catalogue.identity import Role
from kami_events.money import PositiveAmount
from kami_web.auth import CurrentUser, Principal, require_roles
from kami_web.errors import ApiError, ErrorResponse

if TYPE_CHECKING:
    from kami_catalog.app import CatalogService

Operator = Annotated[Principal, Depends(require_roles(Role.OPERATOR))]
Seller = Annotated[Principal, Depends(require_roles(Role.SELLER))]
RequestId = Annotated[str | None, Header(alias="X-Request-Id", max_length=64)]

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422)
}


def _service(request: Request) -> CatalogService:
    service: CatalogService = request.app.state.catalog
    return service


def _command(user: Principal, request_id: str | None) -> Command:
    return Command(actor_id=user.subject, request_id=request_id or str(uuid4()))


# -- bodies and results -------------------------------------------------------------------------


class NewCategory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: Slug
    name: CategoryName
    parent_id: Slug | None = None


class CategoryChange(BaseModel):
    """Rename, move (`parent_id`; null moves it to the top), or both."""

    model_config = ConfigDict(extra="forbid")

    name: CategoryName | None = None
    parent_id: Slug | None = None


class CategoryResult(BaseModel):
    category_id: str
    name: str
    parent_id: str | None
    version: int


class NewProduct(ProductSpec):
    product_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
        description="Omit to have one minted.",
    )


class ProductResult(BaseModel):
    product_id: str
    version: int
    changed: bool = Field(description="False when the same details were already published.")


class NewOffer(OfferTerms):
    product_id: str = Field(min_length=1, max_length=64)


class NewPrice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit_price: PositiveAmount


class OperatorDelist(BaseModel):
    model_config = ConfigDict(extra="forbid")

    detail: str | None = Field(default=None, max_length=500)


class OfferResult(BaseModel):
    offer_id: str
    product_id: str
    seller_id: str
    status: str
    delist_reason: DelistReason | None
    terms: OfferTerms | None
    version: int


class NewReview(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=1000)


class ReviewResult(BaseModel):
    review_id: str
    offer_id: str
    rating: int


def _category(category: Category) -> CategoryResult:
    return CategoryResult(
        category_id=category.id,
        name=category.name,
        parent_id=category.parent_id,
        version=category.version,
    )


def _offer(offer: Offer) -> OfferResult:
    return OfferResult(
        offer_id=offer.id,
        product_id=offer.product_id,
        seller_id=offer.seller_id,
        status=offer.status.value,
        delist_reason=offer.delist_reason,
        terms=offer.terms,
        version=offer.version,
    )


def routers() -> list[APIRouter]:
    browse = APIRouter(tags=["browse"], responses=ERRORS)
    operate = APIRouter(tags=["operators"], responses=ERRORS)
    sell = APIRouter(tags=["sellers"], responses=ERRORS)
    review = APIRouter(tags=["buyers"], responses=ERRORS)

    # -- browsing (public) ----------------------------------------------------------------------

    @browse.get("/categories", summary="The category tree")
    async def category_tree(request: Request) -> list[CategoryNode]:
        return await _service(request).queries.category_tree()

    @browse.get("/categories/{slug}", summary="One category with its subtree")
    async def category(request: Request, slug: str) -> CategoryNode:
        return await _service(request).queries.category(slug)

    @browse.get("/search", summary="Keyword search with filters, sorting and cursor pagination")
    async def search(
        request: Request,
        q: Annotated[str | None, Query(max_length=100)] = None,
        category: Annotated[
            str | None, Query(max_length=64, description="A slug; includes its subtree.")
        ] = None,
        face_value_min: Annotated[int | None, Query(ge=0)] = None,
        face_value_max: Annotated[int | None, Query(ge=0)] = None,
        delivery_mode: DeliveryMode | None = None,
        in_stock: bool = False,
        price_min: Annotated[int | None, Query(ge=0)] = None,
        price_max: Annotated[int | None, Query(ge=0)] = None,
        sort: SortOrder | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Query(max_length=1000)] = None,
    ) -> SearchPage:
        return await _service(request).queries.search(
            SearchRequest(
                q=q,
                category=category,
                face_value_min=face_value_min,
                face_value_max=face_value_max,
                delivery_mode=delivery_mode,
                in_stock=in_stock,
                price_min=price_min,
                price_max=price_max,
                sort=sort,
                limit=limit,
                cursor=cursor,
            )
        )

    @browse.get("/products/{product_id}", summary="A product with every detail")
    async def product(request: Request, product_id: str) -> ProductPage:
        return await _service(request).queries.product(product_id)

    @browse.get(
        "/products/{product_id}/offers",
        summary="Price comparison: every live offer of the product, best value marked",
    )
    async def compare(request: Request, product_id: str) -> PriceComparison:
        return await _service(request).queries.comparison(product_id)

    @browse.get("/offers/{offer_id}", summary="One offer")
    async def offer(request: Request, offer_id: str) -> OfferView:
        return await _service(request).queries.offer(offer_id)

    @browse.get("/offers/{offer_id}/reviews", summary="Buyers' reviews of an offer, newest first")
    async def reviews(
        request: Request, offer_id: str, limit: Annotated[int, Query(ge=1, le=100)] = 50
    ) -> list[ReviewView]:
        return await _service(request).queries.reviews_of(offer_id, limit)

    @browse.get("/sellers/{seller_id}", summary="A seller's reliability and rating")
    async def seller(request: Request, seller_id: str) -> SellerReliabilityView:
        return await _service(request).queries.seller(seller_id)

    @browse.get("/hot-picks", summary="Top products by keys sold in recently completed orders")
    async def hot_picks(
        request: Request,
        days: Annotated[int | None, Query(ge=1, le=90)] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> list[HotPick]:
        service = _service(request)
        return await service.queries.hot_picks(
            service.runtime.clock(), days=days or service.settings.hot_picks_days, limit=limit
        )

    # -- operators ------------------------------------------------------------------------------

    @operate.post("/categories", status_code=201, summary="Add a category")
    async def add_category(
        request: Request, body: NewCategory, user: Operator, request_id: RequestId = None
    ) -> CategoryResult:
        category = await _service(request).handlers.add_category(
            _command(user, request_id), slug=body.slug, name=body.name, parent_id=body.parent_id
        )
        return _category(category)

    @operate.patch("/categories/{slug}", summary="Rename or move a category")
    async def change_category(
        request: Request,
        slug: str,
        body: CategoryChange,
        user: Operator,
        request_id: RequestId = None,
    ) -> CategoryResult:
        handlers = _service(request).handlers
        command = _command(user, request_id)
        category = None
        if body.name is not None:
            category = await handlers.rename_category(command, slug=slug, name=body.name)
        if "parent_id" in body.model_fields_set:
            category = await handlers.move_category(command, slug=slug, parent_id=body.parent_id)
        if category is None:
            raise ApiError(422, "nothing_to_change", "Give a new name, a new parent_id, or both.")
        return _category(category)

    @operate.post("/products", status_code=201, summary="Publish a product")
    async def publish(
        request: Request,
        body: NewProduct,
        user: Operator,
        response: Response,
        request_id: RequestId = None,
    ) -> ProductResult:
        product_id = body.product_id or str(uuid4())
        spec = ProductSpec.model_validate(body.model_dump(exclude={"product_id"}))
        product, changed = await _service(request).handlers.publish_product(
            _command(user, request_id), product_id=product_id, spec=spec
        )
        if product.version > 1 or not changed:
            response.status_code = 200
        return ProductResult(product_id=product.id, version=product.version, changed=changed)

    @operate.put("/products/{product_id}", summary="Republish a product with new details")
    async def republish(
        request: Request,
        product_id: Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)],
        body: ProductSpec,
        user: Operator,
        request_id: RequestId = None,
    ) -> ProductResult:
        product, changed = await _service(request).handlers.publish_product(
            _command(user, request_id), product_id=product_id, spec=body
        )
        return ProductResult(product_id=product.id, version=product.version, changed=changed)

    @operate.post("/offers/{offer_id}/operator-delist", summary="Take an offer off sale")
    async def operator_delist(
        request: Request,
        offer_id: str,
        body: OperatorDelist,
        user: Operator,
        request_id: RequestId = None,
    ) -> OfferResult:
        offer = await _service(request).handlers.delist_by_operator(
            _command(user, request_id), offer_id=offer_id, detail=body.detail
        )
        return _offer(offer)

    # -- sellers --------------------------------------------------------------------------------

    @sell.post("/offers", status_code=201, summary="List (or relist) an offer for a product")
    async def list_offer(
        request: Request, body: NewOffer, user: Seller, request_id: RequestId = None
    ) -> OfferResult:
        terms = OfferTerms.model_validate(body.model_dump(exclude={"product_id"}))
        offer = await _service(request).handlers.list_offer(
            _command(user, request_id), product_id=body.product_id, terms=terms
        )
        return _offer(offer)

    @sell.put("/offers/{offer_id}/price", summary="Change an offer's unit price")
    async def change_price(
        request: Request,
        offer_id: str,
        body: NewPrice,
        user: Seller,
        request_id: RequestId = None,
    ) -> OfferResult:
        offer = await _service(request).handlers.change_offer_price(
            _command(user, request_id), offer_id=offer_id, unit_price=body.unit_price
        )
        return _offer(offer)

    @sell.post("/offers/{offer_id}/withdraw", summary="Take your offer off sale")
    async def withdraw(
        request: Request, offer_id: str, user: Seller, request_id: RequestId = None
    ) -> OfferResult:
        offer = await _service(request).handlers.withdraw_offer(
            _command(user, request_id), offer_id=offer_id
        )
        return _offer(offer)

    @sell.get("/sellers/me/offers", summary="Your offers, on sale or not")
    async def my_offers(request: Request, user: Seller) -> list[OfferView]:
        return await _service(request).queries.offers_of_seller(user.subject)

    # -- buyers ---------------------------------------------------------------------------------

    @review.post(
        "/offers/{offer_id}/reviews", status_code=201, summary="Review an offer you bought"
    )
    async def post_review(
        request: Request,
        offer_id: str,
        body: NewReview,
        user: CurrentUser,
        request_id: RequestId = None,
    ) -> ReviewResult:
        posted = await _service(request).handlers.review_offer(
            _command(user, request_id), offer_id=offer_id, rating=body.rating, comment=body.comment
        )
        assert posted.posted is not None
        return ReviewResult(
            review_id=posted.id, offer_id=posted.posted.offer_id, rating=posted.posted.rating
        )

    return [browse, operate, sell, review]
