"""After-sales: open a ticket on an order, follow it, write to support."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import Response

from kami_webfront.pages import PageDep

router = APIRouter()

CATEGORIES = (
    "key_invalid",
    "key_already_used",
    "key_expired",
    "wrong_product",
    "wrong_amount",
    "not_received",
    "other",
)
REMEDIES = ("refund", "replacement")


@router.get("/tickets")
async def my_tickets(page: PageDep) -> Response:
    token = page.require_login()
    found = await page.backends.get("aftersales", "/tickets", token=token)
    return page.render("tickets/list.html", tickets=found["tickets"])


@router.get("/orders/{order_id}/ticket")
async def ticket_form(page: PageDep, order_id: str) -> Response:
    token = page.require_login()
    order = await page.backends.get("ordering", f"/orders/{order_id}", token=token)
    return page.render("tickets/new.html", order=order, categories=CATEGORIES, remedies=REMEDIES)


@router.post("/tickets")
async def open_ticket(
    page: PageDep,
    order_id: Annotated[str, Form(min_length=1, max_length=64)],
    category: Annotated[str, Form(max_length=40)],
    description: Annotated[str, Form(min_length=1, max_length=2000)],
    preferred_remedy: Annotated[str, Form(pattern=r"^(refund|replacement)$")] = "refund",
) -> Response:
    token = page.require_login()
    ticket = await page.backends.post(
        "aftersales",
        "/tickets",
        token=token,
        json={
            "order_id": order_id,
            "category": category,
            "description": description,
            "preferred_remedy": preferred_remedy,
        },
    )
    return page.redirect(f"/tickets/{ticket['ticket_id']}")


@router.get("/tickets/{ticket_id}")
async def ticket_page(page: PageDep, ticket_id: str) -> Response:
    token = page.require_login()
    ticket = await page.backends.get("aftersales", f"/tickets/{ticket_id}", token=token)
    return page.render("tickets/detail.html", ticket=ticket)


@router.post("/tickets/{ticket_id}/messages")
async def write_to_support(
    page: PageDep, ticket_id: str, text: Annotated[str, Form(min_length=1, max_length=2000)]
) -> Response:
    token = page.require_login()
    await page.backends.post(
        "aftersales", f"/tickets/{ticket_id}/messages", token=token, json={"text": text}
    )
    return page.redirect(f"/tickets/{ticket_id}")
