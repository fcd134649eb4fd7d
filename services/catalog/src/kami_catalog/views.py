"""What the catalog's read API returns: shapes built from the read models.

Money is in fen (int). Ratings are in thousandths of a star (`4500` = 4.5
stars) and rates in basis points (`9850` = 98.5%), so no float ever appears.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from kami_events.catalogue.catalog import BuyerFieldSpec, FaqEntry, ProductKind
from kami_events.catalogue.common import DeliveryMode


class CategoryNode(BaseModel):
    category_id: str = Field(description="The category's stable slug.")
    name: str
    parent_id: str | None
    path: list[str] = Field(description="Slugs from the root down to this category.")
    children: list[CategoryNode] = Field(default_factory=list)


class ProductCard(BaseModel):
    """A product as search results and hot picks list it."""

    product_id: str
    name: str
    kind: ProductKind
    category_id: str
    category_names: list[str]
    brand: str | None
    face_value: int | None = Field(description="In fen.")
    delivery_mode: DeliveryMode | None
    image_url: str | None
    min_price: int | None = Field(description="The cheapest live offer, in fen.")
    live_offers: int
    in_stock: bool
    stock: int = Field(description="Keys available across automatic-delivery offers.")
    sales: int = Field(description="Keys sold in completed orders.")
    rating_milli: int
    rating_count: int
    demoted: bool = Field(
        default=False,
        description="Only flagged sellers sell it (after-sales issue rates): listed after the "
        "others; otherwise price and stock count only the offers in good standing.",
    )
    relevance: int | None = Field(default=None, description="Only for keyword searches.")


class SearchPage(BaseModel):
    items: list[ProductCard]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")
    sort: str


class ProductPage(ProductCard):
    """A product with every detail a buyer needs before buying."""

    aliases: list[str]
    category_path: list[str]
    scope: str | None
    validity_days: int | None
    usage_rules: str | None
    binds_to_account: bool
    required_buyer_fields: list[str]
    buyer_fields: list[BuyerFieldSpec]
    tutorial: str | None
    faq: list[FaqEntry]
    image_urls: list[str]


class OfferView(BaseModel):
    offer_id: str
    product_id: str
    seller_id: str
    status: str
    delist_reason: str | None
    live: bool
    unit_price: int
    delivery_mode: DeliveryMode
    manual_delivery_sla_minutes: int | None
    guarantee_window_minutes: int
    min_quantity_per_order: int
    max_quantity_per_order: int
    stock: int | None = Field(description="Available keys; null for manual delivery.")
    sales: int
    rating_milli: int
    rating_count: int


class SellerReliabilityView(BaseModel):
    seller_id: str
    shop_name: str | None
    delivery_success_bp: int | None = Field(description="Successful deliveries, basis points.")
    ticket_rate_bp: int | None = Field(description="Tickets per delivered order, basis points.")
    rating_milli: int | None
    rating_count: int
    completed_orders: int
    flagged: str | None
    reliable: bool


class ComparisonLine(BaseModel):
    offer: OfferView
    seller: SellerReliabilityView
    best_value: bool


class PriceComparison(BaseModel):
    product: ProductCard
    offers: list[ComparisonLine] = Field(description="Live offers, cheapest first.")
    best_value_offer_id: str | None


class ReviewView(BaseModel):
    review_id: str
    offer_id: str
    buyer_id: str
    rating: int
    comment: str | None
    posted_at: datetime


class HotPick(BaseModel):
    product: ProductCard
    units_sold: int = Field(description="Keys sold in orders completed within the window.")
