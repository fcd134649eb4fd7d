"""The inventory service on the real Kafka and FerretDB: sellers over HTTP,
the saga over Kafka, delivery over the internal API."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
import pytest

from kami_events.catalogue.identity import Role
from kami_events.catalogue.inventory import KeyReserved, KeysSold, ReplacementKeysAllocated
from kami_events.serialization import decode
from kami_events.topics import topic_for
from kami_inventory.domain.keys import KeyStatus
from tests.integration.conftest import eventually
from tests.integration.inventory.conftest import RunningInventory, envelope_of, produce
from tests.integration.kafka_helpers import committed_past, read_topic
from tests.unit.inventory.samples import (
    OTHER_SELLER,
    SELLER,
    offer_listed,
    order_paid,
    order_placed,
    replacement_approved,
)

OFFER = "offer-1"


def secrets(count: int) -> list[str]:
    return [f"KAMI-{os.urandom(10).hex().upper()}" for _ in range(count)]


async def test_a_seller_imports_keys_in_every_way_and_no_secret_lands_in_mongo(
    running_inventory: RunningInventory,
) -> None:
    service = running_inventory
    await service.list_offer(offer_listed(OFFER))
    seller = service.as_user(SELLER, Role.SELLER)
    keys = secrets(6)
    expiry = (datetime.now(UTC) + timedelta(days=90)).isoformat()
    content = (
        f"key,expires_at\n{keys[0]},{expiry}\n{keys[1]},\n\n{keys[2]},not-a-date\n{keys[0]},\n"
    )

    first = await service.client.post(
        f"/offers/{OFFER}/imports",
        json={"format": "csv", "content": content},
        headers={**seller, "Idempotency-Key": "import-1"},
    )
    assert first.status_code == 201, first.text
    report = first.json()
    assert (report["imported"], report["duplicates"], report["rejected"]) == (2, 1, 2)
    assert [(r["line"], r["reason"]) for r in report["rejected_lines"]] == [
        (4, "empty"),
        (5, "bad_expiry"),
        (6, "duplicate_in_file"),
    ]
    # The same import again: the same report, nothing new.
    again = await service.client.post(
        f"/offers/{OFFER}/imports",
        json={"format": "csv", "content": content, "import_id": "import-1"},
        headers=seller,
    )
    assert (again.status_code, again.json()) == (200, report)
    reused = await service.client.post(
        f"/offers/{OFFER}/imports",
        json={"format": "csv", "content": "OTHER-FILE\n"},
        headers={**seller, "Idempotency-Key": "import-1"},
    )
    assert (reused.status_code, reused.json()["error"]["code"]) == (409, "import_id_reused")

    # A TXT body, a key already in the pool among them.
    txt = await service.client.post(
        f"/offers/{OFFER}/imports",
        content=f"{keys[3]}\n{keys[1]}\n".encode(),
        headers={**seller, "Idempotency-Key": "import-2", "Content-Type": "text/plain"},
    )
    assert txt.status_code == 201, txt.text
    assert [(r["line"], r["reason"]) for r in txt.json()["rejected_lines"]] == [
        (2, "duplicate_in_pool")
    ]
    # A multipart upload of a CSV file.
    upload = await service.client.post(
        f"/offers/{OFFER}/imports",
        files={"file": ("keys.csv", f"{keys[4]},{expiry}\n{keys[5]},{expiry}\n".encode())},
        data={"import_id": "import-3"},
        headers=seller,
    )
    assert (upload.status_code, upload.json()["imported"]) == (201, 2)

    stock = await service.client.get(f"/offers/{OFFER}/stock", headers=seller)
    assert stock.json() == {
        "offer_id": OFFER,
        "available": 5,
        "reserved": 0,
        "sold": 0,
        "blocked": 0,
        "voided": 0,
        "expired": 0,
    }

    # Every document of the service's database, as stored: no secret in any field.
    scanned = 0
    for name in await service.db.list_collection_names():
        async for document in service.db[name].find():
            raw = bson.encode(document)
            for key in keys:
                assert key.encode() not in raw, f"plaintext key in {name}"
                assert key[-12:].encode() not in raw, f"part of a key in {name}"
            scanned += 1
    assert scanned >= 5 + 3 + 3  # keys, imports, commits at least


async def test_upload_limits_and_bad_requests_are_clear_4xx(
    running_inventory: RunningInventory,
) -> None:
    service = running_inventory
    await service.list_offer(offer_listed(OFFER))
    seller = service.as_user(SELLER, Role.SELLER)
    big = "K" * 20 + "\n"
    too_big = await service.client.post(
        f"/offers/{OFFER}/imports",
        content=(big * 1000).encode(),  # 21 kB > the 16 kB limit
        headers={**seller, "Idempotency-Key": "big", "Content-Type": "text/plain"},
    )
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "import_too_large"
    no_id = await service.client.post(
        f"/offers/{OFFER}/imports", json={"format": "txt", "content": "K1\n"}, headers=seller
    )
    assert (no_id.status_code, no_id.json()["error"]["code"]) == (422, "import_id_required")
    bad_format = await service.client.post(
        f"/offers/{OFFER}/imports",
        json={"format": "xlsx", "content": "K1\n"},
        headers={**seller, "Idempotency-Key": "x"},
    )
    assert (bad_format.status_code, bad_format.json()["error"]["code"]) == (
        422,
        "invalid_request",
    )
    media = await service.client.post(
        f"/offers/{OFFER}/imports",
        content=b"K1",
        headers={**seller, "Idempotency-Key": "x", "Content-Type": "application/pdf"},
    )
    assert (media.status_code, media.json()["error"]["code"]) == (415, "unsupported_media_type")
    assert (await service.db["keys"].count_documents({})) == 0


async def test_sellers_touch_only_their_own_pools(running_inventory: RunningInventory) -> None:
    service = running_inventory
    await service.list_offer(offer_listed(OFFER))
    owner = service.as_user(SELLER, Role.SELLER)
    intruder = service.as_user(OTHER_SELLER, Role.SELLER)
    (key,) = secrets(1)
    imported = await service.client.post(
        f"/offers/{OFFER}/imports",
        json={"format": "txt", "content": key + "\n"},
        headers={**owner, "Idempotency-Key": "import-1"},
    )
    assert imported.status_code == 201
    page = (await service.client.get(f"/offers/{OFFER}/keys", headers=owner)).json()
    (listed,) = page["keys"]
    assert listed["hint"] == "…" + key[-4:] and key not in json.dumps(page)

    attempts: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", f"/offers/{OFFER}/imports", {"json": {"format": "txt", "content": "MINE-1\n"}}),
        ("GET", f"/offers/{OFFER}/stock", {}),
        ("GET", f"/offers/{OFFER}/keys", {}),
        ("GET", f"/offers/{OFFER}/imports/import-1", {}),
        ("POST", f"/offers/{OFFER}/keys/void", {"json": {"key_ids": [listed["key_id"]]}}),
    ]
    for method, path, options in attempts:
        response = await service.client.request(
            method, path, headers={**intruder, "Idempotency-Key": "i-1"}, **options
        )
        assert (response.status_code, response.json()["error"]["code"]) == (
            403,
            "not_your_offer",
        ), path
        buyer = await service.client.request(
            method, path, headers=service.as_user("buyer-1", Role.BUYER), **options
        )
        assert buyer.status_code == 403, path
        anonymous = await service.client.request(method, path, **options)
        assert anonymous.status_code == 401, path
    assert (await service.client.get("/offers", headers=intruder)).json() == []
    mine = (await service.client.get("/offers", headers=owner)).json()
    assert [(o["offer_id"], o["stock"]["available"]) for o in mine] == [(OFFER, 1)]

    voided = await service.client.post(
        f"/offers/{OFFER}/keys/void", json={"key_ids": [listed["key_id"]]}, headers=owner
    )
    assert voided.json() == {"voided": [listed["key_id"]], "refused": []}
    doc = await service.db["keys"].find_one({"_id": listed["key_id"]})
    assert doc is not None and doc["status"] == KeyStatus.VOIDED.value


async def test_an_order_is_reserved_sold_and_revealed_over_kafka_exactly_once(
    running_inventory: RunningInventory, kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    service = running_inventory
    # Catalog lists the offer; inventory learns who owns it from the event.
    await produce(
        kafka_bootstrap,
        envelope_of(offer_listed(OFFER), producer="catalog", version=1, correlation_id=OFFER),
    )
    seller = service.as_user(SELLER, Role.SELLER)

    async def offer_known() -> bool:
        return (await service.client.get(f"/offers/{OFFER}/stock", headers=seller)).is_success

    await eventually(offer_known, message="OfferListed never reached the read model")
    keys = secrets(3)
    imported = await service.client.post(
        f"/offers/{OFFER}/imports",
        json={"format": "txt", "content": "\n".join(keys)},
        headers={**seller, "Idempotency-Key": "import-1"},
    )
    assert imported.json()["imported"] == 3

    placed = order_placed(
        "order-1", OFFER, quantity=2, deadline=datetime.now(UTC) + timedelta(minutes=15)
    )
    await produce(
        kafka_bootstrap,
        envelope_of(placed, producer="ordering", version=1, correlation_id="order-1"),
    )
    pool_topic = topic_for("inventory.pool")

    def reserved_in(records: list[Any]) -> list[KeyReserved]:
        events = [decode(r.value).payload for r in records]
        return [e for e in events if isinstance(e, KeyReserved) and e.order_id == "order-1"]

    records = await read_topic(kafka_bootstrap, pool_topic, lambda rs: bool(reserved_in(rs)))
    (reserved,) = reserved_in(records)
    assert len(reserved.key_ids) == 2
    reserved_envelope = next(
        decode(r.value) for r in records if isinstance(decode(r.value).payload, KeyReserved)
    )
    assert reserved_envelope.correlation_id == "order-1"
    assert reserved_envelope.aggregate_id == OFFER

    # The payment goes through; Kafka delivers OrderPaid twice (a redelivery).
    paid = envelope_of(
        order_paid("order-1", OFFER, reserved.key_ids),
        producer="ordering",
        version=3,
        correlation_id="order-1",
    )
    await produce(kafka_bootstrap, paid)
    await produce(kafka_bootstrap, paid)

    async def sold() -> list[KeysSold]:
        commits = await service.runtime.store.load("inventory.pool", OFFER)
        return [e.payload for e in commits if isinstance(e.payload, KeysSold)]

    # Wait until the consumer has finished with both copies (it commits after handling).
    order_topic = topic_for("ordering.order")
    copies = await read_topic(
        kafka_bootstrap,
        order_topic,
        lambda rs: sum(decode(r.value).event_id == paid.event_id for r in rs) == 2,
    )
    group = service.settings.consumer_group
    await eventually(
        lambda: committed_past(kafka_bootstrap, group, copies),
        message="the consumer did not finish the order topic",
    )
    assert len(await sold()) == 1
    records = await read_topic(
        kafka_bootstrap,
        pool_topic,
        lambda rs: any(isinstance(decode(r.value).payload, KeysSold) for r in rs),
    )
    (sold_event,) = [
        decode(r.value).payload for r in records if isinstance(decode(r.value).payload, KeysSold)
    ]
    assert isinstance(sold_event, KeysSold) and sorted(sold_event.key_ids) == sorted(
        reserved.key_ids
    )

    # Delivery fetches the secrets; users never can.
    path = "/internal/orders/order-1/keys/reveal"
    body = {"key_ids": [*reserved.key_ids, "not-a-key"]}
    as_user = await service.client.post(path, json=body, headers=seller)
    assert (as_user.status_code, as_user.json()["error"]["code"]) == (401, "invalid_token")
    as_payment = await service.client.post(path, json=body, headers=service.as_service("payment"))
    assert (as_payment.status_code, as_payment.json()["error"]["code"]) == (
        403,
        "service_not_allowed",
    )
    revealed = await service.client.post(path, json=body, headers=service.as_service("delivery"))
    assert revealed.status_code == 200, revealed.text
    assert revealed.headers["cache-control"] == "no-store"
    answer = revealed.json()
    assert {k["secret"] for k in answer["keys"]} <= set(keys) and len(answer["keys"]) == 2
    assert {k["status"] for k in answer["keys"]} == {"sold"}
    assert answer["unavailable"] == [{"key_id": "not-a-key", "status": "not_in_order"}]
    (audit,) = [d async for d in service.db["audit_reveals"].find()]
    assert audit["service"] == "delivery" and audit["order_id"] == "order-1"
    assert sorted(audit["revealed_key_ids"]) == sorted(reserved.key_ids)
    assert not any(key in json.dumps(audit, default=str) for key in keys)
    # Nothing logged along the way, at any level, holds a secret.
    assert "revealed 2 key(s) of order order-1 to delivery" in caplog.text

    # After-sales approves replacing one faulty key: the pool's last key is sold
    # to the order in its place, and only delivery may reveal it, for that order.
    faulty = reserved.key_ids[0]
    await produce(
        kafka_bootstrap,
        envelope_of(
            replacement_approved("ticket-1", "order-1", OFFER, [faulty]),
            producer="aftersales",
            version=2,
            correlation_id="order-1",
        ),
    )

    def allocated_in(records: list[Any]) -> list[ReplacementKeysAllocated]:
        events = [decode(r.value).payload for r in records]
        return [e for e in events if isinstance(e, ReplacementKeysAllocated)]

    records = await read_topic(kafka_bootstrap, pool_topic, lambda rs: bool(allocated_in(rs)))
    (allocated,) = allocated_in(records)
    assert allocated.replaced_key_ids == [faulty] and allocated.order_id == "order-1"
    (new_key,) = allocated.key_ids
    assert new_key not in reserved.key_ids
    replaced = await service.client.post(
        path, json={"key_ids": [new_key, faulty]}, headers=service.as_service("delivery")
    )
    answer = replaced.json()
    assert [k["key_id"] for k in answer["keys"]] == [new_key]
    assert answer["keys"][0]["secret"] in keys
    assert answer["unavailable"] == [{"key_id": faulty, "status": "voided"}]
    stock = (await service.client.get(f"/offers/{OFFER}/stock", headers=seller)).json()
    assert (stock["available"], stock["sold"], stock["voided"]) == (0, 2, 1)
    assert not any(key in caplog.text for key in keys)
