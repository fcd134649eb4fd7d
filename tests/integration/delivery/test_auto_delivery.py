"""Automatic delivery end to end on the real Kafka and FerretDB: ordering's
events in, inventory over HTTP, `KeyDelivered` / `DeliveryFailed` out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import bson
import pytest

from kami_delivery.domain.delivery import delivery_id_for
from kami_events.catalogue.delivery import (
    ArrivalConfirmed,
    DeliveryChannel,
    DeliveryFailed,
    DeliveryFailure,
    KeyDelivered,
    KeyReplaced,
)
from kami_events.catalogue.identity import KycTier, PhoneVerified
from kami_events.catalogue.inventory import ReplacementKeysAllocated
from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.topics import topic_for
from tests.integration.conftest import eventually
from tests.integration.delivery.conftest import Delivery, InventoryDouble, read_all
from tests.integration.kafka_helpers import committed_past, read_topic
from tests.unit.delivery.events import envelope, paid, placed, verified


def of_order(order_id: str, kind: type[Event]) -> Callable[[list[Envelope[Event]]], list[Any]]:
    return lambda envs: [
        e
        for e in envs
        if isinstance(e.payload, kind) and getattr(e.payload, "order_id", None) == order_id
    ]


async def assert_no_plaintext(delivery: Delivery, secrets: list[str], log_text: str) -> None:
    """DESIGN §9 (5): no plaintext key in any database field, event or log line."""
    scanned = 0
    for name in await delivery.db.list_collection_names():
        async for doc in delivery.db[name].find():
            raw = bson.encode(doc)
            for secret in secrets:
                assert secret.encode() not in raw, f"plaintext key in {name}: {doc['_id']}"
                assert secret not in str(doc)
            scanned += 1
    assert scanned > 0
    for topic in ("ordering.order", "delivery.delivery", "identity.user"):
        values = await read_all(delivery.bootstrap, topic_for(topic))
        assert values or topic == "identity.user"
        for value in values:
            for secret in secrets:
                assert secret.encode() not in value, f"plaintext key on {topic}"
    for secret in secrets:
        assert secret not in log_text


async def test_paid_order_is_delivered_once_revealed_only_to_its_buyer_and_never_leaks(
    start_delivery: Any,
    inventory: InventoryDouble,
    unique: Callable[[str], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    order_id, buyer = unique("order"), unique("buyer")
    secrets = {"k1": f"PLAIN-{unique('s')}-ONE", "k2": f"PLAIN-{unique('s')}-TWO"}
    keys = {f"{order_id}-{k}": s for k, s in secrets.items()}
    inventory.stock(order_id, **keys)

    async with start_delivery() as delivery:
        now = delivery.runtime.clock()
        order = placed(order_id, buyer, now=now)
        order_paid = envelope(paid(order, list(keys)), at=now)
        await delivery.publish(
            envelope(
                PhoneVerified(user_id=buyer, phone_masked="138****0001"),
                at=now,
                producer="identity",
            )
        )
        await eventually(lambda: delivery.deps.buyers.get(buyer), message="phone not recorded")
        await delivery.publish(envelope(order, at=now), order_paid)

        delivered_events = of_order(order_id, KeyDelivered)
        [delivered] = delivered_events(
            await delivery.emitted(lambda es: bool(delivered_events(es)))
        )
        event = delivered.payload
        assert isinstance(event, KeyDelivered)
        assert event.key_ids == list(keys) and event.buyer_id == buyer
        assert event.channels == [DeliveryChannel.VAULT, DeliveryChannel.SMS]
        assert delivered.aggregate_id == delivery_id_for(order_id)
        assert delivered.correlation_id == order_id
        assert delivered.causation_id == str(order_paid.event_id)
        assert delivered.producer == "delivery"
        assert inventory.calls == [(order_id, list(keys), "delivery")]

        # The buyer's vault: masked in the list, plaintext on an audited reveal.
        me = delivery.as_user(buyer)
        listed = (await delivery.http.get("/vault", headers=me)).json()["keys"]
        assert {k["key_id"] for k in listed} == set(keys)
        assert all(k["order_id"] == order_id and "PLAIN" not in k["masked"] for k in listed)
        first = next(iter(keys))
        revealed = await delivery.http.post(f"/vault/{first}/reveal", headers=me)
        assert revealed.status_code == 200, revealed.text
        assert revealed.json()["secret"] == keys[first]
        assert revealed.headers["cache-control"] == "no-store"
        audit = await delivery.db["audit_reveals"].find({"user_id": buyer}).to_list()
        assert [(a["action"], a["key_ids"]) for a in audit] == [("reveal", [first])]

        # Announced: a site message and a text, from the committed KeyDelivered.
        async def announced() -> bool:
            messages = (await delivery.http.get("/messages", headers=me)).json()["messages"]
            texts = await delivery.db["sms_messages"].count_documents({"user_id": buyer})
            return bool(messages) and texts == 1

        await eventually(announced, message="no site message or text")

        # OrderPaid redelivered as is, and replayed under a new event id: nothing new.
        replayed = envelope(paid(order, list(keys)), at=now)
        await delivery.publish(order_paid, replayed)
        records = await read_topic(
            delivery.bootstrap,
            topic_for("ordering.order"),
            until=lambda rs: any(str(replayed.event_id).encode() in r.value for r in rs),
        )
        group = delivery.runtime.consumer.group_id
        await eventually(
            lambda: committed_past(delivery.bootstrap, group, records),
            message="consumer did not finish the redelivered OrderPaid",
        )
        arrived = await delivery.http.post(f"/orders/{order_id}/arrival", headers=me)
        assert arrived.status_code == 200, arrived.text
        assert arrived.json()["already_confirmed"] is False

        everything = await delivery.emitted(
            lambda es: bool(of_order(order_id, ArrivalConfirmed)(es))
        )
        assert len(of_order(order_id, KeyDelivered)(everything)) == 1
        assert len(inventory.calls) == 1
        assert await delivery.db["vault"].count_documents({"order_id": order_id}) == 2

        await assert_no_plaintext(delivery, list(keys.values()), caplog.text)


async def test_a_blocked_key_fails_the_delivery_and_nothing_reaches_the_vault(
    start_delivery: Any, inventory: InventoryDouble, unique: Callable[[str], str]
) -> None:
    order_id, buyer = unique("order"), unique("buyer")
    good, bad = f"{order_id}-good", f"{order_id}-bad"
    inventory.stock(order_id, **{good: "PLAIN-GOOD-KEY-0001"})
    inventory.keys[order_id][bad] = ("", "blocked")

    async with start_delivery() as delivery:
        now = delivery.runtime.clock()
        order = placed(order_id, buyer, now=now)
        await delivery.publish(envelope(order, at=now), envelope(paid(order, [good, bad]), at=now))

        failures = of_order(order_id, DeliveryFailed)
        [failed] = failures(await delivery.emitted(lambda es: bool(failures(es))))
        event = failed.payload
        assert isinstance(event, DeliveryFailed)
        assert event.reason is DeliveryFailure.KEY_BLOCKED
        assert event.key_ids == [good, bad] and event.faulty_key_ids == [bad]
        assert await delivery.db["vault"].count_documents({}) == 0
        listed = await delivery.http.get("/vault", headers=delivery.as_user(buyer))
        assert listed.json() == {"keys": []}
        me = delivery.as_user(buyer)
        await eventually(
            lambda: _has_message(delivery, me, "delivery_failed"),
            message="buyer was not told of the failure",
        )


async def _has_message(delivery: Delivery, headers: dict[str, str], kind: str) -> bool:
    messages = (await delivery.http.get("/messages", headers=headers)).json()["messages"]
    return any(m["kind"] == kind for m in messages)


async def test_unreachable_inventory_retries_and_never_fails_the_delivery(
    start_delivery: Any, inventory: InventoryDouble, unique: Callable[[str], str]
) -> None:
    order_id, buyer = unique("order"), unique("buyer")
    key = f"{order_id}-k"
    inventory.stock(order_id, **{key: "PLAIN-KEY-AFTER-OUTAGE"})
    inventory.failing.add(order_id)

    async with start_delivery() as delivery:
        now = delivery.runtime.clock()
        order = placed(order_id, buyer, quantity=1, now=now)
        await delivery.publish(envelope(order, at=now), envelope(paid(order, [key]), at=now))
        await eventually(lambda: len(inventory.calls) >= 3, message="delivery was not retried")
        jobs = delivery.db["delivery_queue"]
        job = await jobs.find_one({"_id": delivery_id_for(order_id)})
        assert job is not None and job["status"] in ("queued", "working")
        assert "503" in job["error"]

        inventory.failing.clear()
        delivered = of_order(order_id, KeyDelivered)
        events = await delivery.emitted(lambda es: bool(delivered(es)))
        assert of_order(order_id, DeliveryFailed)(events) == []


async def test_when_the_lane_backs_up_higher_tiers_are_delivered_first(
    start_delivery: Any, inventory: InventoryDouble, unique: Callable[[str], str]
) -> None:
    tiers = {unique("phone"): (KycTier.PHONE, 0), unique("real"): (KycTier.REAL_NAME, 1)}
    tiers[unique("advanced")] = (KycTier.ADVANCED, 2)
    buyers = list(tiers)
    # Paid in this order; one worker, and inventory stalls the first call.
    paying = [buyers[0], buyers[0], buyers[1], buyers[0], buyers[2], buyers[1], buyers[2]]
    inventory.gate = asyncio.Event()

    async with start_delivery(delivery_lane_workers=1) as delivery:
        start = delivery.runtime.clock()
        await delivery.publish(
            *(
                envelope(verified(b, tier, p), at=start, producer="identity")
                for b, (tier, p) in tiers.items()
            )
        )

        async def tiers_known() -> bool:
            profiles = [await delivery.deps.buyers.get(b) for b in buyers]
            return all(p is not None for p in profiles)

        await eventually(tiers_known, message="tiers not recorded")
        orders = []
        for n, buyer in enumerate(paying):
            order_id = unique(f"order{n}")
            key = f"{order_id}-k"
            inventory.stock(order_id, **{key: f"PLAIN-{order_id}"})
            paid_at = start + timedelta(seconds=n)
            order = placed(order_id, buyer, quantity=1, now=paid_at)
            # One order at a time, so "paid first" is unambiguous across partitions.
            await delivery.publish(
                envelope(order, at=paid_at), envelope(paid(order, [key]), at=paid_at)
            )
            orders.append(order_id)
            await eventually(lambda: _queued(delivery, len(orders)), message="OrderPaid not queued")
            if n == 0:
                await eventually(lambda: len(inventory.calls) == 1, message="the lane is idle")
        assert len(inventory.calls) == 1  # the first order holds the only worker
        inventory.gate.set()

        await eventually(lambda: len(inventory.calls) == len(orders), message="backlog not served")
        served = [order_id for order_id, _, _ in inventory.calls]
        priority = {b: p for b, (_, p) in tiers.items()}
        backlog = sorted(
            orders[1:], key=lambda o: (-priority[paying[orders.index(o)]], orders.index(o))
        )
        expected = [orders[0], *backlog]
        assert served == expected
        assert served[1:3] == [orders[4], orders[6]]  # the advanced-tier buyer's orders


async def _queued(delivery: Delivery, count: int) -> bool:
    return await delivery.db["delivery_queue"].count_documents({}) >= count


async def test_a_replacement_key_reaches_only_the_buyer_and_the_faulty_one_is_voided(
    start_delivery: Any,
    inventory: InventoryDouble,
    unique: Callable[[str], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    order_id, buyer, ticket = unique("order"), unique("buyer"), unique("ticket")
    faulty, spare = f"{order_id}-k1", f"{order_id}-k9"
    secrets = {faulty: f"PLAIN-{unique('s')}-BAD", spare: f"PLAIN-{unique('s')}-NEW"}
    inventory.stock(order_id, **{faulty: secrets[faulty]})

    async with start_delivery() as delivery:
        now = delivery.runtime.clock()
        order = placed(order_id, buyer, now=now, quantity=1)
        await delivery.publish(envelope(order, at=now), envelope(paid(order, [faulty]), at=now))
        await delivery.emitted(lambda es: bool(of_order(order_id, KeyDelivered)(es)))
        # Inventory sold the spare key to the order for the ticket.
        inventory.keys[order_id][spare] = (secrets[spare], "sold")
        allocated = envelope(
            ReplacementKeysAllocated(
                offer_id=order.offer_id,
                order_id=order_id,
                ticket_id=ticket,
                key_ids=[spare],
                replaced_key_ids=[faulty],
            ),
            at=now,
            producer="inventory",
        )
        await delivery.publish(allocated, allocated)  # and Kafka redelivers it

        replaced_events = of_order(order_id, KeyReplaced)
        [replaced] = replaced_events(await delivery.emitted(lambda es: bool(replaced_events(es))))
        event = replaced.payload
        assert isinstance(event, KeyReplaced)
        assert (event.key_ids, event.replaced_key_ids, event.ticket_id) == (
            [spare],
            [faulty],
            ticket,
        )
        assert replaced.causation_id == str(allocated.event_id)

        me = delivery.as_user(buyer)

        async def in_the_vault() -> bool:
            # KeyReplaced may reach Kafka a moment before the vault shows it.
            listed = (await delivery.http.get("/vault", headers=me)).json()["keys"]
            return [k["key_id"] for k in listed] == [spare]

        await eventually(in_the_vault, message="the vault does not show the new key alone")
        revealed = await delivery.http.post(f"/vault/{spare}/reveal", headers=me)
        assert revealed.status_code == 200 and revealed.json()["secret"] == secrets[spare]
        stranger = await delivery.http.post(
            f"/vault/{spare}/reveal", headers=delivery.as_user(unique("buyer"))
        )
        assert stranger.status_code == 404
        gone = await delivery.http.post(f"/vault/{faulty}/reveal", headers=me)
        assert gone.status_code == 410, gone.text
        audit = await delivery.db["audit_reveals"].find({"user_id": buyer}).to_list()
        assert [(a["action"], a["key_ids"]) for a in audit] == [("reveal", [spare])]

        async def told() -> bool:
            messages = (await delivery.http.get("/messages", headers=me)).json()["messages"]
            return [m["kind"] for m in messages].count("key_replaced") == 1

        await eventually(told, message="the buyer was not told of the replacement")
        everything = await delivery.emitted(lambda es: len(replaced_events(es)) >= 1)
        assert len(replaced_events(everything)) == 1
        await assert_no_plaintext(delivery, list(secrets.values()), caplog.text)
