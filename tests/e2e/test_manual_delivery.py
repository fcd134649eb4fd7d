"""An account-bound product delivered by hand: the buyer's fields travel to
the seller, who submits the key within the SLA (DESIGN §3, issue 4)."""

from __future__ import annotations

from uuid import uuid4

from kami_actors import Person, approved_seller
from kami_local import Platform
from kami_market import (
    funded_buyer,
    order_state,
    pay_by_wallet,
    publish_product,
    until,
)


async def test_seller_delivers_an_account_bound_order_by_hand(
    platform: Platform, operator: Person
) -> None:
    product_id = await publish_product(
        operator,
        name="原神 空月祝福 月卡",
        kind="membership",
        delivery_mode="manual",
        face_value=3000,
        binds_to_account=True,
        buyer_fields=[{"name": "uid", "label": "游戏UID", "pattern": "^[1-9][0-9]{8}$"}],
    )
    seller = await approved_seller(platform, operator, f"代充{uuid4().hex[:4]}")
    listed = await seller.call(
        "catalog",
        "POST",
        "/offers",
        json={
            "product_id": product_id,
            "unit_price": 2800,
            "delivery_mode": "manual",
            "manual_delivery_sla_minutes": 30,
            "max_quantity_per_order": 1,
        },
    )
    assert listed.status_code == 201, listed.text
    offer_id = listed.json()["offer_id"]
    buyer = await funded_buyer(platform, 5000)

    async def place(fields: dict[str, str]) -> tuple[int, dict[str, object]]:
        response = await until(
            lambda: buyer.call(
                "ordering",
                "POST",
                "/orders",
                json={"offer_id": offer_id, "quantity": 1, "buyer_fields": fields},
                headers={"Idempotency-Key": str(uuid4())},
            ),
            lambda r: r.status_code != 404,
            what="ordering to learn the offer",
        )
        return response.status_code, response.json()

    status, body = await place({"uid": "not-a-uid"})
    assert status == 422, body
    status, body = await place({"uid": "123456789"})
    assert status == 201, body
    order_id = str(body["order_id"])
    await order_state(buyer, order_id, "RESERVED")
    assert (await pay_by_wallet(buyer, order_id)).status_code in (200, 201)
    await order_state(buyer, order_id, "PAID")

    pending = await until(
        lambda: seller.call("delivery", "GET", "/seller/deliveries"),
        lambda r: any(d["order_id"] == order_id for d in r.json()["deliveries"]),
        what="the manual delivery to reach the seller",
    )
    [task] = [d for d in pending.json()["deliveries"] if d["order_id"] == order_id]
    assert task["buyer_fields"] == {"uid": "123456789"}
    # Another seller cannot see or fill it.
    other = await approved_seller(platform, operator, f"别家{uuid4().hex[:4]}")
    stolen = await other.call(
        "delivery", "POST", f"/seller/deliveries/{task['delivery_id']}/keys", json={"keys": ["X"]}
    )
    assert stolen.status_code == 404

    submitted = await seller.call(
        "delivery",
        "POST",
        f"/seller/deliveries/{task['delivery_id']}/keys",
        json={"keys": ["WELKIN-123456789-OK"]},
    )
    assert submitted.status_code in (200, 201), submitted.text
    await order_state(buyer, order_id, "DELIVERED")
    vault = await buyer.call("delivery", "GET", "/vault", params={"order_id": order_id})
    [key] = vault.json()["keys"]
    shown = await buyer.call("delivery", "POST", f"/vault/{key['key_id']}/reveal")
    assert shown.json()["secret"] == "WELKIN-123456789-OK"
