"""A buyer's app that does not poll: it waits for RESERVED and for DELIVERED
with one long poll each (`GET /orders/{id}?wait_for=...`), and ordering
counts those requests' MongoDB commands apart from the saga's."""

from __future__ import annotations

from kami_actors import Person
from kami_local import Platform
from kami_market import funded_buyer, list_offer_with_keys, pay_by_wallet, place_order
from tests.e2e.metrics import scrape

REQUESTS = "kami_order_status_requests_total"
COMMANDS = "kami_order_status_read_commands_total"


async def wait_for(buyer: Person, order_id: str, state: str) -> dict[str, object]:
    response = await buyer.call(
        "ordering",
        "GET",
        f"/orders/{order_id}",
        params={"wait_for": state, "timeout": 25},
        timeout=40,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_a_buyer_waits_for_reserved_and_delivered_with_one_request_each(
    platform: Platform, operator: Person
) -> None:
    offer = await list_offer_with_keys(platform, operator, keys=2, unit_price=950)
    buyer = await funded_buyer(platform, 5000)
    before = await scrape(platform, "ordering")

    order_id = await place_order(buyer, offer, quantity=1)
    assert (await wait_for(buyer, order_id, "RESERVED"))["state"] == "RESERVED"
    paid = await pay_by_wallet(buyer, order_id)
    assert paid.status_code in (200, 201), paid.text
    delivered = await wait_for(buyer, order_id, "DELIVERED")

    assert delivered["state"] == "DELIVERED"
    assert len(delivered["delivered_key_ids"]) == 1  # type: ignore[arg-type]
    after = await scrape(platform, "ordering")
    waited = after.value(REQUESTS, waited="true") - before.value(REQUESTS, waited="true")
    assert waited == 2  # no polling: one request per state
    # At most a handful of `_id` reads each, no scans: ordering wrote this
    # order itself moments ago, so its event store mostly answers from memory.
    reads = after.series(COMMANDS)
    assert {dict(labels)["command"] for labels in reads} <= {"find"}
    assert after.value(COMMANDS) - before.value(COMMANDS) <= 20


async def test_a_bad_wait_is_refused_with_a_reason(platform: Platform, operator: Person) -> None:
    offer = await list_offer_with_keys(platform, operator, keys=1, unit_price=950)
    buyer = await funded_buyer(platform, 5000)
    order_id = await place_order(buyer, offer, quantity=1)

    for params, status, code in (
        ({"wait_for": "SHIPPED"}, 422, "invalid_request"),
        ({"wait_for": "DELIVERED", "timeout": 31}, 422, "invalid_request"),
        ({"wait_for": "DELIVERED", "timeout": 0}, 422, "invalid_request"),
        ({"timeout": 5}, 400, "timeout_without_wait_for"),
    ):
        response = await buyer.call("ordering", "GET", f"/orders/{order_id}", params=params)
        assert response.status_code == status, (params, response.text)
        assert response.json()["error"]["code"] == code
    # Someone else's order is not found, at once, whatever they wait for.
    stranger = await funded_buyer(platform, 100)
    response = await stranger.call(
        "ordering", "GET", f"/orders/{order_id}", params={"wait_for": "DELIVERED", "timeout": 25}
    )
    assert response.status_code == 404
