"""A purchase across all services as separate processes, over HTTP, with
the invariants of DESIGN §9 (1) and (2) audited after each test."""

from __future__ import annotations

from kami_actors import Person
from kami_local import Platform
from kami_market import (
    funded_buyer,
    list_offer_with_keys,
    order_state,
    pay_by_wallet,
    place_order,
    until,
)


async def test_buy_a_key_with_the_wallet_and_confirm_arrival(
    platform: Platform, operator: Person
) -> None:
    offer = await list_offer_with_keys(platform, operator, keys=3, unit_price=950)
    buyer = await funded_buyer(platform, 5000)

    order_id = await place_order(buyer, offer, quantity=2)
    reserved = await order_state(buyer, order_id, "RESERVED")
    assert reserved["total"] == 1900

    paid = await pay_by_wallet(buyer, order_id)
    assert paid.status_code in (200, 201), paid.text
    await order_state(buyer, order_id, "DELIVERED")

    vault = await buyer.call("delivery", "GET", "/vault", params={"order_id": order_id})
    assert vault.status_code == 200, vault.text
    keys = vault.json()["keys"]
    assert len(keys) == 2
    revealed = []
    for key in keys:
        shown = await buyer.call("delivery", "POST", f"/vault/{key['key_id']}/reveal")
        assert shown.status_code == 200, shown.text
        revealed.append(shown.json()["secret"])
    assert len(set(revealed)) == 2
    assert set(revealed) <= set(offer.keys)

    # Nobody else sees the buyer's keys or order.
    stranger = await funded_buyer(platform, 100)
    assert (
        await stranger.call("delivery", "POST", f"/vault/{keys[0]['key_id']}/reveal")
    ).status_code == 404
    assert (await stranger.call("ordering", "GET", f"/orders/{order_id}")).status_code == 404

    arrival = await buyer.call("delivery", "POST", f"/orders/{order_id}/arrival")
    assert arrival.status_code in (200, 201, 202), arrival.text
    await order_state(buyer, order_id, "COMPLETED")

    wallet = await buyer.call("payment", "GET", "/wallet")
    assert wallet.json()["balance"] == 5000 - 1900
    stock = await offer.seller.call("inventory", "GET", f"/offers/{offer.offer_id}/stock")
    assert stock.json()["available"] == 1
    assert stock.json()["sold"] == 2
    timeline = await buyer.call("ordering", "GET", f"/orders/{order_id}/timeline")
    types = [entry["event_type"] for entry in timeline.json()["events"]]
    for expected in (
        "OrderPlaced",
        "KeyReserved",
        "PaymentConfirmed",
        "KeyDelivered",
        "OrderCompleted",
    ):
        assert expected in types, types


async def test_out_of_stock_cancels_and_moves_no_money(
    platform: Platform, operator: Person
) -> None:
    offer = await list_offer_with_keys(platform, operator, keys=1)
    buyer = await funded_buyer(platform, 5000)
    order_id = await place_order(buyer, offer, quantity=2)
    cancelled = await order_state(buyer, order_id, "CANCELLED")
    assert cancelled["cancel_reason"] == "out_of_stock"
    refused = await pay_by_wallet(buyer, order_id)
    assert 400 <= refused.status_code < 500
    wallet = await buyer.call("payment", "GET", "/wallet")
    assert wallet.json()["balance"] == 5000


async def test_buyer_cancels_before_paying_and_the_keys_return_to_stock(
    platform: Platform, operator: Person
) -> None:
    offer = await list_offer_with_keys(platform, operator, keys=2)
    buyer = await funded_buyer(platform, 5000)
    order_id = await place_order(buyer, offer, quantity=2)
    await order_state(buyer, order_id, "RESERVED")
    cancelled = await buyer.call("ordering", "POST", f"/orders/{order_id}/cancel")
    assert cancelled.status_code in (200, 202), cancelled.text
    await order_state(buyer, order_id, "CANCELLED")
    await until(
        lambda: offer.seller.call("inventory", "GET", f"/offers/{offer.offer_id}/stock"),
        lambda r: r.json()["available"] == 2 and r.json()["reserved"] == 0,
        what="the released keys back in stock",
    )
