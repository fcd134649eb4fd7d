"""SIGTERM mid-load: the service finishes what it started and loses nothing.

Buyers keep placing and paying orders while a service is sent SIGTERM. The
process must exit on its own, having stopped consuming, finished and
committed its messages in flight and published every commit it made (its
outbox is empty while it is down). Restarted, it must see no message twice
(its offsets were committed), and every order must still complete.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from kami_actors import Person
from kami_events.mongo import connect
from kami_local import Platform, _alive
from kami_market import PAYMENT_PASSWORD, Offer, funded_buyer, list_offer_with_keys
from tests.e2e.metrics import scrape

ORDERS = 10


async def persist(
    call: Callable[[], Awaitable[httpx.Response]],
    done: Callable[[httpx.Response], bool],
    *,
    what: str,
    timeout: float = 120.0,
) -> httpx.Response:
    """Repeat a request, through the restart of a service, until `done`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = await call()
            if done(response):
                return response
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.TransportError as exc:  # the service is restarting
            last = repr(exc)
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {last}")
        await asyncio.sleep(0.3)


async def purchase(buyer: Person, offer: Offer, placed: list[str]) -> str:
    key = str(uuid4())
    placing = await persist(
        lambda: buyer.call(
            "ordering",
            "POST",
            "/orders",
            json={"offer_id": offer.offer_id, "quantity": 1},
            headers={"Idempotency-Key": key},
        ),
        lambda r: r.status_code in (200, 201),
        what="the order to be placed",
    )
    order_id = str(placing.json()["order_id"])
    placed.append(order_id)

    def in_state(*states: str) -> Callable[[httpx.Response], bool]:
        return lambda r: r.status_code == 200 and r.json()["state"] in states

    def order() -> Awaitable[httpx.Response]:
        return buyer.call("ordering", "GET", f"/orders/{order_id}")

    await persist(order, in_state("RESERVED"), what=f"{order_id} reserved")
    await persist(
        lambda: buyer.call(
            "payment",
            "POST",
            "/payments",
            json={"order_id": order_id, "channel": "wallet", "payment_password": PAYMENT_PASSWORD},
        ),
        lambda r: r.status_code in (200, 201),
        what=f"{order_id} paid",
    )
    await persist(order, in_state("DELIVERED"), what=f"{order_id} delivered")
    await persist(
        lambda: buyer.call("delivery", "POST", f"/orders/{order_id}/arrival"),
        lambda r: r.status_code in (200, 201, 202),
        what=f"{order_id} arrival confirmed",
    )
    final = await persist(order, in_state("COMPLETED", "CANCELLED", "REFUNDED"), what=order_id)
    return str(final.json()["state"])


async def handled_beyond_committed(platform: Platform, service: str) -> list[str]:
    """Messages of `service`'s topics after its group's committed offsets that
    its inbox says were handled already: work done but not committed, which
    a restart would meet again. Read while the service is down."""
    prefix = f"{platform.topic_prefix}."
    group = f"{platform.topic_prefix}-{service}"  # the namespace names its groups
    admin = AIOKafkaAdminClient(bootstrap_servers=platform.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    committed = {tp: meta.offset for tp, meta in offsets.items() if tp.topic.startswith(prefix)}
    assert committed, f"{group} committed nothing"
    reader = AIOKafkaConsumer(bootstrap_servers=platform.kafka_bootstrap, enable_auto_commit=False)
    await reader.start()
    client = connect(platform.mongodb_uri, app_name="kami-e2e-shutdown")
    inbox = client[f"{platform.database_prefix}_{service}"]["inbox"]
    found: list[str] = []
    try:
        reader.assign(list(committed))
        ends = await reader.end_offsets(list(committed))
        for tp, offset in committed.items():
            reader.seek(tp, offset)
            while offset < ends[tp]:
                for record in (await reader.getmany(tp, timeout_ms=2000)).get(tp, []):
                    offset = record.offset + 1
                    event_id = json.loads(record.value)["event_id"]
                    if await inbox.find_one({"_id": f"{service}:{event_id}"}):
                        found.append(f"{tp.topic}[{tp.partition}]@{record.offset}")
    finally:
        await reader.stop()
        await client.close()
    return found


async def unpublished_commits(platform: Platform, service: str) -> int:
    client = connect(platform.mongodb_uri, app_name="kami-e2e-shutdown")
    try:
        events = client[f"{platform.database_prefix}_{service}"]["events"]
        return await events.count_documents({"published": False})
    finally:
        await client.close()


def shutdown_lines(platform: Platform, service: str, since: float) -> list[dict[str, Any]]:
    lines = []
    for line in platform.log_file(service).read_text().splitlines():
        record = json.loads(line)
        stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
        if stamp >= since - 1:
            lines.append(record)
    return lines


@pytest.mark.parametrize("service", ["ordering", "inventory"])
async def test_sigterm_mid_load_loses_nothing_and_leaves_nothing_half_done(
    platform: Platform, operator: Person, service: str
) -> None:
    offer = await list_offer_with_keys(
        platform, operator, keys=ORDERS, unit_price=300, max_quantity=1
    )
    buyers = [await funded_buyer(platform, 2000) for _ in range(ORDERS // 2)]
    placed: list[str] = []
    purchases = [
        asyncio.create_task(purchase(buyers[n % len(buyers)], offer, placed)) for n in range(ORDERS)
    ]
    try:
        # Mid-load: some orders placed, the rest on their way.
        deadline = time.monotonic() + 60
        while len(placed) < 3 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        pid = platform.pid(service)
        assert pid is not None
        signalled = time.time()
        os.kill(pid, signal.SIGTERM)
        while _alive(pid) and time.time() - signalled < 45:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        assert not _alive(pid), f"{service} did not exit within 45s of SIGTERM"

        # Down, it has published every commit it made, the last handlers' too,
        # and committed the offset of every message it handled.
        assert await unpublished_commits(platform, service) == 0
        assert await handled_beyond_committed(platform, service) == []
        said = [r["message"] for r in shutdown_lines(platform, service, signalled)]
        assert any(m.startswith("stopped consuming") for m in said), said
        assert any(m.startswith("outbox flushed") for m in said), said

        platform.start(service)
        await asyncio.to_thread(platform.wait_ready, service)
        states = await asyncio.gather(*purchases)
    finally:
        for task in purchases:
            task.cancel()

    assert states == ["COMPLETED"] * ORDERS
    restarted = await scrape(platform, service)
    assert restarted.value("kami_events_consumed_total", outcome="handled") > 0
    stock = await offer.seller.call("inventory", "GET", f"/offers/{offer.offer_id}/stock")
    assert (stock.json()["sold"], stock.json()["available"], stock.json()["reserved"]) == (
        ORDERS,
        0,
        0,
    )
