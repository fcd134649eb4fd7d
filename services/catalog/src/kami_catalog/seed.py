"""Seed the catalogue from a starter file (e.g. `catalog-sample.json`).

The file holds a category tree and products:

    {"categories": {"games": {"name": "游戏娱乐", "children": {"genshin": "原神"}}},
     "products": [{"category": "genshin", "name": "原神 空月祝福 月卡",
                   "face_value_fen": 3000, "delivery_mode": "manual", ...}]}

Seeding goes through the same commands an operator uses, so every product
becomes a `ProductPublished` event. It is idempotent: product ids are derived
from the names, categories that already exist are renamed or moved only if
they differ, and republishing identical details changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from kami_catalog.domain.errors import Rejected
from kami_catalog.domain.product import ProductSpec
from kami_catalog.handlers import CatalogHandlers, Request
from kami_events.catalogue.catalog import BuyerFieldSpec, FaqEntry, ProductKind

_SEED_NAMESPACE = uuid5(NAMESPACE_URL, "https://kami.example/catalog/seed")

# When a product does not name its kind: by its category, else its root category.
KIND_BY_CATEGORY = {
    "games": ProductKind.GAME_POINTS,
    "mobile-topup": ProductKind.PHONE_TOPUP,
    "video-vip": ProductKind.MEMBERSHIP,
    "music-vip": ProductKind.MEMBERSHIP,
    "food-coupons": ProductKind.GIFT_CARD,
    "education": ProductKind.COURSE,
}


class SeedError(ValueError):
    """The starter file is not a catalogue Kami can load."""


@dataclass(frozen=True)
class CategorySeed:
    slug: str
    name: str
    parent_id: str | None


@dataclass(frozen=True)
class ProductSeed:
    product_id: str
    spec: ProductSpec


@dataclass(frozen=True)
class CatalogueSeed:
    categories: list[CategorySeed]
    products: list[ProductSeed]


@dataclass
class SeedReport:
    categories_added: int = 0
    categories_changed: int = 0
    products_published: int = 0
    products_unchanged: int = 0
    errors: list[str] = field(default_factory=list)


def seeded_product_id(name: str) -> str:
    return str(uuid5(_SEED_NAMESPACE, " ".join(name.split())))


def parse_catalogue(document: Any) -> CatalogueSeed:
    if not isinstance(document, dict) or not isinstance(document.get("categories"), dict):
        raise SeedError("the file needs a `categories` object and a `products` list")
    categories = list(_categories(document["categories"], None))
    parents = {c.slug: c.parent_id for c in categories}
    products: list[ProductSeed] = []
    for index, raw in enumerate(document.get("products") or []):
        try:
            products.append(_product(raw, parents))
        except (KeyError, TypeError, ValueError) as exc:
            raise SeedError(f"product #{index + 1}: {exc}") from exc
    return CatalogueSeed(categories, products)


def load_catalogue(path: Path) -> CatalogueSeed:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SeedError(f"cannot read {path}: {exc}") from exc
    return parse_catalogue(document)


def _categories(tree: dict[str, Any], parent: str | None) -> Iterator[CategorySeed]:
    for slug, node in tree.items():
        if isinstance(node, str):
            yield CategorySeed(slug, node, parent)
        elif isinstance(node, dict) and isinstance(node.get("name"), str):
            yield CategorySeed(slug, node["name"], parent)
            yield from _categories(node.get("children") or {}, slug)
        else:
            raise SeedError(f"category {slug!r} needs a name")


def _kind(raw: dict[str, Any], parents: dict[str, str | None]) -> ProductKind:
    if raw.get("kind"):
        return ProductKind(raw["kind"])
    category: str | None = raw["category"]
    while category is not None:
        if category in KIND_BY_CATEGORY:
            return KIND_BY_CATEGORY[category]
        category = parents.get(category)
    return ProductKind.OTHER


def _product(raw: dict[str, Any], parents: dict[str, str | None]) -> ProductSeed:
    name = raw["name"]
    spec = ProductSpec(
        name=name,
        category_id=raw["category"],
        kind=_kind(raw, parents),
        delivery_mode=raw.get("delivery_mode", "auto"),
        face_value=raw.get("face_value_fen"),
        aliases=raw.get("aliases") or [],
        brand=raw.get("brand"),
        scope=raw.get("scope"),
        validity_days=raw.get("validity_days"),
        usage_rules=raw.get("usage_rules"),
        binds_to_account=bool(raw.get("binds_to_account", False)),
        buyer_fields=[BuyerFieldSpec.model_validate(f) for f in raw.get("buyer_fields") or []],
        tutorial=raw.get("tutorial"),
        faq=[FaqEntry.model_validate(f) for f in raw.get("faq") or []],
        image_urls=raw.get("image_urls") or [],
    )
    return ProductSeed(raw.get("product_id") or seeded_product_id(name), spec)


async def seed_catalogue(
    handlers: CatalogHandlers, seed: CatalogueSeed, *, operator_id: str = "seed"
) -> SeedReport:
    report = SeedReport()
    request = Request(actor_id=operator_id, request_id=f"seed-{uuid5(_SEED_NAMESPACE, 'run')}")
    for category in seed.categories:
        existing = await handlers.categories.get(category.slug)
        if existing is None:
            await handlers.add_category(
                request, slug=category.slug, name=category.name, parent_id=category.parent_id
            )
            report.categories_added += 1
            continue
        changed = False
        if existing.name != category.name:
            await handlers.rename_category(request, slug=category.slug, name=category.name)
            changed = True
        if existing.parent_id != category.parent_id:
            await handlers.move_category(request, slug=category.slug, parent_id=category.parent_id)
            changed = True
        report.categories_changed += int(changed)
    for product in seed.products:
        try:
            _, changed = await handlers.publish_product(
                request, product_id=product.product_id, spec=product.spec
            )
        except Rejected as exc:
            report.errors.append(f"{product.spec.name}: {exc.message}")
            continue
        if changed:
            report.products_published += 1
        else:
            report.products_unchanged += 1
    return report
