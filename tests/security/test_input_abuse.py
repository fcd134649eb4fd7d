"""Abusive input at every door: oversized bodies, huge key imports, deeply
nested JSON, invalid UTF-8, negative, zero and overflowing amounts and
quantities, oversized or malformed tickets, partial refunds of nothing, of
less than nothing or of more than was paid. Each is a clear 4xx in Kami's
error body (a code and a message saying why), never a 5xx, and nothing of
it is stored: no document of any service mentions the abuser's marker
afterwards, the abuser's own footprint in the databases is what it was
before, and the ticket the abuse was aimed at is as it was."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import httpx

from kami_actors import sign_up
from kami_events.mongo import connect
from kami_local import Platform
from kami_market import order_state
from tests.security.leaks import find_leaks
from tests.security.world import (
    ANONYMOUS,
    BUYER,
    OPERATOR,
    OTHER_BUYER,
    SELLER,
    SUPPORT,
    World,
    known_to_aftersales,
    open_ticket,
    pay,
    place,
)

MIB = 1024 * 1024
JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Abuse:
    name: str
    principal: str
    service: str
    method: str
    path: str
    request: dict[str, Any]
    status: int | tuple[int, ...]  # the 4xx (or 4xxs) it must get


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@dataclass(frozen=True)
class Claim:
    """A ticket of `other_buyer`'s, waiting for an agent: the target of the
    after-sales abuse (its owner's, so that only validation stands between
    the abuse and a stored message or a refund)."""

    ticket_id: str
    order_id: str
    paid: int


def abuses(world: World, marker: str, claim: Claim) -> list[Abuse]:
    offer = world.ids["offer"]
    category = world.ids["category"]
    product = {
        "name": f"{marker} 产品",
        "category_id": category,
        "kind": "game_points",
        "delivery_mode": "auto",
        "face_value": 100,
    }
    big = b'{"phone": "' + b"1" * (2 * MIB) + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b" " * (64 * 1024)

    return [
        # -- oversized bodies, declared and streamed ---------------------------------------
        Abuse(
            "2 MiB login",
            ANONYMOUS,
            "identity",
            "POST",
            "/auth/login",
            {"content": big, "headers": JSON},
            413,
        ),
        Abuse(
            "2 MiB order",
            BUYER,
            "ordering",
            "POST",
            "/orders",
            {"content": big, "headers": {**JSON, "Idempotency-Key": marker}},
            413,
        ),
        Abuse(
            "2.5 MiB streamed without a length",
            OPERATOR,
            "catalog",
            "POST",
            "/categories",
            {"content": chunks(), "headers": JSON},
            413,
        ),
        Abuse(
            "2 MiB manual delivery",
            SELLER,
            "delivery",
            "POST",
            f"/seller/deliveries/{world.ids['manual_delivery']}/keys",
            {"content": big, "headers": JSON},
            413,
        ),
        # -- huge key imports ---------------------------------------------------------------
        Abuse(
            "a 3 MiB key file",
            SELLER,
            "inventory",
            "POST",
            f"/offers/{offer}/imports",
            {
                "content": (f"{marker}-" + "K" * 60 + "\n").encode() * (3 * MIB // 100),
                "headers": {"content-type": "text/plain", "Idempotency-Key": f"{marker}-1"},
            },
            413,
        ),
        Abuse(
            "10 001 keys in one import",
            SELLER,
            "inventory",
            "POST",
            f"/offers/{offer}/imports",
            {
                "content": "".join(f"{marker}-{i:05d}\n" for i in range(10_001)).encode(),
                "headers": {"content-type": "text/plain", "Idempotency-Key": f"{marker}-2"},
            },
            413,
        ),
        Abuse(
            "a key of 10 000 characters",
            SELLER,
            "inventory",
            "POST",
            f"/offers/{offer}/imports",
            {
                "json": {"format": "txt", "content": marker + "K" * 10_000},
                "headers": {"Idempotency-Key": str(uuid4())},
            },
            201,  # the import is reported, its one line rejected: no key stored
        ),
        # -- deeply nested JSON -------------------------------------------------------------
        Abuse(
            "JSON nested 100 000 deep",
            ANONYMOUS,
            "identity",
            "POST",
            "/auth/otp",
            {"content": nested(100_000), "headers": JSON},
            (400, 422),
        ),
        Abuse(
            "JSON nested 100 000 deep",
            BUYER,
            "ordering",
            "POST",
            "/orders",
            {"content": nested(100_000), "headers": {**JSON, "Idempotency-Key": marker}},
            (400, 422),
        ),
        Abuse(
            "JSON nested 100 000 deep",
            SELLER,
            "inventory",
            "POST",
            f"/offers/{offer}/imports",
            {"content": nested(100_000), "headers": {**JSON, "Idempotency-Key": f"{marker}-4"}},
            (400, 422),
        ),
        Abuse(
            "JSON nested 1 000 deep",
            OPERATOR,
            "catalog",
            "POST",
            "/products",
            {
                "content": json.dumps(product).encode()[:-1]
                + b', "faq": '
                + b"[" * 1000
                + b'"x"'
                + b"]" * 1000
                + b"}",
                "headers": JSON,
            },
            (400, 422),
        ),
        # -- invalid UTF-8 ------------------------------------------------------------------
        Abuse(
            "invalid UTF-8 JSON",
            ANONYMOUS,
            "identity",
            "POST",
            "/auth/login",
            {"content": b'{"phone": "138\xff\xfe", "password": "x"}', "headers": JSON},
            (400, 422),
        ),
        Abuse(
            "invalid UTF-8 JSON",
            BUYER,
            "payment",
            "POST",
            "/payments",
            {"content": b'{"order_id": "\xc3\x28", "channel": "wallet"}', "headers": JSON},
            (400, 422),
        ),
        Abuse(
            "invalid UTF-8 key file",
            SELLER,
            "inventory",
            "POST",
            f"/offers/{offer}/imports",
            {
                "content": marker.encode() + b"-\xff\xfe\n",
                "headers": {"content-type": "text/plain", "Idempotency-Key": f"{marker}-5"},
            },
            422,
        ),
        Abuse(
            "invalid UTF-8 multipart key file",
            SELLER,
            "inventory",
            "POST",
            f"/offers/{offer}/imports",
            {
                "files": {"file": ("keys.txt", marker.encode() + b"-\xc3\x28\n")},
                "headers": {"Idempotency-Key": f"{marker}-6"},
            },
            422,
        ),
        Abuse(
            "invalid UTF-8 in the query",
            ANONYMOUS,
            "catalog",
            "GET",
            "/search?q=%FF%FE",
            {},
            (200, 422),
        ),
        # -- amounts ------------------------------------------------------------------------
        Abuse(
            "a negative top-up",
            BUYER,
            "payment",
            "POST",
            "/wallet/top-ups",
            {"json": {"amount": -100, "channel": "alipay"}},
            422,
        ),
        Abuse(
            "a zero top-up",
            BUYER,
            "payment",
            "POST",
            "/wallet/top-ups",
            {"json": {"amount": 0, "channel": "alipay"}},
            422,
        ),
        Abuse(
            "a top-up of 2^63",
            BUYER,
            "payment",
            "POST",
            "/wallet/top-ups",
            {"json": {"amount": 2**63, "channel": "alipay"}},
            422,
        ),
        Abuse(
            "a top-up of 10^30",
            SELLER,
            "payment",
            "POST",
            "/deposits/top-ups",
            {"json": {"amount": 10**30, "channel": "alipay"}},
            422,
        ),
        Abuse(
            "a top-up in yuan with decimals",
            BUYER,
            "payment",
            "POST",
            "/wallet/top-ups",
            {"json": {"amount": 10.5, "channel": "alipay"}},
            422,
        ),
        Abuse(
            "a negative price",
            SELLER,
            "catalog",
            "PUT",
            f"/offers/{offer}/price",
            {"json": {"unit_price": -1}},
            422,
        ),
        Abuse(
            "a price of 2^63",
            SELLER,
            "catalog",
            "PUT",
            f"/offers/{offer}/price",
            {"json": {"unit_price": 2**63}},
            422,
        ),
        Abuse(
            "a price of 10^20",
            SELLER,
            "catalog",
            "POST",
            "/offers",
            {
                "json": {
                    "product_id": world.ids["spare_product"],
                    "unit_price": 10**20,
                    "delivery_mode": "auto",
                    "max_quantity_per_order": 1,
                }
            },
            422,
        ),
        Abuse(
            "a face value of 2^64",
            OPERATOR,
            "catalog",
            "POST",
            "/products",
            {"json": {**product, "face_value": 2**64}},
            422,
        ),
        Abuse(
            "a negative face value",
            OPERATOR,
            "catalog",
            "POST",
            "/products",
            {"json": {**product, "face_value": -5}},
            422,
        ),
        # -- quantities ---------------------------------------------------------------------
        Abuse(
            "quantity 0",
            BUYER,
            "ordering",
            "POST",
            "/orders",
            {
                "json": {"offer_id": offer, "quantity": 0},
                "headers": {"Idempotency-Key": f"{marker}-q0"},
            },
            422,
        ),
        Abuse(
            "quantity -1",
            BUYER,
            "ordering",
            "POST",
            "/orders",
            {
                "json": {"offer_id": offer, "quantity": -1},
                "headers": {"Idempotency-Key": f"{marker}-q1"},
            },
            422,
        ),
        Abuse(
            "quantity 10^9",
            BUYER,
            "ordering",
            "POST",
            "/orders",
            {
                "json": {"offer_id": offer, "quantity": 10**9},
                "headers": {"Idempotency-Key": f"{marker}-q2"},
            },
            422,
        ),
        Abuse(
            "quantity 2^64",
            BUYER,
            "ordering",
            "POST",
            "/orders",
            {
                "json": {"offer_id": offer, "quantity": 2**64},
                "headers": {"Idempotency-Key": f"{marker}-q3"},
            },
            422,
        ),
        Abuse(
            "quantity over the offer's maximum",
            BUYER,
            "ordering",
            "POST",
            "/orders",
            {
                "json": {"offer_id": offer, "quantity": 1000},
                "headers": {"Idempotency-Key": f"{marker}-q4"},
            },
            422,
        ),
        Abuse(
            "1 001 keys to void",
            SELLER,
            "inventory",
            "POST",
            f"/offers/{offer}/keys/void",
            {"json": {"key_ids": [f"{marker}-{i}" for i in range(1001)]}},
            422,
        ),
        Abuse("a page of 10^9", BUYER, "delivery", "GET", "/vault?limit=1000000000", {}, 422),
        Abuse(
            "an offset of 2^64",
            BUYER,
            "payment",
            "GET",
            f"/wallet/statement?offset={2**64}",
            {},
            422,
        ),
        # -- queries a search or a page is built from (read-only: 200 or a 4xx) -----------
        *(
            Abuse(
                f"search by {query}",
                ANONYMOUS,
                "catalog",
                "GET",
                f"/search?{query}",
                {},
                (200, 422),
            )
            for query in (
                f"price_min={2**64}",
                f"face_value_max={10**30}",
                "price_min=-1",
                "q=%00%FF",
                "cursor=%FF%FE%00",
                "cursor=" + "A" * 1000,
                "category=" + "x" * 5000,  # 422: a slug is at most 64 characters
                "sort=price&sort=rating",
            )
        ),
        Abuse(
            "orders from a forged cursor",
            BUYER,
            "ordering",
            "GET",
            "/orders?cursor=eyJub3QiOiAiYSBjdXJzb3IifQ",
            {},
            (200, 400, 422),
        ),
        Abuse(
            "keys after a null byte",
            SELLER,
            "inventory",
            "GET",
            f"/offers/{offer}/keys?after=%00",
            {},
            (200, 422),
        ),
        Abuse(
            "an order id of 5 000 characters",
            BUYER,
            "ordering",
            "GET",
            "/orders/" + "o" * 5000,
            {},
            (404, 422),
        ),
        Abuse(
            "an order id with a null byte",
            BUYER,
            "payment",
            "GET",
            "/orders/%00/payment",
            {},
            (404, 422),
        ),
        *aftersales_abuses(marker, claim),
    ]


def aftersales_abuses(marker: str, claim: Claim) -> list[Abuse]:
    def ticket(**fields: Any) -> dict[str, Any]:
        opened = {"order_id": claim.order_id, "category": "other", "description": marker}
        return {"json": opened | fields, "headers": {"Idempotency-Key": f"{marker}-{uuid4()}"}}

    def message(**fields: Any) -> dict[str, Any]:
        return {"json": {"text": marker} | fields}

    def refund(amount: object) -> dict[str, Any]:
        return {"json": {"action": "refund_partial", "amount": amount, "note": marker}}

    messages = f"/tickets/{claim.ticket_id}/messages"
    resolve = f"/tickets/{claim.ticket_id}/resolve"
    image = "https://img.example.com/evidence.png"
    invalid_urls = (
        "javascript:alert(1)",
        "ftp://img.example.com/a.png",
        "http://img.example.com/a b.png",
        f"https://img.example.com/{marker}" + "x" * 500,
        "data:image/png;base64,iVBORw0KGgo=",
    )
    return [
        # -- tickets and messages -------------------------------------------------------
        Abuse(
            "a 2 MiB ticket message",
            OTHER_BUYER,
            "aftersales",
            "POST",
            messages,
            {
                "content": b'{"text": "' + marker.encode() + b"x" * (2 * MIB) + b'"}',
                "headers": JSON,
            },
            413,
        ),
        Abuse(
            "a ticket message of 2 001 characters",
            OTHER_BUYER,
            "aftersales",
            "POST",
            messages,
            message(text=marker + "长" * (2001 - len(marker))),
            422,
        ),
        Abuse(
            "an empty ticket message",
            OTHER_BUYER,
            "aftersales",
            "POST",
            messages,
            message(text="", evidence_urls=[f"https://img.example.com/{marker}.png"]),
            422,
        ),
        Abuse(
            "a ticket description of 100 000 characters",
            OTHER_BUYER,
            "aftersales",
            "POST",
            "/tickets",
            ticket(description=marker * (100_000 // len(marker))),
            422,
        ),
        Abuse(
            "11 images on a message",
            OTHER_BUYER,
            "aftersales",
            "POST",
            messages,
            message(evidence_urls=[f"{image}?{i}" for i in range(11)]),
            422,
        ),
        Abuse(
            "1 000 images on a ticket",
            OTHER_BUYER,
            "aftersales",
            "POST",
            "/tickets",
            ticket(evidence_urls=[f"{image}?{i}" for i in range(1000)]),
            422,
        ),
        *(
            Abuse(
                f"evidence at {url[:30]}",
                OTHER_BUYER,
                "aftersales",
                "POST",
                messages,
                message(evidence_urls=[image, url]),
                422,
            )
            for url in invalid_urls
        ),
        Abuse(
            "evidence that is no string",
            OTHER_BUYER,
            "aftersales",
            "POST",
            "/tickets",
            ticket(evidence_urls=[{"url": image}]),
            422,
        ),
        Abuse(
            "an unknown ticket type",
            OTHER_BUYER,
            "aftersales",
            "POST",
            "/tickets",
            ticket(category="refund_me_twice"),
            422,
        ),
        Abuse(
            "a ticket type in capitals",
            OTHER_BUYER,
            "aftersales",
            "POST",
            "/tickets",
            ticket(category="KEY_INVALID"),
            422,
        ),
        Abuse(
            "1 001 keys claimed",
            OTHER_BUYER,
            "aftersales",
            "POST",
            "/tickets",
            ticket(key_ids=[f"k{i}" for i in range(1001)]),
            422,
        ),
        Abuse(
            "a ticket with an unknown field",
            OTHER_BUYER,
            "aftersales",
            "POST",
            "/tickets",
            ticket(refund_to="attacker-wallet"),
            422,
        ),
        Abuse(
            "JSON nested 100 000 deep",
            OTHER_BUYER,
            "aftersales",
            "POST",
            "/tickets",
            {"content": nested(100_000), "headers": JSON},
            (400, 422),
        ),
        Abuse(
            "invalid UTF-8 in a message",
            OTHER_BUYER,
            "aftersales",
            "POST",
            messages,
            {"content": b'{"text": "' + marker.encode() + b'\xff\xfe"}', "headers": JSON},
            (400, 422),
        ),
        # -- an agent's partial refund ----------------------------------------------------
        Abuse("a partial refund of 0", SUPPORT, "aftersales", "POST", resolve, refund(0), 422),
        Abuse(
            "a partial refund of -100", SUPPORT, "aftersales", "POST", resolve, refund(-100), 422
        ),
        Abuse(
            "a partial refund of all that was paid",
            SUPPORT,
            "aftersales",
            "POST",
            resolve,
            refund(claim.paid),
            422,
        ),
        Abuse(
            "a partial refund of more than was paid",
            OPERATOR,
            "aftersales",
            "POST",
            resolve,
            refund(claim.paid + 1),
            422,
        ),
        Abuse(
            "a partial refund of 2^63", SUPPORT, "aftersales", "POST", resolve, refund(2**63), 422
        ),
        Abuse(
            "a partial refund of 10^30",
            OPERATOR,
            "aftersales",
            "POST",
            resolve,
            refund(10**30),
            422,
        ),
        Abuse(
            "a partial refund of 1.5 fen", SUPPORT, "aftersales", "POST", resolve, refund(1.5), 422
        ),
        Abuse(
            'a partial refund of "100"', SUPPORT, "aftersales", "POST", resolve, refund("100"), 422
        ),
        Abuse(
            "a partial refund of no amount",
            SUPPORT,
            "aftersales",
            "POST",
            resolve,
            {"json": {"action": "refund_partial", "note": marker}},
            422,
        ),
        Abuse(
            "an unknown resolution",
            SUPPORT,
            "aftersales",
            "POST",
            resolve,
            {"json": {"action": "refund_double", "note": marker}},
            422,
        ),
        Abuse(
            "a rejection without a reason",
            SUPPORT,
            "aftersales",
            "POST",
            resolve,
            {"json": {"action": "reject", "note": ""}},
            422,
        ),
        Abuse(
            "a rejection with 10 000 characters of reason",
            SUPPORT,
            "aftersales",
            "POST",
            resolve,
            {"json": {"action": "reject", "note": marker * (10_000 // len(marker))}},
            422,
        ),
        # -- queries and ids ----------------------------------------------------------------
        Abuse(
            "a queue page of 10^9", SUPPORT, "aftersales", "GET", "/queue?limit=1000000000", {}, 422
        ),
        Abuse("tickets page 0", BUYER, "aftersales", "GET", "/tickets?limit=0", {}, 422),
        Abuse(
            "a report over a year",
            OPERATOR,
            "aftersales",
            "GET",
            "/reports/issues?window=1y",
            {},
            422,
        ),
        Abuse(
            "a ticket id of 5 000 characters",
            BUYER,
            "aftersales",
            "GET",
            "/tickets/" + "t" * 5000,
            {},
            (404, 422),
        ),
        Abuse(
            "a ticket id with a null byte",
            SUPPORT,
            "aftersales",
            "GET",
            "/tickets/%00",
            {},
            (404, 422),
        ),
        Abuse(
            "a guarantee of an order id with a null byte",
            BUYER,
            "aftersales",
            "GET",
            "/orders/%00/guarantee",
            {},
            (404, 422),
        ),
    ]


async def footprint(platform: Platform, needles: list[str]) -> list[str]:
    """Where in the run's databases any of `needles` occurs."""
    client = connect(platform.mongodb_uri, app_name="kami-abuse-audit")
    found: list[str] = []
    try:
        prefix = f"{platform.database_prefix}_"
        for name in await client.list_database_names():
            if not name.startswith(prefix):
                continue
            for collection in await client[name].list_collection_names():
                async for document in client[name][collection].find():
                    where = f"{name}.{collection} {document.get('_id')}"
                    found += [hit.split(":")[0] for hit in find_leaks(document, needles, where)]
    finally:
        await client.close()
    return sorted(set(found))


async def claim(world: World) -> Claim:
    """A fresh paid order of `other_buyer`'s with a ticket about it."""
    buyer = world.people[OTHER_BUYER]
    order_id = await place(buyer, world.ids["offer"])
    await order_state(buyer, order_id, "RESERVED")
    await pay(buyer, order_id, world.payment_passwords[OTHER_BUYER])
    delivered = await order_state(buyer, order_id, "DELIVERED")
    await known_to_aftersales(buyer, order_id, "delivered")
    ticket_id = await open_ticket(buyer, order_id, "wrong_amount", "面值不对")
    return Claim(ticket_id, order_id, int(delivered["paid_amount"]))


async def test_abusive_input_is_a_clear_4xx_and_stores_nothing(audited: World) -> None:
    world = audited
    marker = f"ABUSE{uuid4().hex[:12].upper()}"
    target = await claim(world)
    ticket_before = await world.call(
        OTHER_BUYER, "aftersales", "GET", f"/tickets/{target.ticket_id}"
    )
    # A fresh buyer whose every request here is abusive: its footprint in the
    # databases must not grow.
    stranger = await sign_up(world.platform)
    before = await footprint(world.platform, [stranger.user_id])
    wrong: list[str] = []
    cases = abuses(world, marker, target)
    for abuse in cases:
        headers = {**world.headers(abuse.principal), **abuse.request.get("headers", {})}
        if abuse.principal == BUYER:
            headers["Authorization"] = f"Bearer {stranger.access_token}"
        request = {k: v for k, v in abuse.request.items() if k != "headers"}
        try:
            response = await world.client(abuse.service).request(
                abuse.method, abuse.path, headers=headers, **request
            )
        except httpx.HTTPError as exc:
            wrong.append(f"{abuse.name} ({abuse.service}): no answer: {exc!r}")
            continue
        allowed = abuse.status if isinstance(abuse.status, tuple) else (abuse.status,)
        summary = f"{abuse.name} ({abuse.service} {abuse.path[:50]}): {response.status_code}"
        if response.status_code not in allowed:
            wrong.append(f"{summary}, expected {allowed}: {response.text[:300]}")
            continue
        if response.status_code >= 400:
            error = response.json().get("error", {})
            if not (error.get("code") and error.get("message")):
                wrong.append(f"{summary} without a code and a reason: {response.text[:300]}")
    assert not wrong, "\n".join(wrong)
    # Nothing of it was stored, by any service.
    assert await footprint(world.platform, [marker]) == []
    assert await footprint(world.platform, [stranger.user_id]) == before
    # The ticket still waits for an agent, with its one message and no refund.
    ticket_after = await world.call(
        OTHER_BUYER, "aftersales", "GET", f"/tickets/{target.ticket_id}"
    )
    assert ticket_after.json() == ticket_before.json()
    assert (ticket_after.json()["state"], ticket_after.json()["compensation"]) == (
        "escalated",
        None,
    )
    assert len(ticket_after.json()["messages"]) == 1
    order = await world.call(OTHER_BUYER, "ordering", "GET", f"/orders/{target.order_id}")
    assert order.json()["refunds"] == [], order.text
