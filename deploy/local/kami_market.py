"""Setting up and using a market over HTTP, as its people would: an operator publishes
a product, an approved seller lists an offer and imports keys, a buyer funds
a wallet. Each step waits for the events it depends on to reach the service
that needs them (the services share nothing but Kafka)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import httpx

from kami_actors import PASSWORD, Person, approved_seller, sign_up
from kami_cli.demo import DEMO_PAYMENT_PASSWORD
from kami_local import Platform

PAYMENT_PASSWORD = DEMO_PAYMENT_PASSWORD  # demo and test wallets only
_serial = itertools.count(1)


async def until(
    attempt: Callable[[], Awaitable[httpx.Response]],
    done: Callable[[httpx.Response], bool],
    *,
    timeout: float = 60.0,
    what: str,
) -> httpx.Response:
    """Repeat a request until its answer shows the state we wait for."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        response = await attempt()
        if done(response):
            return response
        if loop.time() > deadline:
            raise AssertionError(
                f"timed out waiting for {what}: {response.status_code} {response.text}"
            )
        await asyncio.sleep(0.2)


@dataclass
class Offer:
    offer_id: str
    product_id: str
    seller: Person
    unit_price: int
    keys: list[str]


async def publish_product(operator: Person, **spec: Any) -> str:
    slug = f"e2e-{uuid4().hex[:8]}"
    category = await operator.call(
        "catalog", "POST", "/categories", json={"slug": slug, "name": f"测试分类{next(_serial)}"}
    )
    assert category.status_code == 201, category.text
    body = {
        "name": "王者荣耀 点券 100",
        "category_id": slug,
        "kind": "game_points",
        "delivery_mode": "auto",
        "face_value": 1000,
        "validity_days": 180,
    } | spec
    product = await operator.call("catalog", "POST", "/products", json=body)
    assert product.status_code == 201, product.text
    return str(product.json()["product_id"])


async def list_offer_with_keys(
    platform: Platform,
    operator: Person,
    *,
    keys: int = 1,
    unit_price: int = 950,
    max_quantity: int = 5,
    seller: Person | None = None,
    product_id: str | None = None,
    secrets: list[str] | None = None,
) -> Offer:
    """A seller's offer with `keys` fresh keys (or exactly `secrets`), of a new
    product unless `product_id` names one."""
    product_id = product_id or await publish_product(operator)
    seller = seller or await approved_seller(platform, operator, f"卡铺{next(_serial)}")
    listed = await seller.call(
        "catalog",
        "POST",
        "/offers",
        json={
            "product_id": product_id,
            "unit_price": unit_price,
            "delivery_mode": "auto",
            "max_quantity_per_order": max_quantity,
        },
    )
    assert listed.status_code == 201, listed.text
    offer_id = str(listed.json()["offer_id"])
    secrets = secrets or [f"HOK-{uuid4().hex[:16].upper()}" for _ in range(keys)]
    if not secrets:
        return Offer(offer_id, product_id, seller, unit_price, secrets)
    imported = await until(
        lambda: seller.call(
            "inventory",
            "POST",
            f"/offers/{offer_id}/imports",
            json={"import_id": str(uuid4()), "format": "txt", "content": "\n".join(secrets)},
        ),
        lambda r: r.status_code in (200, 201),
        what="inventory to learn the offer",
    )
    assert imported.json()["imported"] == len(secrets), imported.text
    return Offer(offer_id, product_id, seller, unit_price, secrets)


async def funded_buyer(platform: Platform, amount: int, *, phone: str | None = None) -> Person:
    """A new buyer with `amount` in the wallet and the payment password; with
    `phone`, that account (registered the first time), `amount` added."""
    buyer = await signed_in(platform, phone) if phone else await sign_up(platform)
    wallet = await buyer.call("payment", "GET", "/wallet")
    assert wallet.status_code == 200, wallet.text
    expected = wallet.json()["balance"] + amount
    top_up = await buyer.call(
        "payment", "POST", "/wallet/top-ups", json={"amount": amount, "channel": "alipay"}
    )
    assert top_up.status_code == 201, top_up.text
    paid = await buyer.call("payment", "POST", top_up.json()["pay"]["simulator_pay"])
    assert paid.status_code == 200, paid.text
    # The current password is only checked when one is set (a buyer seeded before).
    password = await buyer.call(
        "payment",
        "PUT",
        "/wallet/payment-password",
        json={"new_password": PAYMENT_PASSWORD, "current_password": PAYMENT_PASSWORD},
    )
    assert password.status_code in (200, 204), password.text
    await until(
        lambda: buyer.call("payment", "GET", "/wallet"),
        lambda r: r.status_code == 200 and r.json()["balance"] == expected,
        what="the top-up to reach the wallet",
    )
    return buyer


async def place_order(buyer: Person, offer: Offer, quantity: int = 1) -> str:
    key = str(uuid4())
    placed = await until(
        lambda: buyer.call(
            "ordering",
            "POST",
            "/orders",
            json={"offer_id": offer.offer_id, "quantity": quantity},
            headers={"Idempotency-Key": key},
        ),
        lambda r: r.status_code != 404,
        what="ordering to learn the offer",
    )
    assert placed.status_code == 201, placed.text
    return str(placed.json()["order_id"])


async def order_state(
    buyer: Person, order_id: str, *states: str, timeout: float = 60
) -> dict[str, Any]:
    response = await until(
        lambda: buyer.call("ordering", "GET", f"/orders/{order_id}"),
        lambda r: r.status_code == 200 and r.json()["state"] in states,
        timeout=timeout,
        what=f"order {order_id} to be {'/'.join(states)}",
    )
    return dict(response.json())


def not_yet_payable(response: httpx.Response) -> bool:
    """False while payment has not yet seen the order, or its reservation
    (events take a moment between services); a client retries then, as the
    answer says."""
    waiting = {(409, "order_not_reserved"), (404, "order_not_found")}
    if response.status_code not in (404, 409):
        return True
    return (response.status_code, response.json()["error"]["code"]) not in waiting


async def pay_by_wallet(buyer: Person, order_id: str) -> httpx.Response:
    return await until(
        lambda: buyer.call(
            "payment",
            "POST",
            "/payments",
            json={"order_id": order_id, "channel": "wallet", "payment_password": PAYMENT_PASSWORD},
        ),
        not_yet_payable,
        what="payment to learn the order is payable",
    )


async def operator_of(platform: Platform, phone: str) -> Person:
    """The operator account (registered once per platform, logged in after)."""
    return await signed_in(platform, phone)


async def signed_in(platform: Platform, phone: str) -> Person:
    """The account of `phone`, logged in (registered first if it is new)."""
    async with httpx.AsyncClient(base_url=platform.url("identity"), timeout=30) as identity:
        login = await identity.post("/auth/login", json={"phone": phone, "password": PASSWORD})
    if login.status_code == 200:
        person = Person(platform, phone)
        person._take_tokens(login.json())
        return person
    return await sign_up(platform, phone)


async def funded_deposit(seller: Person, amount: int) -> None:
    """The seller tops up its deposit through a gateway (payment learns of
    the seller's approval by event, so the first try may come too early)."""
    top_up = await until(
        lambda: seller.call(
            "payment", "POST", "/deposits/top-ups", json={"amount": amount, "channel": "alipay"}
        ),
        lambda r: r.status_code != 403,
        what="payment to know the seller",
    )
    assert top_up.status_code == 201, top_up.text
    paid = await seller.call("payment", "POST", top_up.json()["pay"]["simulator_pay"])
    assert paid.status_code == 200, paid.text
    # Paid, not "balance >= amount": a top-up first pays back what the seller owes.
    await until(
        lambda: seller.call("payment", "GET", f"/top-ups/{top_up.json()['top_up_id']}"),
        lambda r: r.status_code == 200 and r.json()["status"] == "paid",
        what="the deposit top-up",
    )
