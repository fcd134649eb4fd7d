"""Replacement keys from the pool and deposit minimums per seller category
(issue 6) across the services as processes, each test followed by the
DESIGN §9 audit (the `operator` fixture): every delivered key, replacements
included, was reserved or allocated for its order, and the ledger balances.

Keys carry the simulated issuer's markers: `INVALID` in a key makes the
issuer call it invalid; plain keys are unknown to it.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from kami_actors import Person, approved_seller, sign_up
from kami_local import Platform
from kami_market import (
    Offer,
    funded_buyer,
    funded_deposit,
    list_offer_with_keys,
    order_state,
    until,
)
from tests.e2e.test_aftersales import (
    PRICE,
    delivered_order,
    deposit,
    invalid_keys,
    open_ticket,
    settled,
    support_agent,
    wallet,
)

# Inventory's default expiry margin: keys expiring sooner are never sold.
MARGIN = timedelta(days=1)


def plain_keys(n: int) -> list[str]:
    return [f"HOK-SPARE-{uuid4().hex[:12].upper()}" for _ in range(n)]


async def add_keys(offer: Offer, secrets: list[str], expires_at: datetime | None = None) -> None:
    """The seller imports more keys into the offer's pool."""
    body: dict[str, Any] = {"import_id": str(uuid4()), "format": "txt"}
    body["content"] = "\n".join(secrets)
    if expires_at is not None:
        body["expires_at"] = expires_at.isoformat()
    imported = await offer.seller.call(
        "inventory", "POST", f"/offers/{offer.offer_id}/imports", json=body
    )
    assert imported.status_code == 201 and imported.json()["imported"] == len(secrets), (
        imported.text
    )


async def replacement_available(buyer: Person, order_id: str) -> None:
    """After-sales has seen the pool's new stock (inventory's StockChanged)."""
    await until(
        lambda: buyer.call("aftersales", "GET", f"/orders/{order_id}/guarantee"),
        lambda r: r.status_code == 200 and r.json()["replacement_available"] is True,
        what="after-sales to see a key to replace with",
    )


async def vault_keys(buyer: Person, order_id: str) -> list[str]:
    listed = await buyer.call("delivery", "GET", "/vault", params={"order_id": order_id})
    assert listed.status_code == 200, listed.text
    return [k["key_id"] for k in listed.json()["keys"]]


async def ticket_resolved(person: Person, ticket_id: str) -> dict[str, Any]:
    response = await until(
        lambda: person.call("aftersales", "GET", f"/tickets/{ticket_id}"),
        lambda r: r.status_code == 200 and r.json()["state"] == "resolved",
        what=f"ticket {ticket_id} to be resolved",
    )
    return dict(response.json())


async def assert_replaced_in_vault(
    platform: Platform, buyer: Person, order_id: str, faulty: str, new: str, secrets: list[str]
) -> None:
    """The new key, and only it, is in the buyer's vault, revealable by the
    buyer alone (audited by delivery); the faulty key is void."""
    await until(
        lambda: buyer.call("delivery", "GET", "/vault", params={"order_id": order_id}),
        lambda r: [k["key_id"] for k in r.json()["keys"]] == [new],
        what="the vault to hold the new key alone",
    )
    revealed = await buyer.call("delivery", "POST", f"/vault/{new}/reveal")
    assert revealed.status_code == 200, revealed.text
    assert revealed.json()["secret"] in secrets
    stranger = await sign_up(platform)
    assert (await stranger.call("delivery", "POST", f"/vault/{new}/reveal")).status_code == 404
    gone = await buyer.call("delivery", "POST", f"/vault/{faulty}/reveal")
    assert (gone.status_code, gone.json()["error"]["code"]) == (410, "key_voided")
    told = await until(
        lambda: buyer.call("delivery", "GET", "/messages"),
        lambda r: any(m["kind"] == "key_replaced" for m in r.json()["messages"]),
        what="the buyer to be told of the replacement",
    )
    notice = next(m for m in told.json()["messages"] if m["kind"] == "key_replaced")
    assert order_id in notice["body"] and not any(s in notice["body"] for s in secrets)


async def assert_no_money_moved(
    buyer: Person, seller: Person, order_id: str, deposit_balance: int
) -> None:
    order = (await buyer.call("ordering", "GET", f"/orders/{order_id}")).json()
    assert (order["state"], order["refunds"], order["refunded_amount"]) == ("DELIVERED", [], 0)
    assert await wallet(buyer) == 5_000 - PRICE
    held = await deposit(seller)
    assert (held["balance"], held["owed"]) == (deposit_balance, 0)
    lines = (await seller.call("payment", "GET", "/sellers/me/statement?account=deposit")).json()
    assert [line["purpose"] for line in lines["lines"] if line["purpose"] == "refund"] == []


async def stock(offer: Offer, **expected: int) -> dict[str, Any]:
    response = await until(
        lambda: offer.seller.call("inventory", "GET", f"/offers/{offer.offer_id}/stock"),
        lambda r: all(r.json()[state] == n for state, n in expected.items()),
        what=f"the pool's stock to be {expected}",
    )
    return dict(response.json())


# -- replacement keys ------------------------------------------------------------------------


async def test_an_automatic_replacement_gives_the_buyer_a_working_key_and_moves_no_money(
    platform: Platform, operator: Person
) -> None:
    offer = await list_offer_with_keys(platform, operator, secrets=invalid_keys(1))
    await funded_deposit(offer.seller, 200_000)
    buyer = await funded_buyer(platform, 5_000)
    order_id = await delivered_order(buyer, offer)
    await settled(buyer, order_id, True)  # the seller has the money already
    [faulty] = await vault_keys(buyer, order_id)
    spares = plain_keys(2)
    await add_keys(offer, spares)
    await replacement_available(buyer, order_id)

    ticket = await open_ticket(buyer, order_id, "key_invalid", preferred_remedy="replacement")

    assert (ticket["state"], ticket["preferred_remedy"], ticket["compensation"]) == (
        "replacing",
        "replacement",
        None,
    )
    assert ticket["replacement"]["key_ids"] == [faulty]
    done = await ticket_resolved(buyer, ticket["ticket_id"])
    assert (done["resolution"], done["automatic"], done["compensation"]) == (
        "key_replaced",
        True,
        None,
    )
    assert done["replacement"]["status"] == "delivered"
    [new] = done["replacement"]["new_key_ids"]
    assert new != faulty
    await assert_replaced_in_vault(platform, buyer, order_id, faulty, new, spares)
    await stock(offer, available=1, sold=1, voided=1, reserved=0)
    await assert_no_money_moved(buyer, offer.seller, order_id, 200_000)
    # A second claim may name the new key (after-sales knows what the buyer holds).
    facts = (await buyer.call("aftersales", "GET", f"/orders/{order_id}/guarantee")).json()
    assert (facts["open_ticket_id"], facts["refundable"]) == (None, PRICE)


async def test_an_agent_resolves_a_ticket_with_a_replacement_key(
    platform: Platform, operator: Person
) -> None:
    offer = await list_offer_with_keys(
        platform, operator, secrets=[f"HOK-PLAIN-{uuid4().hex[:12].upper()}"]
    )
    await funded_deposit(offer.seller, 200_000)
    buyer = await funded_buyer(platform, 5_000)
    order_id = await delivered_order(buyer, offer)
    [faulty] = await vault_keys(buyer, order_id)
    # The issuer does not know the key: an agent decides.
    ticket = await open_ticket(buyer, order_id, "key_invalid", preferred_remedy="replacement")
    assert (ticket["state"], ticket["level"]) == ("escalated", "agent")
    agent = await support_agent(platform)
    path = f"/tickets/{ticket['ticket_id']}/resolve"

    empty = await agent.call("aftersales", "POST", path, json={"action": "replace"})
    assert (empty.status_code, empty.json()["error"]["code"]) == (409, "out_of_stock")
    refused = await buyer.call("aftersales", "POST", path, json={"action": "replace"})
    assert refused.status_code == 403
    spares = plain_keys(1)
    await add_keys(offer, spares)
    approved = await until(
        lambda: agent.call("aftersales", "POST", path, json={"action": "replace", "note": "换新"}),
        lambda r: r.status_code != 409,
        what="after-sales to see the seller's new key",
    )

    assert approved.status_code == 200, approved.text
    assert (approved.json()["state"], approved.json()["replacement"]["status"]) in {
        ("replacing", "approved"),
        ("resolved", "delivered"),  # the key arrived before the answer was written
    }
    done = await ticket_resolved(buyer, ticket["ticket_id"])
    assert (done["resolution"], done["automatic"]) == ("key_replaced", False)
    assert done["resolved_by"] == agent.user_id
    assert done["messages"][-1]["text"] == "换新"
    [new] = done["replacement"]["new_key_ids"]
    await assert_replaced_in_vault(platform, buyer, order_id, faulty, new, spares)
    await stock(offer, available=0, sold=1, voided=1, reserved=0)
    await assert_no_money_moved(buyer, offer.seller, order_id, 200_000)
    queue = (await agent.call("aftersales", "GET", "/queue")).json()["tickets"]
    assert ticket["ticket_id"] not in [t["ticket_id"] for t in queue]
    timeline = (await agent.call("aftersales", "GET", f"/tickets/{ticket['ticket_id']}")).json()
    steps = [e["event_type"] for e in timeline["timeline"]]
    for step in ("ReplacementApproved", "ReplacementKeysAllocated", "KeyReplaced"):
        assert step in steps, steps


async def test_a_pool_that_runs_dry_before_the_allocation_refunds_the_buyer_instead(
    platform: Platform, operator: Person
) -> None:
    offer = await list_offer_with_keys(platform, operator, secrets=invalid_keys(1))
    await funded_deposit(offer.seller, 200_000)
    buyer = await funded_buyer(platform, 5_000)
    order_id = await delivered_order(buyer, offer)
    await settled(buyer, order_id, True)
    # The only spare key stops being sellable shortly: it then expires within
    # the margin inventory keeps, so no allocation may take it.
    sellable_until = datetime.now(UTC) + timedelta(seconds=45)
    await add_keys(offer, plain_keys(1), expires_at=sellable_until + MARGIN)
    await replacement_available(buyer, order_id)

    # Inventory is away while after-sales decides on what it last counted.
    platform.stop("inventory")
    try:
        ticket = await open_ticket(buyer, order_id, "key_invalid", preferred_remedy="replacement")
        assert ticket["state"] == "replacing", ticket
        await asyncio.sleep(max(0.0, (sellable_until - datetime.now(UTC)).total_seconds()) + 1)
    finally:
        started = time.monotonic()
        platform.start("inventory")
        platform.wait_ready("inventory")
        assert time.monotonic() - started < 60

    done = await ticket_resolved(buyer, ticket["ticket_id"])
    assert (done["resolution"], done["automatic"]) == ("refund_full", True)
    assert (done["replacement"]["status"], done["replacement"]["failure"]) == (
        "unavailable",
        "out_of_stock",
    )
    assert done["compensation"]["amount"] == PRICE
    refunded = await order_state(buyer, order_id, "REFUNDED")
    assert (refunded["refunds"][-1]["reason"], refunded["refunds"][-1]["source"]) == (
        "claim_upheld",
        "seller_deposit",
    )
    await until(
        lambda: buyer.call("payment", "GET", "/wallet"),
        lambda r: r.json()["balance"] == 5_000,
        what="the refund to reach the wallet",
    )
    await until(
        lambda: offer.seller.call("payment", "GET", "/deposits/me"),
        lambda r: r.json()["balance"] == 200_000 - PRICE,
        what="the refund drawn from the deposit",
    )
    # The faulty key voided by the refund, the spare blocked near expiry, nothing sold anew.
    await stock(offer, available=0, sold=0, voided=1, blocked=1)
    await until(
        lambda: buyer.call("delivery", "GET", "/vault", params={"order_id": order_id}),
        lambda r: r.json()["keys"] == [],
        what="the refunded key to leave the vault",
    )


# -- deposit minimums per seller category ----------------------------------------------------


async def test_sellers_of_different_categories_are_held_to_their_own_deposit_minimums(
    platform: Platform, operator: Person
) -> None:
    premium_seller = await approved_seller(platform, operator, "高端卡铺", category="e2e-premium")
    plain_seller = await approved_seller(platform, operator, "平价卡铺")
    premium = await list_offer_with_keys(
        platform, operator, secrets=invalid_keys(1), seller=premium_seller
    )
    plain = await list_offer_with_keys(platform, operator, keys=1, seller=plain_seller)
    await funded_deposit(premium.seller, 3_000)
    await funded_deposit(plain.seller, 3_000 - PRICE)

    held = await deposit(premium.seller)
    assert (held["category"], held["minimum"], held["below_minimum"]) == (
        "e2e-premium",
        2_500,  # KAMI_PAYMENT_DEPOSIT_MINIMUMS of the e2e platform
        False,
    )
    other = await deposit(plain.seller)
    assert (other["category"], other["minimum"]) == (None, 1_000)  # the default

    # An upheld claim draws one price from the premium seller's deposit: it is
    # left with what the other seller holds, under its own minimum only.
    buyer = await funded_buyer(platform, 5_000)
    order_id = await delivered_order(buyer, premium)
    await settled(buyer, order_id, True)
    ticket = await open_ticket(buyer, order_id, "key_invalid")
    assert ticket["resolution"] == "refund_full"
    below = await until(
        lambda: premium.seller.call("payment", "GET", "/deposits/me"),
        lambda r: r.json()["balance"] == 3_000 - PRICE,
        what="the refund drawn from the premium seller's deposit",
    )
    assert (below.json()["below_minimum"], below.json()["shortfall"]) == (True, 2_500 - 2_050)
    delisted = await until(
        lambda: operator.call("catalog", "GET", f"/offers/{premium.offer_id}"),
        lambda r: r.json()["status"] == "delisted",
        what="the premium seller's offer to be delisted",
    )
    assert delisted.json()["delist_reason"] == "deposit_below_minimum"

    same = await deposit(plain.seller)
    assert (same["balance"], same["below_minimum"]) == (3_000 - PRICE, False)
    listed = await operator.call("catalog", "GET", f"/offers/{plain.offer_id}")
    assert listed.json()["status"] == "listed"
    # Topping up to its own minimum relists the premium seller.
    await funded_deposit(premium.seller, 450)
    await until(
        lambda: operator.call("catalog", "GET", f"/offers/{premium.offer_id}"),
        lambda r: r.json()["status"] == "listed",
        what="the premium seller's offer to be listed again",
    )
