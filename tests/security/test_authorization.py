"""The authorization matrix (matrix.py) against the running services: every
endpoint × every principal gets exactly the status the matrix says, owned
things stay with their owners, and the matrix covers every route. And what
no matrix cell can say: an agent is also a buyer, and decides no ticket
about an order of their own."""

from __future__ import annotations

import httpx
import pytest

from kami_local import Platform, available_services
from kami_market import order_state
from tests.security.matrix import MATRIX, Entry
from tests.security.world import (
    OPERATOR,
    SUPPORT,
    World,
    fund_wallet,
    known_to_aftersales,
    open_ticket,
    pay,
    place,
    set_payment_password,
)


def route_table(platform: Platform) -> set[tuple[str, str, str]]:
    """Every (service, method, path) the running services publish."""
    routes = set()
    for service in available_services():
        if service == "web":
            continue  # HTML pages over these APIs, no API of its own (tests/unit/webfront)
        document = httpx.get(f"{platform.url(service)}/openapi.json", timeout=30).json()
        for path, operations in document["paths"].items():
            routes |= {(service, method.upper(), path) for method in operations}
    return routes


def test_every_route_has_an_entry_and_every_entry_a_route(platform: Platform) -> None:
    routes = route_table(platform)
    listed = [entry.key for entry in MATRIX]
    assert len(listed) == len(set(listed)), "an endpoint is in the matrix twice"
    missing = sorted(routes - set(listed))
    stale = sorted(set(listed) - routes)
    assert not missing, f"endpoints with no entry in tests/security/matrix.py: {missing}"
    assert not stale, f"matrix entries for routes that no longer exist: {stale}"


def _ordered(entry: Entry) -> list[tuple[str, int]]:
    # Refusals first, then successes: an owner's change must not decide
    # what a non-owner gets.
    return sorted(entry.expect.items(), key=lambda item: 200 <= item[1] < 300)


@pytest.mark.parametrize("entry", MATRIX, ids=lambda entry: entry.name)
async def test_who_may_do_what(entry: Entry, world: World) -> None:
    private = entry.private(world)
    wrong: list[str] = []
    for principal, expected in _ordered(entry):
        request = entry.request(world)
        path = entry.path_of(principal, world)
        response = await world.call(principal, entry.service, entry.method, path, **request)
        if response.status_code != expected:
            wrong.append(
                f"{principal}: {response.status_code} (expected {expected}) {response.text[:300]}"
            )
        if response.status_code >= 400 and response.status_code != 404:
            # Every refusal says why, in Kami's error body (channels' own
            # callback answers excepted: the channel reads those).
            if entry.route.startswith("/callbacks/"):
                continue
            assert response.json()["error"]["code"], response.text
        if principal not in entry.visible_to:
            leaked = [value for value in private if value in response.text]
            if leaked:
                wrong.append(f"{principal} sees another's {leaked}")
    assert not wrong, f"{entry.name}:\n" + "\n".join(wrong)


async def test_an_agent_decides_no_ticket_about_their_own_order(world: World) -> None:
    """Support would otherwise refund itself: its own claim is another agent's."""
    agent = world.people[SUPPORT]
    await fund_wallet(agent, 5_000)
    password = await set_payment_password(agent, world.secrets)
    order_id = await place(agent, world.ids["offer"])
    await order_state(agent, order_id, "RESERVED")
    await pay(agent, order_id, password)
    await order_state(agent, order_id, "DELIVERED")
    await known_to_aftersales(agent, order_id, "delivered")
    ticket_id = await open_ticket(agent, order_id, "wrong_product", "买错了")

    resolve = f"/tickets/{ticket_id}/resolve"
    for action in ({"action": "refund_full"}, {"action": "refund_partial", "amount": 100}):
        own = await world.call(SUPPORT, "aftersales", "POST", resolve, json=action)
        assert (own.status_code, own.json()["error"]["code"]) == (403, "own_ticket"), own.text
    ticket = await world.call(SUPPORT, "aftersales", "GET", f"/tickets/{ticket_id}")
    assert (ticket.json()["state"], ticket.json()["compensation"]) == ("escalated", None)

    other = await world.call(
        OPERATOR, "aftersales", "POST", resolve, json={"action": "reject", "note": "与描述一致"}
    )
    assert other.status_code == 200 and other.json()["resolution"] == "rejected", other.text
