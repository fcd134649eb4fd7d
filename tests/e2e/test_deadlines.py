"""The saga's deadlines end to end (DESIGN §3): a payment deadline that
passes, an automatic delivery stuck while inventory is down, a manual
delivery that misses its SLA. They run on a platform of their own whose
clocks are hurried (a 30 s payment window, a 15 s delivery limit), each test
followed by the DESIGN §9 audit of that platform."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from uuid import uuid4

import pytest

from kami_actors import Person, approved_seller
from kami_local import Platform
from kami_market import (
    funded_buyer,
    list_offer_with_keys,
    operator_of,
    order_state,
    pay_by_wallet,
    place_order,
    publish_product,
    until,
)
from tests.conftest import Servers
from tests.e2e.conftest import E2E_ENV, OPERATOR_PHONE, running_platform
from tests.e2e.invariants import assert_invariants, read_events

PAYMENT_WINDOW = timedelta(seconds=30)
AUTO_DELIVERY_LIMIT = timedelta(seconds=15)
HURRIED = E2E_ENV | {
    "KAMI_ORDERING_PAYMENT_WINDOW_MINUTES": str(PAYMENT_WINDOW.total_seconds() / 60),
    "KAMI_ORDERING_AUTO_DELIVERY_LIMIT_MINUTES": str(AUTO_DELIVERY_LIMIT.total_seconds() / 60),
    # Ordering does not wait for delivery to give up first.
    "KAMI_ORDERING_DELIVERY_GRACE_MINUTES": "0",
    "KAMI_ORDERING_DEADLINE_POLL_SECONDS": "0.5",
    "KAMI_INVENTORY_RESERVATION_GRACE_SECONDS": "0",
    "KAMI_DELIVERY_MANUAL_POLL_SECONDS": "1",
}


@pytest.fixture(scope="module")
def hurried(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(servers, tmp_path_factory.mktemp("hurried"), HURRIED) as instance:
        yield instance


@pytest.fixture
async def operator(hurried: Platform) -> AsyncIterator[Person]:
    person = await operator_of(hurried, OPERATOR_PHONE)
    yield person
    await assert_invariants(hurried, person)


async def test_an_unpaid_order_is_cancelled_at_its_deadline_and_a_late_payment_refunded(
    hurried: Platform, operator: Person
) -> None:
    offer = await list_offer_with_keys(hurried, operator, keys=1, unit_price=700)
    buyer = await funded_buyer(hurried, 1000)
    order_id = await place_order(buyer, offer)
    await order_state(buyer, order_id, "RESERVED")
    # The buyer pays in the channel's app in time, but the notification is lost...
    intent = await until(
        lambda: buyer.call(
            "payment", "POST", "/payments", json={"order_id": order_id, "channel": "wechat_pay"}
        ),
        lambda r: r.status_code in (200, 201),
        what="the payment intent",
    )
    pay = intent.json()["pay"]
    lost = await buyer.call("payment", "POST", pay["simulator_pay"], params={"deliver": "false"})
    assert lost.status_code == 200, lost.text
    stock = await offer.seller.call("inventory", "GET", f"/offers/{offer.offer_id}/stock")
    assert (stock.json()["available"], stock.json()["reserved"]) == (0, 1)

    # ...so the deadline passes: the order is cancelled, the key is back on sale.
    cancelled = await order_state(
        buyer,
        order_id,
        "CANCELLED",
        "REFUNDING",
        "REFUNDED",
        timeout=PAYMENT_WINDOW.total_seconds() + 60,
    )
    assert cancelled["cancel_reason"] == "payment_timeout"
    await until(
        lambda: offer.seller.call("inventory", "GET", f"/offers/{offer.offer_id}/stock"),
        lambda r: (r.json()["available"], r.json()["reserved"]) == (1, 0),
        what="the released key to be on sale again",
    )
    # Paying the cancelled order again is refused — or, once payment has found
    # the channel's money on closing the trade, answered with that payment:
    # never a second capture.
    again = await pay_by_wallet(buyer, order_id)
    assert again.status_code == 409 or (
        again.status_code == 200 and again.json()["channel"] == "wechat_pay"
    ), again.text

    # The channel's notification arrives at last. Payment closes the trade when
    # the order is cancelled and captures the money the channel already took;
    # the notification adds nothing to it. Either way the money is sent back once.
    late = await buyer.call(
        "payment", "POST", f"/simulator/wechat_pay/notify/{pay['gateway_trade_no']}"
    )
    assert late.status_code == 200, late.text
    refunded = await order_state(buyer, order_id, "REFUNDED")
    assert [(r["reason"], r["source"], r["amount"]) for r in refunded["refunds"]] == [
        ("late_payment", "escrow", 700)
    ]
    # The buyer paid through the channel: the refund goes back there, not to the wallet.
    assert (await buyer.call("payment", "GET", "/wallet")).json()["balance"] == 1000


async def test_a_delivery_stuck_past_its_limit_is_refunded_and_its_key_never_delivered(
    hurried: Platform, operator: Person
) -> None:
    offer = await list_offer_with_keys(hurried, operator, keys=1, unit_price=880)
    buyer = await funded_buyer(hurried, 2000)
    order_id = await place_order(buyer, offer)
    await order_state(buyer, order_id, "RESERVED")

    # Inventory goes down: delivery cannot take the paid order's key out of the pool.
    hurried.stop("inventory")
    try:
        paid = await pay_by_wallet(buyer, order_id)
        assert paid.status_code in (200, 201), paid.text
        await order_state(buyer, order_id, "PAID")
        # Ordering stops waiting at its delivery limit and refunds the buyer.
        refunded = await order_state(
            buyer, order_id, "REFUNDED", timeout=AUTO_DELIVERY_LIMIT.total_seconds() + 90
        )
    finally:
        hurried.start("inventory")
        hurried.wait_ready("inventory")
    assert [(r["reason"], r["source"], r["amount"]) for r in refunded["refunds"]] == [
        ("delivery_failed", "escrow", 880)
    ]
    assert (await buyer.call("payment", "GET", "/wallet")).json()["balance"] == 2000

    # Back up, inventory voids the key for good; delivery, retrying, finds the
    # order refunded and delivers nothing.
    stock = await until(
        lambda: offer.seller.call("inventory", "GET", f"/offers/{offer.offer_id}/stock"),
        lambda r: r.status_code == 200 and r.json()["voided"] == 1,
        what="the refunded order's key to be voided",
    )
    assert (stock.json()["available"], stock.json()["reserved"]) == (0, 0)
    await asyncio.sleep(3)  # time for delivery's retry to run into the refund
    audit = await read_events(hurried)
    assert [e for e in audit.of("KeyDelivered") if e["payload"]["order_id"] == order_id] == []
    vault = await buyer.call("delivery", "GET", "/vault", params={"order_id": order_id})
    assert vault.json()["keys"] == []


async def test_a_manual_delivery_past_its_sla_is_failed_and_refunded(
    hurried: Platform, operator: Person
) -> None:
    product_id = await publish_product(
        operator, name="腾讯视频 VIP 月卡 代充", kind="membership", delivery_mode="manual"
    )
    seller = await approved_seller(hurried, operator, f"代充{uuid4().hex[:4]}")
    listed = await seller.call(
        "catalog",
        "POST",
        "/offers",
        json={
            "product_id": product_id,
            "unit_price": 1500,
            "delivery_mode": "manual",
            "manual_delivery_sla_minutes": 1,
            "max_quantity_per_order": 1,
        },
    )
    assert listed.status_code == 201, listed.text
    offer_id = str(listed.json()["offer_id"])
    buyer = await funded_buyer(hurried, 1500)
    placed = await until(
        lambda: buyer.call(
            "ordering",
            "POST",
            "/orders",
            json={"offer_id": offer_id, "quantity": 1},
            headers={"Idempotency-Key": str(uuid4())},
        ),
        lambda r: r.status_code != 404,
        what="ordering to learn the offer",
    )
    assert placed.status_code == 201, placed.text
    order_id = str(placed.json()["order_id"])
    await order_state(buyer, order_id, "RESERVED")
    assert (await pay_by_wallet(buyer, order_id)).status_code in (200, 201)
    pending = await until(
        lambda: seller.call("delivery", "GET", "/seller/deliveries"),
        lambda r: any(d["order_id"] == order_id for d in r.json()["deliveries"]),
        what="the manual delivery to reach the seller",
    )
    [task] = [d for d in pending.json()["deliveries"] if d["order_id"] == order_id]

    # The seller never delivers: a minute later the SLA fails it and the buyer is refunded.
    refunded = await order_state(buyer, order_id, "REFUNDED", timeout=150)
    assert [(r["reason"], r["source"], r["amount"]) for r in refunded["refunds"]] == [
        ("delivery_failed", "escrow", 1500)
    ]
    assert (await buyer.call("payment", "GET", "/wallet")).json()["balance"] == 1500
    late = await seller.call(
        "delivery",
        "POST",
        f"/seller/deliveries/{task['delivery_id']}/keys",
        json={"keys": ["TOO-LATE-0001"]},
    )
    assert late.status_code in (404, 409), late.text
    vault = await buyer.call("delivery", "GET", "/vault", params={"order_id": order_id})
    assert vault.json()["keys"] == []
