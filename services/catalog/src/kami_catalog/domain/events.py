"""The catalog's private events: the category tree and buyers' reviews.

They are the catalog's own history, kept in a second event store that no
outbox relay reads, so they never reach Kafka and are not part of the shared
catalogue (no other service consumes them). The read models are rebuilt from
them together with the published product and offer events.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from kami_events.catalogue.common import AggregateEvent, Id

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"

Slug = Annotated[str, Field(min_length=1, max_length=64, pattern=SLUG_PATTERN)]
"""A category's stable id, readable in URLs: `genshin`, `mobile-topup`."""

CategoryName = Annotated[str, Field(min_length=1, max_length=50)]


class CategoryEvent(AggregateEvent):
    """A category of the catalogue tree (aggregate `catalog.category`, id = its
    slug). Private to the catalog: never published, consumed by its projections."""

    abstract = True
    aggregate_type: ClassVar[str] = "catalog.category"
    aggregate_id_field: ClassVar[str] = "category_id"

    category_id: Slug


class CategoryAdded(CategoryEvent):
    """An operator added a category under `parent_id` (a root when null)."""

    name: CategoryName
    parent_id: Slug | None
    added_by: Id


class CategoryRenamed(CategoryEvent):
    """An operator renamed a category; its slug stays."""

    name: CategoryName
    renamed_by: Id


class CategoryMoved(CategoryEvent):
    """An operator moved a category (with its subtree) under another parent."""

    parent_id: Slug | None
    previous_parent_id: Slug | None
    moved_by: Id


class ReviewEvent(AggregateEvent):
    """One buyer's review of one offer (aggregate `catalog.review`, id derived
    from offer and buyer, so a buyer reviews an offer once). Private to the catalog."""

    abstract = True
    aggregate_type: ClassVar[str] = "catalog.review"
    aggregate_id_field: ClassVar[str] = "review_id"

    review_id: Id


class OfferReviewed(ReviewEvent):
    """A buyer with a completed order of the offer rated it (买家秀). Reviews are
    public; the comment is what the buyer chose to publish."""

    offer_id: Id
    product_id: Id
    seller_id: Id
    buyer_id: Id
    order_id: Id
    rating: Annotated[int, Field(ge=1, le=5, strict=True)]
    comment: Annotated[str, Field(max_length=1000)] | None = None
