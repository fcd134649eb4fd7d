"""The ordering service on the real Kafka and FerretDB: a buyer orders over
HTTP; inventory, payment and delivery answer with envelopes on Kafka; the
saga's events come back on ordering's topic; deadlines fire from the poller
with the injected clock, also across a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest

from kami_events.catalogue.aftersales import CompensationApproved, IssueCategory, TicketOpened
from kami_events.catalogue.common import DeliveryMode, RefundReason, RefundSource
from kami_events.catalogue.delivery import (
    ArrivalConfirmed,
    DeliveryChannel,
    DeliveryFailed,
    DeliveryFailure,
    KeyDelivered,
)
from kami_events.catalogue.identity import Role
from kami_events.catalogue.inventory import (
    KeyReservationFailed,
    KeyReserved,
    KeysSold,
    ReservationFailure,
)
from kami_events.catalogue.ordering import (
    CancelReason,
    CompletedBy,
    OrderCancelled,
    OrderCompleted,
    OrderRefundRequested,
)
from kami_events.catalogue.payment import (
    FundsSettled,
    PaymentChannel,
    PaymentConfirmed,
    PaymentFailed,
    PaymentFailure,
    PaymentRefunded,
    PaymentReversed,
    ReversalReason,
)
from tests.conftest import Servers
from tests.integration.conftest import eventually
from tests.integration.ordering.harness import MINUTES, Ordering, OrderingWorld, ordering_world


@pytest.fixture
async def world(
    servers: Servers,
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[OrderingWorld]:
    async with ordering_world(
        bootstrap=kafka_bootstrap,
        mongodb_uri=servers.mongodb_uri,
        unique=unique,
        monkeypatch=monkeypatch,
    ) as world:
        yield world


@pytest.fixture
async def ordering(world: OrderingWorld) -> AsyncIterator[Ordering]:
    running = await world.start()
    yield running
    await running.stop()


async def place(
    world: OrderingWorld,
    ordering: Ordering,
    buyer: str,
    offer_id: str,
    *,
    quantity: int = 2,
    key: str | None = None,
    fields: dict[str, str] | None = None,
) -> Any:
    return await ordering.client.post(
        "/orders",
        json={"offer_id": offer_id, "quantity": quantity, "buyer_fields": fields or {}},
        headers={**world.as_user(buyer, Role.BUYER), "Idempotency-Key": key or world.unique("k")},
    )


async def reserve(world: OrderingWorld, order: dict[str, Any], keys: list[str]) -> None:
    await world.publish(
        KeyReserved(
            offer_id=order["offer_id"],
            order_id=order["order_id"],
            key_ids=keys,
            expires_at=world.clock() + 15 * MINUTES,
        ),
        producer="inventory",
        correlation_id=order["order_id"],
    )


async def confirm_payment(world: OrderingWorld, order: dict[str, Any], payment_id: str) -> None:
    await world.publish(
        PaymentConfirmed(
            payment_id=payment_id,
            order_id=order["order_id"],
            buyer_id=order["buyer_id"],
            amount=order["total"],
            channel=PaymentChannel.WALLET,
            channel_reference=f"wallet-{payment_id}",
        ),
        producer="payment",
        correlation_id=order["order_id"],
    )


async def test_purchase_over_http_and_kafka_reaches_completed_by_the_guarantee_poller(
    world: OrderingWorld, ordering: Ordering
) -> None:
    buyer = world.unique("buyer")
    offer_id, seller_id = await world.list_offer(ordering, price=2_500)

    response = await place(world, ordering, buyer, offer_id, quantity=2)
    assert response.status_code == 201, response.text
    order = response.json()
    order_id = order["order_id"]
    assert (order["state"], order["unit_price"], order["total"]) == ("PLACED", 2_500, 5_000)
    assert order["seller_id"] == seller_id
    assert order["deadlines"]["next"]["kind"] == "payment"

    # inventory reserves; payment confirms; inventory sells; delivery delivers
    keys = [world.unique("key"), world.unique("key")]
    await reserve(world, order, keys)
    await world.wait_for_state(ordering, order_id, buyer, "RESERVED")
    payment_id = world.unique("payment")
    await confirm_payment(world, order, payment_id)
    await world.wait_for_state(ordering, order_id, buyer, "PAID")
    await world.publish(
        KeysSold(offer_id=offer_id, order_id=order_id, key_ids=keys),
        producer="inventory",
        correlation_id=order_id,
    )
    delivery_id = world.unique("delivery")
    await world.publish(
        KeyDelivered(
            delivery_id=delivery_id,
            order_id=order_id,
            buyer_id=buyer,
            offer_id=offer_id,
            seller_id=seller_id,
            key_ids=keys,
            channels=[DeliveryChannel.VAULT],
            mode=DeliveryMode.AUTO,
        ),
        producer="delivery",
        correlation_id=order_id,
    )
    delivered = await world.wait_for_state(ordering, order_id, buyer, "DELIVERED")
    assert delivered["delivered_key_ids"] == keys
    assert delivered["deadlines"]["next"]["kind"] == "guarantee"

    # Nothing happens before the guarantee window ends; then the poller completes it.
    world.clock.advance(14 * MINUTES)
    await asyncio.sleep(0.5)
    assert (await world.wait_for_state(ordering, order_id, buyer, "DELIVERED"))["version"] == 4
    world.clock.advance(1 * MINUTES + timedelta(seconds=1))
    completed = await world.wait_for_state(ordering, order_id, buyer, "COMPLETED")
    assert completed["completed_by"] == "guarantee_elapsed"
    assert completed["deadlines"]["next"] is None

    envelopes = await world.order_events(order_id, until=lambda ts: "OrderCompleted" in ts)
    assert [e.event_type for e in envelopes] == [
        "OrderPlaced",
        "OrderReserved",
        "OrderPaid",
        "OrderDelivered",
        "OrderCompleted",
    ]
    assert all(e.correlation_id == order_id for e in envelopes)
    finished = envelopes[-1].payload
    assert isinstance(finished, OrderCompleted)
    assert finished.completed_by is CompletedBy.GUARANTEE_ELAPSED

    # The timeline: every service's events of this order, in time order, no secrets.
    timeline = await ordering.client.get(
        f"/orders/{order_id}/timeline", headers=world.as_user(buyer)
    )
    assert timeline.status_code == 200
    rows = timeline.json()["events"]
    types = [row["event_type"] for row in rows]
    for expected in ("KeyReserved", "PaymentConfirmed", "KeysSold", "KeyDelivered"):
        assert expected in types
    assert types.index("OrderPlaced") < types.index("KeyReserved") < types.index("OrderReserved")
    assert types[-1] == "OrderCompleted"
    producers = {row["event_type"]: row["producer"] for row in rows}
    assert producers["KeyReserved"] == "inventory" and producers["KeyDelivered"] == "delivery"
    assert not any(f"wallet-{payment_id}" in row["summary"] for row in rows)

    # Who may look: the buyer and support; anyone else is told it does not exist.
    support = await ordering.client.get(
        f"/orders/{order_id}", headers=world.as_user(world.unique("agent"), Role.SUPPORT)
    )
    assert support.status_code == 200
    stranger = await ordering.client.get(
        f"/orders/{order_id}/timeline", headers=world.as_user(world.unique("buyer"))
    )
    assert stranger.status_code == 404
    assert stranger.json()["error"]["code"] == "order_not_found"

    mine = await ordering.client.get("/orders", headers=world.as_user(buyer))
    assert [o["order_id"] for o in mine.json()["orders"]] == [order_id]
    assert mine.json()["orders"][0]["state"] == "COMPLETED"

    async def gauges_refreshed() -> bool:
        metrics = (await ordering.client.get("/metrics")).text
        return 'kami_saga_orders{state="COMPLETED"} 1.0' in metrics

    await eventually(gauges_refreshed, message="saga gauges never showed the completed order")
    metrics = (await ordering.client.get("/metrics")).text
    assert 'kami_saga_decisions_total{outcome="applied",trigger="KeyReserved"}' in metrics
    assert 'kami_saga_duration_seconds_count{outcome="completed"}' in metrics


async def test_payment_timeout_cancels_with_the_keys_to_release_and_a_late_payment_is_refunded(
    world: OrderingWorld, ordering: Ordering
) -> None:
    buyer = world.unique("buyer")
    offer_id, seller_id = await world.list_offer(ordering)
    order = (await place(world, ordering, buyer, offer_id, quantity=2)).json()
    order_id = order["order_id"]
    keys = [world.unique("key"), world.unique("key")]
    await reserve(world, order, keys)
    await world.wait_for_state(ordering, order_id, buyer, "RESERVED")

    world.clock.advance(15 * MINUTES)
    envelopes = await world.order_events(order_id, until=lambda ts: "OrderCancelled" in ts)
    cancelled = envelopes[-1].payload
    assert isinstance(cancelled, OrderCancelled)
    assert cancelled.reason is CancelReason.PAYMENT_TIMEOUT
    assert cancelled.release_key_ids == keys
    await world.wait_for_state(ordering, order_id, buyer, "CANCELLED")

    # The buyer's money arrives anyway: ordering asks for it back, from escrow.
    payment_id = world.unique("payment")
    await confirm_payment(world, order, payment_id)
    envelopes = await world.order_events(order_id, until=lambda ts: "OrderRefundRequested" in ts)
    request = envelopes[-1].payload
    assert isinstance(request, OrderRefundRequested)
    assert (request.source, request.reason, request.amount) == (
        RefundSource.ESCROW,
        RefundReason.LATE_PAYMENT,
        order["total"],
    )
    await world.publish(
        PaymentRefunded(
            payment_id=payment_id,
            order_id=order_id,
            buyer_id=buyer,
            seller_id=seller_id,
            refund_id=request.refund_id,
            amount=request.amount,
            source=RefundSource.ESCROW,
            reason=RefundReason.LATE_PAYMENT,
            destination="original_channel",
        ),
        producer="payment",
        correlation_id=order_id,
    )
    refunded = await world.wait_for_state(ordering, order_id, buyer, "REFUNDED")
    assert refunded["refunded_amount"] == order["total"]
    assert refunded["refunds"][0]["status"] == "refunded"


async def test_a_deadline_set_before_a_restart_fires_after_it(world: OrderingWorld) -> None:
    first = await world.start()
    buyer = world.unique("buyer")
    offer_id, _ = await world.list_offer(first)
    order = (await place(world, first, buyer, offer_id, quantity=1)).json()
    order_id = order["order_id"]
    keys = [world.unique("key")]
    await reserve(world, order, keys)
    await world.wait_for_state(first, order_id, buyer, "RESERVED")
    await first.stop()  # the process dies mid-saga, awaiting payment

    world.clock.advance(20 * MINUTES)  # the deadline passes while it is down
    second = await world.start()
    try:
        envelopes = await world.order_events(order_id, until=lambda ts: "OrderCancelled" in ts)
        cancelled = envelopes[-1].payload
        assert isinstance(cancelled, OrderCancelled)
        assert cancelled.reason is CancelReason.PAYMENT_TIMEOUT
        assert cancelled.release_key_ids == keys
        assert [e.event_type for e in envelopes].count("OrderCancelled") == 1
        await world.wait_for_state(second, order_id, buyer, "CANCELLED")
    finally:
        await second.stop()


async def test_idempotency_key_over_http(world: OrderingWorld, ordering: Ordering) -> None:
    buyer = world.unique("buyer")
    offer_id, _ = await world.list_offer(ordering, max_quantity=3)
    headers = world.as_user(buyer, Role.BUYER)
    body = {"offer_id": offer_id, "quantity": 1}

    missing = await ordering.client.post("/orders", json=body, headers=headers)
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "idempotency_key_required"
    blank = await ordering.client.post(
        "/orders", json=body, headers={**headers, "Idempotency-Key": "has space"}
    )
    assert blank.status_code == 400
    assert blank.json()["error"]["code"] == "idempotency_key_invalid"

    key = world.unique("key")
    first = await place(world, ordering, buyer, offer_id, quantity=1, key=key)
    again = await place(world, ordering, buyer, offer_id, quantity=1, key=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["order_id"] == first.json()["order_id"]

    reused = await place(world, ordering, buyer, offer_id, quantity=2, key=key)
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "idempotency_key_reused"

    # Twins racing under one key: the unique index lets one place the order.
    twin_key = world.unique("key")
    twins = await asyncio.gather(
        *(place(world, ordering, buyer, offer_id, quantity=1, key=twin_key) for _ in range(4))
    )
    assert sorted(t.status_code for t in twins) == [200, 200, 200, 201]
    assert len({t.json()["order_id"] for t in twins}) == 1

    listed = await ordering.client.get("/orders", params={"limit": 1}, headers=headers)
    assert len(listed.json()["orders"]) == 1 and listed.json()["next_cursor"]
    after = await ordering.client.get(
        "/orders", params={"limit": 5, "cursor": listed.json()["next_cursor"]}, headers=headers
    )
    assert len(after.json()["orders"]) == 1  # two orders in all, newest first
    assert await ordering.runtime.db["order_requests"].count_documents({"buyer_id": buyer}) == 2


async def test_orders_that_cannot_be_placed_get_a_clear_4xx(
    world: OrderingWorld, ordering: Ordering
) -> None:
    buyer = world.unique("buyer")
    offer_id, _ = await world.list_offer(
        ordering, mode=DeliveryMode.MANUAL, fields=("game_account",), max_quantity=2
    )

    async def code(response: Any) -> tuple[int, str]:
        return response.status_code, response.json()["error"]["code"]

    unknown = await place(world, ordering, buyer, "offer-nobody-listed")
    assert await code(unknown) == (404, "offer_not_found")
    too_many = await place(world, ordering, buyer, offer_id, quantity=3)
    assert await code(too_many) == (422, "quantity_out_of_range")
    no_fields = await place(world, ordering, buyer, offer_id, quantity=1)
    assert await code(no_fields) == (422, "buyer_fields_invalid")
    not_json = await ordering.client.post(
        "/orders",
        json={"offer_id": offer_id, "quantity": "1"},
        headers={**world.as_user(buyer, Role.BUYER), "Idempotency-Key": "k-1"},
    )
    assert await code(not_json) == (422, "invalid_request")
    seller_token = await ordering.client.post(
        "/orders",
        json={"offer_id": offer_id, "quantity": 1},
        headers={**world.as_user(buyer, Role.SELLER), "Idempotency-Key": "k-2"},
    )
    assert await code(seller_token) == (403, "forbidden")

    manual = await place(
        world, ordering, buyer, offer_id, quantity=1, fields={"game_account": "g-123"}
    )
    assert manual.status_code == 201
    assert manual.json()["state"] == "RESERVED"  # nothing to reserve for a manual offer
    assert manual.json()["buyer_fields"] == {"game_account": "g-123"}

    # The buyer cancels it before paying; then it can no longer be cancelled.
    order_id = manual.json()["order_id"]
    cancel = await ordering.client.post(
        f"/orders/{order_id}/cancel", headers=world.as_user(buyer, Role.BUYER)
    )
    assert cancel.status_code == 200 and cancel.json()["state"] == "CANCELLED"
    assert cancel.json()["cancel_reason"] == "buyer_cancelled"
    again = await ordering.client.post(
        f"/orders/{order_id}/cancel", headers=world.as_user(buyer, Role.BUYER)
    )
    assert again.status_code == 200
    other = await ordering.client.post(
        f"/orders/{order_id}/cancel", headers=world.as_user(world.unique("buyer"), Role.BUYER)
    )
    assert await code(other) == (404, "order_not_found")


async def deliver(world: OrderingWorld, order: dict[str, Any], keys: list[str]) -> None:
    await world.publish(
        KeyDelivered(
            delivery_id=world.unique("delivery"),
            order_id=order["order_id"],
            buyer_id=order["buyer_id"],
            offer_id=order["offer_id"],
            seller_id=order["seller_id"],
            key_ids=keys,
            channels=[DeliveryChannel.VAULT, DeliveryChannel.SMS],
            mode=DeliveryMode.AUTO,
        ),
        producer="delivery",
        correlation_id=order["order_id"],
    )


async def test_every_reply_reaches_its_order_over_kafka(
    world: OrderingWorld, ordering: Ordering
) -> None:
    """Four orders side by side, each ending by another reply: a failed
    reservation, a failed payment, a failed delivery, a chargeback after the
    buyer confirmed arrival; and a claim held open past the guarantee window,
    then upheld after settlement."""
    buyer = world.unique("buyer")
    offer_id, seller_id = await world.list_offer(ordering)
    orders = [(await place(world, ordering, buyer, offer_id, quantity=1)).json() for _ in range(5)]
    unreservable, unpaid, undeliverable, reversed_, claimed = orders
    keys = {o["order_id"]: [world.unique("key")] for o in orders}

    await world.publish(
        KeyReservationFailed(
            offer_id=offer_id,
            order_id=unreservable["order_id"],
            reason=ReservationFailure.OUT_OF_STOCK,
            requested=1,
            available=0,
        ),
        producer="inventory",
        correlation_id=unreservable["order_id"],
    )
    for order in orders[1:]:
        await reserve(world, order, keys[order["order_id"]])
        await world.wait_for_state(ordering, order["order_id"], buyer, "RESERVED")
    await world.publish(
        PaymentFailed(
            payment_id=world.unique("payment"),
            order_id=unpaid["order_id"],
            buyer_id=buyer,
            reason=PaymentFailure.DAILY_LIMIT_EXCEEDED,
            captured_amount=0,
        ),
        producer="payment",
        correlation_id=unpaid["order_id"],
    )
    payments = {o["order_id"]: world.unique("payment") for o in orders[2:]}
    for order in orders[2:]:
        await confirm_payment(world, order, payments[order["order_id"]])
        await world.wait_for_state(ordering, order["order_id"], buyer, "PAID")
    await world.publish(
        DeliveryFailed(
            delivery_id=world.unique("delivery"),
            order_id=undeliverable["order_id"],
            buyer_id=buyer,
            offer_id=offer_id,
            seller_id=seller_id,
            reason=DeliveryFailure.KEY_BLOCKED,
            key_ids=keys[undeliverable["order_id"]],
            faulty_key_ids=keys[undeliverable["order_id"]],
        ),
        producer="delivery",
        correlation_id=undeliverable["order_id"],
    )
    for order in (reversed_, claimed):
        await deliver(world, order, keys[order["order_id"]])
        await world.wait_for_state(ordering, order["order_id"], buyer, "DELIVERED")

    await world.publish(
        ArrivalConfirmed(
            delivery_id=world.unique("delivery"), order_id=reversed_["order_id"], buyer_id=buyer
        ),
        producer="delivery",
        correlation_id=reversed_["order_id"],
    )
    await world.wait_for_state(ordering, reversed_["order_id"], buyer, "COMPLETED")
    await world.publish(
        PaymentReversed(
            payment_id=payments[reversed_["order_id"]],
            order_id=reversed_["order_id"],
            buyer_id=buyer,
            seller_id=seller_id,
            amount=reversed_["total"],
            reason=ReversalReason.CHARGEBACK,
            channel_reference="cb-1",
            settled=True,
        ),
        producer="payment",
        correlation_id=reversed_["order_id"],
    )

    # The claimed order: settled, a ticket opened, the window passes, the claim is upheld.
    ticket_id = world.unique("ticket")
    await world.publish(
        FundsSettled(
            payment_id=payments[claimed["order_id"]],
            order_id=claimed["order_id"],
            buyer_id=buyer,
            seller_id=seller_id,
            gross=claimed["total"],
            platform_fee=100,
            net=claimed["total"] - 100,
        ),
        producer="payment",
        correlation_id=claimed["order_id"],
    )
    await world.publish(
        TicketOpened(
            ticket_id=ticket_id,
            order_id=claimed["order_id"],
            buyer_id=buyer,
            seller_id=seller_id,
            offer_id=offer_id,
            category=IssueCategory.KEY_INVALID,
            key_ids=keys[claimed["order_id"]],
            within_guarantee=True,
            priority=1,
            opened_by="buyer",
        ),
        producer="aftersales",
        correlation_id=claimed["order_id"],
    )

    async def claim_recorded() -> bool:
        return await ordering.runtime.db["claims"].count_documents({}) == 1

    await eventually(claim_recorded, message="the open claim was never recorded")
    world.clock.advance(20 * MINUTES)
    await asyncio.sleep(0.5)  # several poller passes: the claim holds the window
    assert await world.wait_for_state(ordering, claimed["order_id"], buyer, "DELIVERED")
    await world.publish(
        CompensationApproved(
            ticket_id=ticket_id,
            order_id=claimed["order_id"],
            buyer_id=buyer,
            seller_id=seller_id,
            amount=claimed["total"],
            void_key_ids=keys[claimed["order_id"]],
            approved_by="agent-1",
        ),
        producer="aftersales",
        correlation_id=claimed["order_id"],
    )

    await world.wait_for_state(ordering, unreservable["order_id"], buyer, "CANCELLED")
    await world.wait_for_state(ordering, unpaid["order_id"], buyer, "CANCELLED")
    await world.wait_for_state(ordering, undeliverable["order_id"], buyer, "REFUNDING")
    await world.wait_for_state(ordering, reversed_["order_id"], buyer, "REFUNDING")
    await world.wait_for_state(ordering, claimed["order_id"], buyer, "REFUNDING")

    def last_of(envelopes: list[Any]) -> Any:
        return envelopes[-1].payload

    def ended(ts: list[str]) -> bool:
        return "OrderCancelled" in ts or "OrderRefundRequested" in ts

    async def ending(order: dict[str, Any]) -> Any:
        return last_of(await world.order_events(order["order_id"], until=ended))

    assert (await ending(unreservable)).reason is CancelReason.OUT_OF_STOCK
    failed = await ending(unpaid)
    assert (failed.reason, failed.release_key_ids) == (
        CancelReason.PAYMENT_FAILED,
        keys[unpaid["order_id"]],
    )
    undelivered = await ending(undeliverable)
    assert (undelivered.reason, undelivered.source, undelivered.void_key_ids) == (
        RefundReason.DELIVERY_FAILED,
        RefundSource.ESCROW,
        keys[undeliverable["order_id"]],
    )
    chargeback = await ending(reversed_)
    assert (chargeback.reason, chargeback.source, chargeback.void_key_ids) == (
        RefundReason.CHARGEBACK,
        RefundSource.SELLER_DEPOSIT,
        keys[reversed_["order_id"]],
    )
    upheld = await ending(claimed)
    assert (upheld.reason, upheld.source, upheld.ticket_id) == (
        RefundReason.CLAIM_UPHELD,
        RefundSource.SELLER_DEPOSIT,
        ticket_id,
    )
