"""The buyer's vault over HTTP on the real servers: who may see what, the
audit of every plaintext look, export formats, voiding on refund, arrival."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from kami_events.catalogue.common import RefundReason, RefundSource
from kami_events.catalogue.delivery import ArrivalConfirmed, KeyDelivered
from kami_events.catalogue.identity import Role
from kami_events.catalogue.ordering import OrderRefunded, OrderRefundRequested
from tests.integration.conftest import eventually
from tests.integration.delivery.conftest import Delivery, InventoryDouble
from tests.unit.delivery.events import envelope, paid, placed


async def delivered_order(
    delivery: Delivery, inventory: InventoryDouble, order_id: str, buyer: str, keys: dict[str, str]
) -> None:
    inventory.stock(order_id, **keys)
    now = delivery.runtime.clock()
    order = placed(order_id, buyer, quantity=len(keys), now=now)
    await delivery.publish(envelope(order, at=now), envelope(paid(order, list(keys)), at=now))

    async def listed() -> bool:
        response = await delivery.http.get("/vault", headers=delivery.as_user(buyer))
        return len(response.json()["keys"]) == len(keys)

    await eventually(listed, message="keys never reached the vault")


async def test_only_the_owner_sees_reveals_and_exports_keys_and_each_look_is_audited(
    start_delivery: Any, inventory: InventoryDouble, unique: Callable[[str], str]
) -> None:
    order_id, owner, other = unique("order"), unique("buyer"), unique("buyer")
    keys = {f"{order_id}-a": f"PLAIN-{unique('a')}", f"{order_id}-b": f"PLAIN-{unique('b')}"}
    first, second = keys

    async with start_delivery() as delivery:
        await delivered_order(delivery, inventory, order_id, owner, keys)
        http, mine, theirs = delivery.http, delivery.as_user(owner), delivery.as_user(other)
        audit = delivery.db["audit_reveals"]

        # No token, no vault.
        for method, path in (
            ("GET", "/vault"),
            ("POST", f"/vault/{first}/reveal"),
            ("GET", "/vault/export"),
            ("POST", f"/orders/{order_id}/arrival"),
            ("GET", "/messages"),
        ):
            response = await http.request(method, path)
            assert response.status_code == 401, (method, path)
            assert response.json()["error"]["code"] == "unauthenticated"

        # Another buyer: the keys do not exist for them, and nothing is audited.
        assert (await http.get("/vault", headers=theirs)).json() == {"keys": []}
        stolen = await http.post(f"/vault/{first}/reveal", headers=theirs)
        assert stolen.status_code == 404
        assert stolen.json()["error"]["code"] == "key_not_found"
        assert keys[first] not in stolen.text
        export = await http.get("/vault/export", params={"format": "txt"}, headers=theirs)
        assert export.status_code == 200 and export.text == ""
        arrival = await http.post(f"/orders/{order_id}/arrival", headers=theirs)
        assert arrival.status_code == 404
        assert await audit.count_documents({}) == 0

        # The owner: masked list, plaintext reveal and exports, each audited.
        listed = (await http.get("/vault", headers=mine)).json()["keys"]
        assert {k["key_id"]: k["masked"] for k in listed}.keys() == keys.keys()
        assert all(secret not in str(listed) for secret in keys.values())
        revealed = await http.post(f"/vault/{second}/reveal", headers=mine)
        assert revealed.json()["secret"] == keys[second]

        as_csv = await http.get("/vault/export", params={"format": "csv"}, headers=mine)
        assert as_csv.status_code == 200
        assert as_csv.headers["content-type"].startswith("text/csv")
        assert as_csv.headers["content-disposition"] == 'attachment; filename="kami-keys.csv"'
        assert as_csv.headers["cache-control"] == "no-store"
        rows = list(csv.DictReader(io.StringIO(as_csv.text)))
        assert {r["key_id"]: r["secret"] for r in rows} == keys
        assert {r["order_id"] for r in rows} == {order_id}
        as_txt = await http.get(
            "/vault/export", params={"format": "txt", "order_id": order_id}, headers=mine
        )
        assert sorted(as_txt.text.splitlines()) == sorted(keys.values())
        bad = await http.get("/vault/export", params={"format": "pdf"}, headers=mine)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"

        records = await audit.find({}, {"_id": 0}).sort("at", 1).to_list()
        assert [(r["user_id"], r["action"], r["export_format"]) for r in records] == [
            (owner, "reveal", None),
            (owner, "export", "csv"),
            (owner, "export", "txt"),
        ]
        assert records[0]["key_ids"] == [second]
        assert sorted(records[1]["key_ids"]) == sorted(keys)
        assert all(secret not in str(records) for secret in keys.values())

        # Sellers' routes are for sellers.
        assert (await http.get("/seller/deliveries", headers=mine)).status_code == 403
        seller_view = await http.get(
            "/seller/deliveries", headers=delivery.as_user(unique("s"), Role.SELLER)
        )
        assert seller_view.json() == {"deliveries": []}


async def test_arrival_is_confirmed_once_and_a_refund_voids_keys_in_the_vault(
    start_delivery: Any, inventory: InventoryDouble, unique: Callable[[str], str]
) -> None:
    order_id, owner = unique("order"), unique("buyer")
    keys = {f"{order_id}-a": f"PLAIN-{unique('a')}", f"{order_id}-b": f"PLAIN-{unique('b')}"}
    kept, voided = keys

    async with start_delivery() as delivery:
        await delivered_order(delivery, inventory, order_id, owner, keys)
        mine = delivery.as_user(owner)

        first = await delivery.http.post(f"/orders/{order_id}/arrival", headers=mine)
        again = await delivery.http.post(f"/orders/{order_id}/arrival", headers=mine)
        assert first.status_code == again.status_code == 200
        assert (first.json()["already_confirmed"], again.json()["already_confirmed"]) == (
            False,
            True,
        )
        confirmations = await delivery.emitted(
            lambda es: any(isinstance(e.payload, ArrivalConfirmed) for e in es)
        )
        assert [type(e.payload) for e in confirmations] == [KeyDelivered, ArrivalConfirmed]

        # A claim upheld later: the saga voids one key and refunds.
        now = delivery.runtime.clock()
        refund = {
            "order_id": order_id,
            "buyer_id": owner,
            "seller_id": "seller-1",
            "offer_id": "offer-1",
            "payment_id": f"pay-{order_id}",
            "refund_id": unique("refund"),
            "amount": 1_000,
            "source": RefundSource.SELLER_DEPOSIT,
            "reason": RefundReason.CLAIM_UPHELD,
        }
        await delivery.publish(
            envelope(OrderRefundRequested(**refund, void_key_ids=[voided]), at=now, version=5),
            envelope(OrderRefunded(**refund), at=now, version=6),
        )

        async def voided_hidden() -> bool:
            listed = (await delivery.http.get("/vault", headers=mine)).json()["keys"]
            return [k["key_id"] for k in listed] == [kept]

        await eventually(voided_hidden, message="the voided key is still listed")
        gone = await delivery.http.post(f"/vault/{voided}/reveal", headers=mine)
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "key_voided"
        entry = await delivery.db["vault"].find_one({"_id": voided})
        assert entry is not None and entry["voided"] is True and entry["sealed"] is None
        still = await delivery.http.post(f"/vault/{kept}/reveal", headers=mine)
        assert still.json()["secret"] == keys[kept]
        refunded = await delivery.http.post(f"/orders/{order_id}/arrival", headers=mine)
        assert refunded.status_code == 409
        assert refunded.json()["error"]["code"] == "order_refunded"
