"""Buying and after: place an order, the order page (reservation countdown,
payment, the state pushed live over server-sent events, the keys revealed on
an explicit POST, export, arrival, the fast refund), my orders."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import Response, StreamingResponse

from kami_webfront.clients import BackendError
from kami_webfront.pages import TEMPLATES, Page, PageDep

router = APIRouter()

TERMINAL = frozenset({"COMPLETED", "CANCELLED", "REFUNDED"})
HAPPY_PATH = ("PLACED", "RESERVED", "PAID", "DELIVERED", "COMPLETED")
# Payment learns of a reservation by event, a moment after ordering shows it.
PAYMENT_CATCH_UP_SECONDS = 8.0
PAYMENT_NOT_YET = frozenset({"order_not_found", "order_not_reserved"})
GATEWAYS = ("alipay", "wechat_pay")
FAST_REFUND_REASONS = ("key_invalid", "key_already_used")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# A stream ends itself before the access token would run out; the browser
# reconnects, and that request refreshes the session's tokens.
STREAM_TOKEN_MARGIN_SECONDS = 45


def _next_state(state: str) -> str | None:
    if state in TERMINAL:
        return None
    if state == "REFUNDING":
        return "REFUNDED"
    return HAPPY_PATH[HAPPY_PATH.index(state) + 1]


async def _order_context(
    page: Page, order_id: str, order: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Everything the live part of the order page shows, for its state."""
    token = page.require_login()
    backends = page.backends
    if order is None:
        order = await backends.get("ordering", f"/orders/{order_id}", token=token)
    state = order["state"]
    timeline, product = await asyncio.gather(
        backends.get("ordering", f"/orders/{order_id}/timeline", token=token),
        backends.get("catalog", f"/products/{order['product_id']}"),
    )
    context: dict[str, Any] = {
        "order": order,
        "timeline": timeline["events"],
        "product": product,
        "wallet": None,
        "keys": [],
        "guarantee": None,
        "gateways": GATEWAYS,
        "fast_refund_reasons": FAST_REFUND_REASONS,
    }
    if state == "RESERVED":
        context["wallet"] = await backends.get("payment", "/wallet", token=token)
    if order["delivered_key_ids"] or state in ("DELIVERED", "COMPLETED", "REFUNDING", "REFUNDED"):
        vault = await backends.get("delivery", "/vault", token=token, params={"order_id": order_id})
        context["keys"] = vault["keys"]
    if state == "DELIVERED":
        context["guarantee"] = await backends.get(
            "aftersales", f"/orders/{order_id}/guarantee", token=token
        )
    return context


@router.post("/orders")
async def place_order(
    page: PageDep,
    offer_id: Annotated[str, Form(min_length=1, max_length=64)],
    quantity: Annotated[int, Form(ge=1, le=1000)],
    request_id: Annotated[str, Form(min_length=8, max_length=64)],
) -> Response:
    """`request_id` is made when the product page is served: sending the same
    form twice places one order (ordering's Idempotency-Key)."""
    token = page.require_login()
    order = await page.backends.post(
        "ordering",
        "/orders",
        token=token,
        json={"offer_id": offer_id, "quantity": quantity},
        headers={"Idempotency-Key": f"web-{page.session.user_id}-{request_id}"},
    )
    return page.redirect(f"/orders/{order['order_id']}")


@router.get("/orders")
async def my_orders(page: PageDep, cursor: str | None = None) -> Response:
    token = page.require_login()
    found = await page.backends.get("ordering", "/orders", token=token, params={"cursor": cursor})
    return page.render("orders/list.html", orders=found["orders"], next_cursor=found["next_cursor"])


@router.get("/orders/{order_id}")
async def order_page(page: PageDep, order_id: str) -> Response:
    context = await _order_context(page, order_id)
    return page.render("orders/detail.html", **context)


@router.get("/orders/{order_id}/live")
async def order_live(page: PageDep, order_id: str) -> Response:
    """The live part alone (htmx swaps it in after an action)."""
    context = await _order_context(page, order_id)
    return page.render("orders/_live.html", **context)


@router.get("/orders/{order_id}/events")
async def order_events(page: PageDep, order_id: str, since: int | None = None) -> Response:
    """Server-sent events: `order` with the live part rendered whenever the
    order changes (ordering's long poll, one request at a time), `done` once
    it can change no more. `since`: the version the page shows, so a change
    between rendering it and opening the stream is sent at once."""
    token = page.require_login()
    last_seen = page.request.headers.get("last-event-id", "")
    if last_seen.isdigit():
        since = int(last_seen)
    first = await page.backends.get("ordering", f"/orders/{order_id}", token=token)
    wait = page.settings.web_order_wait_seconds
    expires_at = page.session.access_expires_at or (time.time() + 300)

    async def fragment(order: dict[str, Any]) -> str:
        context = page.context(await _order_context(page, order_id, order))
        html = TEMPLATES.get_template("orders/_live.html").render(context)
        lines = "".join(f"data: {line}\n" for line in html.splitlines())
        # The id is the version: a reconnecting browser sends it back (Last-Event-ID).
        return f"id: {order['version']}\nevent: order\n{lines}\n"

    async def stream() -> AsyncIterator[str]:
        order = first
        yield "retry: 2000\n\n"
        if since is not None and since != order["version"]:
            yield await fragment(order)
        while True:
            wanted = _next_state(order["state"])
            if wanted is None:
                yield "event: done\ndata: {}\n\n".format(json.dumps({"state": order["state"]}))
                return
            left = expires_at - time.time() - STREAM_TOKEN_MARGIN_SECONDS
            if left <= 1:
                return  # the browser reconnects with a refreshed session
            try:
                latest = await page.backends.get(
                    "ordering",
                    f"/orders/{order_id}",
                    token=token,
                    params={"wait_for": wanted, "timeout": min(wait, left)},
                    timeout=min(wait, left) + 10,
                )
            except BackendError:
                return  # the browser reconnects and asks again
            if latest["version"] != order["version"]:
                order = latest
                yield await fragment(order)
            else:
                yield ": still waiting\n\n"  # keeps proxies from closing an idle stream

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/orders/{order_id}/pay")
async def pay(
    page: PageDep,
    order_id: str,
    channel: Annotated[str, Form(pattern=r"^(wallet|alipay|wechat_pay)$")],
    payment_password: Annotated[str | None, Form(max_length=64)] = None,
) -> Response:
    token = page.require_login()
    body: dict[str, Any] = {"order_id": order_id, "channel": channel}
    if channel == "wallet":
        body["payment_password"] = payment_password or ""
    deadline = time.monotonic() + PAYMENT_CATCH_UP_SECONDS
    while True:
        try:
            payment = await page.backends.post("payment", "/payments", token=token, json=body)
            break
        except BackendError as exc:
            if exc.code in PAYMENT_NOT_YET and time.monotonic() < deadline:
                await asyncio.sleep(0.3)
                continue
            if exc.status >= 500:
                raise
            context = await _order_context(page, order_id)
            return page.render(
                "orders/_live.html"
                if page.request.headers.get("HX-Request")
                else "orders/detail.html",
                status_code=200 if page.request.headers.get("HX-Request") else 400,
                payment_error=exc.message,
                **context,
            )
    if payment.get("pay"):
        return page.render("orders/gateway.html", order_id=order_id, payment=payment)
    return page.redirect(f"/orders/{order_id}")


@router.post("/orders/{order_id}/gateway")
async def pay_in_gateway(
    page: PageDep,
    order_id: str,
    channel: Annotated[str, Form(pattern=r"^(alipay|wechat_pay)$")],
    trade_no: Annotated[str, Form(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")],
) -> Response:
    """The local platform's simulated gateway: pay the trade as the buyer's
    channel app would (payment's `/simulator/...`, mounted only locally)."""
    page.require_login()
    await page.backends.post("payment", f"/simulator/{channel}/pay/{trade_no}")
    return page.redirect(f"/orders/{order_id}")


@router.post("/orders/{order_id}/keys/reveal")
async def reveal_keys(page: PageDep, order_id: str) -> Response:
    token = page.require_login()
    vault = await page.backends.get(
        "delivery", "/vault", token=token, params={"order_id": order_id}
    )
    secrets = [
        await page.backends.post("delivery", f"/vault/{key['key_id']}/reveal", token=token)
        for key in vault["keys"]
    ]
    return page.render("orders/_keys.html", no_store=True, order_id=order_id, secrets=secrets)


@router.post("/orders/{order_id}/keys/export")
async def export_keys(
    page: PageDep,
    order_id: str,
    export_format: Annotated[str, Form(alias="format", pattern=r"^(csv|txt)$")] = "csv",
) -> Response:
    token = page.require_login()
    exported = await page.backends.call(
        "delivery",
        "GET",
        "/vault/export",
        token=token,
        params={"format": export_format, "order_id": order_id},
    )
    return Response(
        exported.content,
        media_type=exported.headers.get("content-type", "text/plain; charset=utf-8"),
        headers={
            **NO_STORE,
            "Content-Disposition": exported.headers.get(
                "content-disposition",
                f'attachment; filename="kami-keys-{order_id}.{export_format}"',
            ),
        },
    )


@router.post("/orders/{order_id}/arrival")
async def confirm_arrival(page: PageDep, order_id: str) -> Response:
    token = page.require_login()
    await page.backends.post("delivery", f"/orders/{order_id}/arrival", token=token)
    return page.redirect(f"/orders/{order_id}")


@router.post("/orders/{order_id}/cancel")
async def cancel(page: PageDep, order_id: str) -> Response:
    token = page.require_login()
    await page.backends.post("ordering", f"/orders/{order_id}/cancel", token=token)
    return page.redirect(f"/orders/{order_id}")


@router.post("/orders/{order_id}/fast-refund")
async def fast_refund(
    page: PageDep,
    order_id: str,
    reason: Annotated[str, Form(pattern=r"^(key_invalid|key_already_used)$")],
) -> Response:
    """极速退款: a claim inside the guarantee window, decided at once by
    after-sales' automatic rules (the issuer checks the keys) as a refund."""
    token = page.require_login()
    ticket = await page.backends.post(
        "aftersales",
        "/tickets",
        token=token,
        json={
            "order_id": order_id,
            "category": reason,
            "description": page.t(f"refund.reason.{reason}"),
            "preferred_remedy": "refund",
        },
    )
    return page.redirect(f"/tickets/{ticket['ticket_id']}")
