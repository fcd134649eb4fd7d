"""Products: what is sold platform-wide, published by operators with every
detail a buyer needs before buying (face value, scope, validity, rules)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kami_catalog.domain.errors import Rejected
from kami_events.aggregate import Aggregate
from kami_events.catalogue.catalog import (
    Alias,
    BuyerFieldSpec,
    FaqEntry,
    ImageUrl,
    ProductKind,
    ProductPublished,
)
from kami_events.catalogue.common import DeliveryMode
from kami_events.event import Event
from kami_events.money import Amount


class ProductSpec(BaseModel):
    """Everything an operator says about a product when publishing it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    category_id: str = Field(min_length=1, max_length=64)
    kind: ProductKind
    delivery_mode: DeliveryMode
    face_value: Amount | None = Field(description="Nominal value of one key, in fen.")
    aliases: list[Alias] = Field(default_factory=list, max_length=20)
    brand: str | None = Field(default=None, max_length=100)
    scope: str | None = Field(default=None, max_length=200)
    validity_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    usage_rules: str | None = Field(default=None, max_length=2000)
    binds_to_account: bool = False
    buyer_fields: list[BuyerFieldSpec] = Field(default_factory=list, max_length=10)
    tutorial: str | None = Field(default=None, max_length=5000)
    faq: list[FaqEntry] = Field(default_factory=list, max_length=30)
    image_urls: list[ImageUrl] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _account_bound_products_ask_for_the_account(self) -> Self:
        if self.binds_to_account and not self.buyer_fields:
            raise ValueError("a product that binds to an account needs buyer_fields")
        if self.buyer_fields and not self.binds_to_account:
            raise ValueError("buyer_fields are only for products that bind to an account")
        names = [spec.name for spec in self.buyer_fields]
        if len(set(names)) != len(names):
            raise ValueError("buyer_fields repeat a name")
        return self


class Product(Aggregate):
    aggregate_type: ClassVar[str] = "catalog.product"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.published: ProductPublished | None = None

    @property
    def exists(self) -> bool:
        return self.published is not None

    @property
    def delivery_mode(self) -> DeliveryMode | None:
        return self.published.delivery_mode if self.published else None

    def publish(self, spec: ProductSpec) -> bool:
        """Publish, or republish with new details. Republishing the same details
        changes nothing (returns False), so seeding twice is harmless."""
        event = ProductPublished(
            product_id=self.id,
            category_id=spec.category_id,
            name=" ".join(spec.name.split()),
            kind=spec.kind,
            face_value=spec.face_value,
            required_buyer_fields=[f.name for f in spec.buyer_fields],
            aliases=list(dict.fromkeys(" ".join(a.split()) for a in spec.aliases)),
            brand=spec.brand,
            scope=spec.scope,
            validity_days=spec.validity_days,
            usage_rules=spec.usage_rules,
            binds_to_account=spec.binds_to_account,
            delivery_mode=spec.delivery_mode,
            buyer_fields=spec.buyer_fields,
            tutorial=spec.tutorial,
            faq=spec.faq,
            image_urls=spec.image_urls,
        )
        if event == self.published:
            return False
        if self.published and self.published.delivery_mode != event.delivery_mode:
            # Live offers were listed under the old mode; ordering and inventory
            # rely on it. A different mode is a different product.
            raise Rejected.conflict(
                "delivery_mode_fixed",
                "A published product keeps its delivery mode; publish a new product instead.",
            )
        self._trigger(event)
        return True

    def apply(self, event: Event) -> None:
        if isinstance(event, ProductPublished):
            self.published = event
        else:
            super().apply(event)
