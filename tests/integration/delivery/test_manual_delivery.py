"""Manual delivery on the real servers: the seller's queue of tasks, key
submission over HTTP, and the SLA poller failing what is late (ManualClock)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from kami_delivery.domain.delivery import delivery_id_for
from kami_events.catalogue.catalog import OfferListed
from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.delivery import DeliveryFailed, DeliveryFailure, KeyDelivered
from kami_events.catalogue.identity import Role
from kami_events.clock import utc_now
from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.testing import ManualClock
from tests.integration.conftest import eventually
from tests.integration.delivery.conftest import Delivery
from tests.integration.delivery.test_auto_delivery import assert_no_plaintext
from tests.unit.delivery.events import PRODUCT, envelope, paid, placed


def outcomes(envelopes: list[Envelope[Event]], order_id: str) -> list[Event]:
    return [
        e.payload
        for e in envelopes
        if isinstance(e.payload, KeyDelivered | DeliveryFailed) and e.payload.order_id == order_id
    ]


async def open_tasks(delivery: Delivery, seller: str) -> list[dict[str, Any]]:
    response = await delivery.http.get(
        "/seller/deliveries", headers=delivery.as_user(seller, Role.SELLER)
    )
    assert response.status_code == 200, response.text
    deliveries: list[dict[str, Any]] = response.json()["deliveries"]
    return deliveries


async def test_seller_delivers_in_time_and_a_late_order_is_failed_by_the_sla_poller(
    start_delivery: Any, unique: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Whole seconds: MongoDB keeps milliseconds.
    clock = ManualClock(utc_now().replace(microsecond=0))
    seller, other_seller = unique("seller"), unique("seller")
    offer = unique("offer")
    buyer_a, buyer_b = unique("buyer"), unique("buyer")
    on_time, late = unique("order"), unique("order")
    fields = {"game_account": "player#42", "server": "east-1"}

    async with start_delivery(clock=clock) as delivery:
        await delivery.publish(
            envelope(
                OfferListed(
                    offer_id=offer,
                    product_id=PRODUCT,
                    seller_id=seller,
                    unit_price=3_000,
                    delivery_mode=DeliveryMode.MANUAL,
                    manual_delivery_sla_minutes=20,
                    guarantee_window_minutes=15,
                    max_quantity_per_order=5,
                ),
                at=clock(),
                producer="catalog",
            )
        )
        await eventually(
            lambda: delivery.deps.offers.sla_minutes(offer), message="offer SLA not recorded"
        )
        for order_id, buyer in ((on_time, buyer_a), (late, buyer_b)):
            order = placed(
                order_id,
                buyer,
                mode=DeliveryMode.MANUAL,
                quantity=1,
                seller_id=seller,
                offer_id=offer,
                buyer_fields=fields,
                now=clock(),
            )
            await delivery.publish(
                envelope(order, at=clock()), envelope(paid(order, []), at=clock())
            )

        async def both_open() -> bool:
            return len(await open_tasks(delivery, seller)) == 2

        await eventually(both_open, message="manual tasks not opened")
        tasks = {t["order_id"]: t for t in await open_tasks(delivery, seller)}
        assert tasks[on_time]["buyer_fields"] == fields
        assert tasks[on_time]["quantity"] == 1
        deadline = datetime.fromisoformat(tasks[on_time]["deadline"].replace("Z", "+00:00"))
        assert deadline == clock() + timedelta(minutes=20)  # the offer's SLA, not the default
        assert await open_tasks(delivery, other_seller) == []
        as_buyer = await delivery.http.get("/seller/deliveries", headers=delivery.as_user(buyer_a))
        assert as_buyer.status_code == 403 and as_buyer.json()["error"]["code"] == "forbidden"

        # Submitting: only the order's seller, exactly the ordered number of keys.
        url = f"/seller/deliveries/{delivery_id_for(on_time)}/keys"
        secret = f"TOPUP-{unique('code')}"
        stranger = await delivery.http.post(
            url, json={"keys": [secret]}, headers=delivery.as_user(other_seller, Role.SELLER)
        )
        assert stranger.status_code == 404
        too_many = await delivery.http.post(
            url, json={"keys": [secret, "X-2"]}, headers=delivery.as_user(seller, Role.SELLER)
        )
        assert too_many.status_code == 422
        assert too_many.json()["error"]["code"] == "wrong_key_count"
        clock.advance(timedelta(minutes=10))
        submitted = await delivery.http.post(
            url, json={"keys": [secret]}, headers=delivery.as_user(seller, Role.SELLER)
        )
        assert submitted.status_code == 201, submitted.text
        [key_id] = submitted.json()["key_ids"]
        assert submitted.json()["order_id"] == on_time

        revealed = await delivery.http.post(
            f"/vault/{key_id}/reveal", headers=delivery.as_user(buyer_a)
        )
        assert revealed.json()["secret"] == secret

        # The deadline passes for the other order: the poller fails it.
        clock.advance(timedelta(minutes=10))
        events = await delivery.emitted(
            lambda es: bool(outcomes(es, on_time) and outcomes(es, late))
        )
        [delivered] = outcomes(events, on_time)
        assert isinstance(delivered, KeyDelivered)
        assert delivered.mode is DeliveryMode.MANUAL and delivered.key_ids == [key_id]
        [failed] = outcomes(events, late)
        assert isinstance(failed, DeliveryFailed)
        assert failed.reason is DeliveryFailure.MANUAL_SLA_EXPIRED
        assert failed.seller_id == seller and failed.key_ids == []

        too_late = await delivery.http.post(
            f"/seller/deliveries/{delivery_id_for(late)}/keys",
            json={"keys": ["TOPUP-TOO-LATE"]},
            headers=delivery.as_user(seller, Role.SELLER),
        )
        assert too_late.status_code == 409
        assert too_late.json()["error"]["code"] == "sla_expired"
        assert await open_tasks(delivery, seller) == []
        assert await delivery.db["vault"].count_documents({"order_id": late}) == 0
        await assert_no_plaintext(delivery, [secret, "TOPUP-TOO-LATE"], caplog.text)
