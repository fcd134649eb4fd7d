"""Commerce over the real platform (docs/commerce.md): a coupon held, given
back on cancellation and refused past its limits; a bulk order priced by its
quantity tier; a flash sale raced by many more orders than it has keys.
The DESIGN §9 audit runs after each test (the `operator` fixture)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx

from kami_actors import Person, sign_up
from kami_local import Platform
from kami_market import (
    Offer,
    funded_buyer,
    list_offer_with_keys,
    order_state,
    pay_by_wallet,
    until,
)


def _code() -> str:
    return f"E2E-{uuid4().hex[:10].upper()}"


async def _order(
    buyer: Person, offer: Offer, quantity: int = 1, coupon: str | None = None
) -> httpx.Response:
    """Place an order (waiting only while ordering does not know the offer yet)."""
    body: dict[str, Any] = {"offer_id": offer.offer_id, "quantity": quantity}
    if coupon is not None:
        body["coupon_code"] = coupon
    key = str(uuid4())
    return await until(
        lambda: buyer.call(
            "ordering", "POST", "/orders", json=body, headers={"Idempotency-Key": key}
        ),
        lambda r: not (r.status_code == 404 and r.json()["error"]["code"] == "offer_not_found"),
        what="ordering to learn the offer",
    )


def _refusal(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, str(response.json()["error"]["code"])


async def _issue(seller: Person, offer: Offer, **terms: Any) -> str:
    now = datetime.now(UTC)
    body = {
        "code": _code(),
        "kind": "fixed",
        "amount_off": 200,
        "offer_ids": [offer.offer_id],
        "starts_at": (now - timedelta(minutes=1)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "per_buyer_limit": 1,
        "total_limit": 2,
    } | terms
    issued = await until(
        lambda: seller.call("ordering", "POST", "/coupons", json=body),
        lambda r: r.status_code != 403,  # ordering learns the seller's offer by event
        what="ordering to know the seller's offer",
    )
    assert issued.status_code == 201, issued.text
    return str(issued.json()["code"])


async def _uses(seller: Person, code: str) -> tuple[int, int]:
    shown = await seller.call("ordering", "GET", f"/coupons/{code}")
    assert shown.status_code == 200, shown.text
    return shown.json()["held"], shown.json()["redeemed"]


async def test_a_coupon_is_held_given_back_and_refused_past_its_limits(
    platform: Platform, operator: Person
) -> None:
    offer = await list_offer_with_keys(platform, operator, keys=6, unit_price=950)
    code = await _issue(offer.seller, offer, min_spend=900, per_buyer_limit=1, total_limit=2)
    first = await funded_buyer(platform, 5000)

    # Applied: the total is price - discount, recorded on the order; the use is held.
    placed = await _order(first, offer, coupon=code.lower())
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["order_id"]
    reserved = await order_state(first, order_id, "RESERVED")
    assert reserved["subtotal"] == 950
    assert reserved["discount"] == 200
    assert reserved["total"] == 750
    assert reserved["coupon_code"] == code
    assert reserved["coupon_status"] == "held"
    assert await _uses(offer.seller, code) == (1, 0)

    # Held while unpaid: the buyer's one use is taken.
    again = await _order(first, offer, coupon=code)
    assert _refusal(again) == (409, "coupon_buyer_limit"), again.text

    # Cancelled: the use comes back, and can be used again.
    cancelled = await first.call("ordering", "POST", f"/orders/{order_id}/cancel")
    assert cancelled.status_code in (200, 202), cancelled.text
    ended = await order_state(first, order_id, "CANCELLED")
    assert ended["coupon_status"] == "released"
    assert await _uses(offer.seller, code) == (0, 0)
    reused = await _order(first, offer, coupon=code)
    assert reused.status_code == 201, reused.text
    reused_id = reused.json()["order_id"]
    await order_state(first, reused_id, "RESERVED")
    paid = await pay_by_wallet(first, reused_id)
    assert paid.status_code in (200, 201), paid.text
    delivered = await order_state(first, reused_id, "DELIVERED")
    assert delivered["total"] == 750
    await until(
        lambda: first.call("ordering", "GET", f"/orders/{reused_id}"),
        lambda r: r.json()["coupon_status"] == "redeemed",
        what="the coupon redeemed by the delivery",
    )
    assert await _uses(offer.seller, code) == (0, 1)
    wallet = await first.call("payment", "GET", "/wallet")
    assert wallet.json()["balance"] == 5000 - 750

    # Per-buyer limit (used for good now), then the total limit (2 uses).
    used = await _order(first, offer, coupon=code)
    assert _refusal(used) == (409, "coupon_buyer_limit"), used.text
    second = await sign_up(platform)
    held = await _order(second, offer, coupon=code)
    assert held.status_code == 201, held.text
    assert await _uses(offer.seller, code) == (1, 1)
    third = await sign_up(platform)
    exhausted = await _order(third, offer, coupon=code)
    assert _refusal(exhausted) == (409, "coupon_exhausted"), exhausted.text
    assert "used up" in exhausted.json()["error"]["message"]
    # A refused order takes no use and places nothing.
    assert await _uses(offer.seller, code) == (1, 1)
    listed = await third.call("ordering", "GET", "/orders")
    assert listed.status_code == 200, listed.text
    assert listed.json()["orders"] == []

    # Minimum spend, and the validity window.
    dear = await _issue(offer.seller, offer, min_spend=2000)
    below = await _order(third, offer, coupon=dear)
    assert _refusal(below) == (422, "coupon_min_spend"), below.text
    later = datetime.now(UTC) + timedelta(hours=1)
    early = await _issue(
        offer.seller,
        offer,
        starts_at=later.isoformat(),
        ends_at=(later + timedelta(hours=1)).isoformat(),
    )
    not_yet = await _order(third, offer, coupon=early)
    assert _refusal(not_yet) == (409, "coupon_not_started"), not_yet.text
    unknown = await _order(third, offer, coupon="NO-SUCH-COUPON")
    assert _refusal(unknown) == (404, "coupon_not_found"), unknown.text

    # The second buyer's unpaid order gives its use back when cancelled.
    held_id = held.json()["order_id"]
    await order_state(second, held_id, "RESERVED")
    gone = await second.call("ordering", "POST", f"/orders/{held_id}/cancel")
    assert gone.status_code in (200, 202), gone.text
    await order_state(second, held_id, "CANCELLED")
    assert await _uses(offer.seller, code) == (0, 1)


async def test_a_bulk_order_is_priced_by_its_quantity_tier(
    platform: Platform, operator: Person
) -> None:
    offer = await list_offer_with_keys(platform, operator, keys=19, unit_price=950, max_quantity=20)
    tiers = await until(
        lambda: offer.seller.call(
            "ordering",
            "PUT",
            f"/offers/{offer.offer_id}/price-tiers",
            json={"tiers": [{"min_quantity": 10, "unit_price": 920}]},
        ),
        lambda r: r.status_code != 404,
        what="ordering to learn the offer",
    )
    assert tiers.status_code == 200, tiers.text
    pricing = await operator.call("ordering", "GET", f"/offers/{offer.offer_id}/pricing")
    assert pricing.json()["tiers"] == [{"min_quantity": 10, "unit_price": 920}]
    buyer = await funded_buyer(platform, 20000)

    nine = await _order(buyer, offer, quantity=9)
    assert nine.status_code == 201, nine.text
    assert nine.json()["unit_price"] == 950
    assert nine.json()["price_tier_min_quantity"] is None
    assert nine.json()["total"] == 9 * 950

    ten = await _order(buyer, offer, quantity=10)
    assert ten.status_code == 201, ten.text
    ten_id = ten.json()["order_id"]
    reserved = await order_state(buyer, ten_id, "RESERVED")
    assert reserved["unit_price"] == 920
    assert reserved["price_tier_min_quantity"] == 10
    assert reserved["subtotal"] == reserved["total"] == 9200
    paid = await pay_by_wallet(buyer, ten_id)
    assert paid.status_code in (200, 201), paid.text
    await order_state(buyer, ten_id, "DELIVERED")
    wallet = await buyer.call("payment", "GET", "/wallet")
    assert wallet.json()["balance"] == 20000 - 9200

    # A tier must cost less than the price below it.
    bad = await offer.seller.call(
        "ordering",
        "PUT",
        f"/offers/{offer.offer_id}/price-tiers",
        json={"tiers": [{"min_quantity": 10, "unit_price": 990}]},
    )
    assert _refusal(bad) == (422, "tiers_invalid"), bad.text
    # Nobody but the offer's seller sets its tiers.
    stranger = await buyer.call(
        "ordering",
        "PUT",
        f"/offers/{offer.offer_id}/price-tiers",
        json={"tiers": [{"min_quantity": 10, "unit_price": 900}]},
    )
    assert stranger.status_code == 403, stranger.text


async def _buyers(platform: Platform, count: int, amount: int) -> list[Person]:
    gate = asyncio.Semaphore(10)

    async def one() -> Person:
        async with gate:
            return await funded_buyer(platform, amount)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def test_a_flash_sale_raced_by_many_buyers_sells_its_keys_once(
    platform: Platform, operator: Person
) -> None:
    keys, buyers_count, orders_per_buyer = 20, 50, 4
    offer = await list_offer_with_keys(platform, operator, keys=keys, unit_price=950)
    now = datetime.now(UTC)
    scheduled = await until(
        lambda: offer.seller.call(
            "ordering",
            "POST",
            f"/offers/{offer.offer_id}/flash-sales",
            json={
                "unit_price": 500,
                "starts_at": (now - timedelta(seconds=5)).isoformat(),
                "ends_at": (now + timedelta(hours=1)).isoformat(),
                "stock_cap": keys,
                "per_buyer_limit": 1,
            },
        ),
        lambda r: r.status_code != 404,
        what="ordering to learn the offer",
    )
    assert scheduled.status_code == 201, scheduled.text
    sale_id = scheduled.json()["flash_sale_id"]
    buyers = await _buyers(platform, buyers_count, 1000)

    port = platform.port_of("ordering")

    async def race(buyer: Person) -> tuple[Person, int, dict[str, Any], float]:
        # A bare HTTP/1.1 request on its own connection: httpx's CPU per request
        # on these two cores would otherwise be part of what is measured.
        body = json.dumps({"offer_id": offer.offer_id, "quantity": 1}).encode()
        head = (
            f"POST /orders HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {buyer.access_token}\r\n"
            f"Idempotency-Key: {uuid4()}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(head + body)
            await writer.drain()
            answer = await reader.read()
        finally:
            writer.close()
        seconds = time.perf_counter() - started
        status_line, _, rest = answer.partition(b"\r\n")
        _, _, payload = rest.partition(b"\r\n\r\n")
        return buyer, int(status_line.split()[1]), json.loads(payload), seconds

    results = await asyncio.gather(
        *(race(buyer) for buyer in buyers for _ in range(orders_per_buyer))
    )
    latencies = sorted(seconds for *_, seconds in results)
    spread = (
        f"latency p50 {latencies[len(latencies) // 2]:.2f}s, "
        f"p90 {latencies[len(latencies) * 9 // 10]:.2f}s, max {latencies[-1]:.2f}s"
    )
    won = [(buyer, body) for buyer, status, body, _ in results if status == 201]
    lost = [(status, body, seconds) for _, status, body, seconds in results if status != 201]
    assert len(won) == keys, [body for _, status, body, _ in results if status != 409][:5]
    assert len({buyer.user_id for buyer, _ in won}) == keys, "a buyer won twice"
    assert len(lost) == buyers_count * orders_per_buyer - keys
    for status, body, _ in lost:
        assert status == 409, body
        assert body["error"]["code"] in ("flash_sale_sold_out", "flash_sale_buyer_limit"), body
        assert body["error"]["message"]
    for _, body in won:
        assert body["unit_price"] == 500
        assert body["flash_sale_id"] == sale_id

    async def pay(buyer: Person, order_id: str) -> None:
        await order_state(buyer, order_id, "RESERVED")
        paid = await pay_by_wallet(buyer, order_id)
        assert paid.status_code in (200, 201), paid.text
        await order_state(buyer, order_id, "DELIVERED", timeout=120)

    await asyncio.gather(*(pay(buyer, body["order_id"]) for buyer, body in won))
    stock = await offer.seller.call("inventory", "GET", f"/offers/{offer.offer_id}/stock")
    assert stock.json()["available"] == 0
    assert stock.json()["sold"] == keys
    # No buyer may place another order at the sale's price.
    late = await _order(buyers[0], offer)
    assert late.status_code == 409, late.text
    # Every losing order got its refusal, none waited into a timeout. How fast
    # is a speed figure of this shared machine, reported rather than asserted
    # (docs/commerce.md gives the measured spread against the 1 s goal).
    print(f"flash sale: {len(lost)} refusals, {spread}")
    assert latencies[-1] < 30, spread
