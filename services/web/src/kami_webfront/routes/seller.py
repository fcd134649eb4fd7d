"""The seller center: offers (list, price, pause and relist), key imports
with progress, stock, the deposit and its movements, settlements, tickets
about the seller's orders and manual deliveries waiting for keys.

Only sellers get in (`roles.require_role`); every call goes to the services
with the seller's own token, so they check ownership themselves.

Key imports: inventory takes one file per import, synchronously, and answers
with a per-line report. The page's script (static/seller-import.js) reads the
file in the browser and posts it in chunks of whole lines here; each chunk is
one inventory import whose id is derived from the upload, the chunk's place
and its content, so a chunk sent twice (a retry) is imported once. Inventory
numbers each chunk's lines from 1: they are mapped back to the file's.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from kami_webfront.clients import BackendError
from kami_webfront.pages import Page, PageDep
from kami_webfront.roles import SELLER, has_role, profile, require_role

router = APIRouter(prefix="/seller")

# Well under inventory's 2 MiB body and its 10 000 keys per import.
CHUNK_LINES = 500
MAX_CHUNK_CHARS = 256 * 1024
ACCOUNTS = ("deposit", "balance", "receivable")


@router.get("")
async def home(page: PageDep) -> Response:
    me = await require_role(page, {SELLER})
    token = page.token
    offers = await page.backends.get("catalog", "/sellers/me/offers", token=token)
    stock = await page.backends.get("inventory", "/offers", token=token)
    deposit = await page.backends.get("payment", "/deposits/me", token=token)
    deliveries = await page.backends.get("delivery", "/seller/deliveries", token=token)
    tickets = await page.backends.get(
        "aftersales", "/seller/tickets", token=token, params={"state": "escalated"}
    )
    stock_of = {line["offer_id"]: line["stock"] for line in stock}
    return page.render(
        "seller/home.html",
        me=me,
        offers=offers,
        stock_of=stock_of,
        deposit=deposit,
        waiting_deliveries=len(deliveries["deliveries"]),
        open_tickets=len(tickets["tickets"]),
    )


@router.get("/apply")
async def application_form(page: PageDep) -> Response:
    """For any signed-in user who is not a seller yet: apply, or see how the
    application stands."""
    me = await profile(page)
    if has_role(me, SELLER):
        return page.redirect("/seller")
    tree = await page.backends.get("catalog", "/categories")
    return page.render(
        "seller/apply.html",
        me=me,
        application=me.get("seller_application"),
        categories=[node for node in tree if node.get("parent_id") is None],
    )


@router.post("/apply")
async def apply(
    page: PageDep,
    shop_name: Annotated[str, Form(min_length=1, max_length=100)],
    category: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    await profile(page)
    await page.backends.post(
        "identity",
        "/me/seller-application",
        token=page.token,
        json={"shop_name": shop_name, "category": category or None},
    )
    return page.redirect("/seller/apply")


@router.get("/offers/new")
async def new_offer_form(page: PageDep, q: str = "") -> Response:
    await require_role(page, {SELLER})
    found = await page.backends.get("catalog", "/search", params={"q": q, "limit": 20})
    return page.render("seller/offer_new.html", products=found["items"], q=q)


@router.post("/offers")
async def create_offer(
    page: PageDep,
    product_id: Annotated[str, Form(min_length=1, max_length=64)],
    unit_price_yuan: Annotated[str, Form(pattern=r"^\d{1,7}(\.\d{1,2})?$")],
    delivery_mode: Annotated[str, Form(pattern=r"^(auto|manual)$")],
    max_quantity_per_order: Annotated[int, Form(ge=1, le=1000)],
    manual_delivery_sla_minutes: Annotated[int | None, Form(ge=1, le=10080)] = None,
) -> Response:
    await require_role(page, {SELLER})
    body: dict[str, Any] = {
        "product_id": product_id,
        "unit_price": fen(unit_price_yuan),
        "delivery_mode": delivery_mode,
        "max_quantity_per_order": max_quantity_per_order,
    }
    if delivery_mode == "manual":
        body["manual_delivery_sla_minutes"] = manual_delivery_sla_minutes or 30
    offer = await page.backends.post("catalog", "/offers", token=page.token, json=body)
    return page.redirect(f"/seller/offers/{offer['offer_id']}")


@router.get("/offers/{offer_id}")
async def offer_page(page: PageDep, offer_id: str) -> Response:
    await require_role(page, {SELLER})
    offer = await _my_offer(page, offer_id)
    stock = await page.backends.get("inventory", f"/offers/{offer_id}/stock", token=page.token)
    return page.render(
        "seller/offer.html",
        offer=offer,
        stock=stock,
        chunk_lines=CHUNK_LINES,
        max_chunk_chars=MAX_CHUNK_CHARS,
    )


@router.get("/offers/{offer_id}/stock")
async def offer_stock(page: PageDep, offer_id: str) -> Response:
    """The stock fragment the import page refreshes when an import ends."""
    await require_role(page, {SELLER})
    stock = await page.backends.get("inventory", f"/offers/{offer_id}/stock", token=page.token)
    return page.render("seller/_stock.html", stock=stock)


@router.post("/offers/{offer_id}/price")
async def change_price(
    page: PageDep,
    offer_id: str,
    unit_price_yuan: Annotated[str, Form(pattern=r"^\d{1,7}(\.\d{1,2})?$")],
) -> Response:
    await require_role(page, {SELLER})
    await page.backends.put(
        "catalog",
        f"/offers/{offer_id}/price",
        token=page.token,
        json={"unit_price": fen(unit_price_yuan)},
    )
    return page.redirect(f"/seller/offers/{offer_id}")


@router.post("/offers/{offer_id}/pause")
async def pause_offer(page: PageDep, offer_id: str) -> Response:
    await require_role(page, {SELLER})
    await page.backends.post("catalog", f"/offers/{offer_id}/withdraw", token=page.token)
    return page.redirect(f"/seller/offers/{offer_id}")


@router.post("/offers/{offer_id}/resume")
async def resume_offer(page: PageDep, offer_id: str) -> Response:
    """Relisting: the same product with the terms the offer had."""
    await require_role(page, {SELLER})
    offer = await _my_offer(page, offer_id)
    terms = {
        name: offer[name]
        for name in (
            "unit_price",
            "delivery_mode",
            "manual_delivery_sla_minutes",
            "guarantee_window_minutes",
            "min_quantity_per_order",
            "max_quantity_per_order",
        )
    }
    await page.backends.post(
        "catalog", "/offers", token=page.token, json={"product_id": offer["product_id"], **terms}
    )
    return page.redirect(f"/seller/offers/{offer_id}")


class ImportChunk(BaseModel):
    upload_id: str = Field(pattern=r"^[A-Za-z0-9-]{8,64}$")
    format: str = Field(pattern=r"^(csv|txt)$")
    first_line: int = Field(ge=1, le=10_000_000)
    content: str = Field(min_length=1, max_length=MAX_CHUNK_CHARS)


@router.post("/offers/{offer_id}/imports")
async def import_chunk(page: PageDep, offer_id: str, chunk: ImportChunk) -> Response:
    """One chunk of the file: its report, line numbers as in the file."""
    await require_role(page, {SELLER})
    response = await page.backends.call(
        "inventory",
        "POST",
        f"/offers/{offer_id}/imports",
        token=page.token,
        json={
            "import_id": chunk_import_id(offer_id, chunk),
            "format": chunk.format,
            "content": chunk.content,
        },
    )
    report = response.json()
    return page.finish(
        JSONResponse(
            {
                "repeated": response.status_code == 200,
                "imported": report["imported"],
                "duplicates": report["duplicates"],
                "rejected": report["rejected"],
                "rejected_lines": [
                    {
                        "line": chunk.first_line + int(line["line"]) - 1,
                        "reason": line["reason"],
                        "reason_text": page.t(f"import.reason.{line['reason']}"),
                    }
                    for line in report["rejected_lines"]
                ],
            }
        )
    )


def chunk_import_id(offer_id: str, chunk: ImportChunk) -> str:
    """The same chunk of the same upload is the same import (a retry repeats
    nothing); another upload of the same file is a new one (its keys then
    come back as duplicates, as they are)."""
    digest = hashlib.sha256(
        f"{offer_id}\0{chunk.upload_id}\0{chunk.first_line}\0{chunk.format}\0".encode()
        + chunk.content.encode()
    ).hexdigest()
    return f"web-{digest[:40]}"


@router.get("/deposit")
async def deposit(page: PageDep) -> Response:
    await require_role(page, {SELLER})
    found = await page.backends.get("payment", "/deposits/me", token=page.token)
    movements = await page.backends.get(
        "payment", "/sellers/me/statement", token=page.token, params={"account": "deposit"}
    )
    return page.render("seller/deposit.html", deposit=found, lines=movements["lines"])


@router.get("/settlements")
async def settlements(page: PageDep, account: str = "balance") -> Response:
    await require_role(page, {SELLER})
    chosen = account if account in ACCOUNTS else "balance"
    statement = await page.backends.get(
        "payment", "/sellers/me/statement", token=page.token, params={"account": chosen}
    )
    return page.render(
        "seller/settlements.html", lines=statement["lines"], account=chosen, accounts=ACCOUNTS
    )


@router.get("/tickets")
async def tickets(page: PageDep, state: str = "") -> Response:
    await require_role(page, {SELLER})
    chosen = state if state in ("escalated", "resolved", "replacing") else None
    found = await page.backends.get(
        "aftersales", "/seller/tickets", token=page.token, params={"state": chosen}
    )
    return page.render("seller/tickets.html", tickets=found["tickets"], state=chosen)


@router.get("/deliveries")
async def deliveries(page: PageDep) -> Response:
    await require_role(page, {SELLER})
    found = await page.backends.get("delivery", "/seller/deliveries", token=page.token)
    return page.render("seller/deliveries.html", deliveries=found["deliveries"])


@router.post("/deliveries/{delivery_id}/keys")
async def deliver_keys(
    page: PageDep,
    delivery_id: str,
    keys: Annotated[str, Form(min_length=1, max_length=200_000)],
) -> Response:
    await require_role(page, {SELLER})
    lines = [line.strip() for line in keys.splitlines() if line.strip()]
    await page.backends.post(
        "delivery", f"/seller/deliveries/{delivery_id}/keys", token=page.token, json={"keys": lines}
    )
    return page.redirect("/seller/deliveries")


async def _my_offer(page: Page, offer_id: str) -> dict[str, Any]:
    offers = await page.backends.get("catalog", "/sellers/me/offers", token=page.token)
    for offer in offers:
        if offer["offer_id"] == offer_id:
            found: dict[str, Any] = offer
            return found
    raise BackendError("catalog", 404, "offer_not_found", page.t("seller.offer_not_found"))


def fen(yuan: str) -> int:
    """`12.5` yuan as 1250 fen, exactly (no float)."""
    whole, _, cents = yuan.partition(".")
    return int(whole) * 100 + int((cents + "00")[:2])
