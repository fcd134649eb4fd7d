"""The shop: home (categories, hot items), search, the product page."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from kami_webfront.pages import PageDep

router = APIRouter()

SORTS = ("relevance", "price_asc", "price_desc", "sales", "rating")
HOT_LIMIT = 8


def _fen(yuan: str | None) -> int | None:
    """A price the buyer typed in yuan ("30", "12.5"), in fen; nothing for blank or nonsense."""
    if not yuan:
        return None
    try:
        value = round(float(yuan) * 100)
    except ValueError:
        return None
    return value if value >= 0 else None


@router.get("/")
async def home(page: PageDep) -> Response:
    categories, hot = await asyncio.gather(
        page.backends.get("catalog", "/categories"),
        page.backends.get("catalog", "/hot-picks", params={"limit": HOT_LIMIT}),
    )
    hot_source = "sales"
    items: list[dict[str, Any]] = [
        pick["product"] | {"units_sold": pick["units_sold"]} for pick in hot
    ]
    if not items:
        # No completed sales in the window yet: the products most sellers offer.
        found = await page.backends.get(
            "catalog", "/search", params={"in_stock": "true", "limit": 50}
        )
        items = sorted(found["items"], key=lambda p: (-p["live_offers"], -p["stock"]))[:HOT_LIMIT]
        hot_source = "offers"
    return page.render("shop/home.html", categories=categories, hot=items, hot_source=hot_source)


@router.get("/search")
async def search(
    page: PageDep,
    q: Annotated[str | None, Query(max_length=100)] = None,
    category: Annotated[str | None, Query(max_length=64)] = None,
    face_min: Annotated[str | None, Query(max_length=12)] = None,
    face_max: Annotated[str | None, Query(max_length=12)] = None,
    price_max: Annotated[str | None, Query(max_length=12)] = None,
    in_stock: bool = False,
    sort: Annotated[str | None, Query(max_length=20)] = None,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Response:
    params = {
        "q": (q or "").strip() or None,
        "category": category or None,
        "face_value_min": _fen(face_min),
        "face_value_max": _fen(face_max),
        "price_max": _fen(price_max),
        "in_stock": "true" if in_stock else None,
        "sort": sort if sort in SORTS else None,
        "cursor": cursor,
        "limit": 20,
    }
    results, categories = await asyncio.gather(
        page.backends.get("catalog", "/search", params=params),
        page.backends.get("catalog", "/categories"),
    )
    query = {
        "q": q or "",
        "category": category or "",
        "face_min": face_min or "",
        "face_max": face_max or "",
        "price_max": price_max or "",
        "in_stock": in_stock,
        "sort": params["sort"] or "",
    }
    return page.render(
        "shop/search.html", results=results, categories=categories, query=query, sorts=SORTS
    )


@router.get("/products/{product_id}")
async def product(page: PageDep, product_id: str) -> Response:
    details, comparison = await asyncio.gather(
        page.backends.get("catalog", f"/products/{product_id}"),
        page.backends.get("catalog", f"/products/{product_id}/offers"),
    )
    lines = comparison["offers"]
    review_lists = await asyncio.gather(
        *(
            page.backends.get(
                "catalog", f"/offers/{line['offer']['offer_id']}/reviews", params={"limit": 5}
            )
            for line in lines[:5]
        )
    )
    reviews = sorted(
        (review for found in review_lists for review in found),
        key=lambda review: review["posted_at"],
        reverse=True,
    )[:10]
    return page.render(
        "shop/product.html",
        product=details,
        offers=lines,
        best_value_offer_id=comparison["best_value_offer_id"],
        reviews=reviews,
    )
