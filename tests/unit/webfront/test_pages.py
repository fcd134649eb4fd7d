"""The web service on fake backends: security headers, sessions, CSRF,
no-store for keys, languages, and the pages calling the right APIs."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kami_webfront.app import create_app
from kami_webfront.i18n import catalogue
from kami_webfront.session import COOKIE_NAME, Session, SessionSealer
from tests.unit.webfront.fakes import (
    CATEGORIES,
    TOKENS,
    FakeServices,
    error,
    order,
    product_card,
    product_page,
    settings,
)

STATIC = Path(__file__).parents[3] / "services" / "web" / "src" / "kami_webfront"


@pytest.fixture
def services() -> FakeServices:
    fake = FakeServices()
    fake.answer("GET", "catalog", "/categories", CATEGORIES)
    fake.answer("GET", "catalog", "/hot-picks", [{"product": product_card(), "units_sold": 9}])
    fake.answer("POST", "identity", "/auth/login", TOKENS)
    return fake


@pytest.fixture
async def web(services: FakeServices) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings(), transport=services.transport())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://web.test") as client:
        yield client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


async def logged_in(web: httpx.AsyncClient) -> str:
    """Log in through the form; the CSRF token of the new session."""
    token = csrf_of((await web.get("/login")).text)
    response = await web.post(
        "/login", data={"phone": "13900000009", "password": "pw", "csrf_token": token}
    )
    assert response.status_code == 303, response.text
    return csrf_of((await web.get("/login")).text)


# -- headers ------------------------------------------------------------------------------


async def test_every_page_has_a_self_only_content_security_policy(web: httpx.AsyncClient) -> None:
    for path in ("/", "/login", "/register", "/static/app.css"):
        response = await web.get(path)
        assert response.status_code == 200, path
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert "unsafe-inline" not in policy and "http" not in policy
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"


async def test_pages_load_no_inline_script_and_nothing_from_elsewhere(
    web: httpx.AsyncClient,
) -> None:
    html = (await web.get("/")).text
    for tag in re.findall(r"<script[^>]*>", html):
        assert re.search(r'src="/static/[^"]+"', tag), tag
    assert "<style" not in html and " style=" not in html and " on" + "click=" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    for script in re.findall(r'src="(/static/[^"]+)"', html):
        assert (STATIC / script.lstrip("/")).is_file(), script


# -- the session cookie -------------------------------------------------------------------


async def test_the_session_cookie_is_httponly_lax_and_secure_only_over_tls(
    services: FakeServices,
) -> None:
    app = create_app(settings(), transport=services.transport())
    for base, secure in (("http://web.test", False), ("https://web.test", True)):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=base
        ) as client:
            cookie = (await client.get("/login")).headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE_NAME}=")
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert ("Secure" in cookie) is secure
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://web.test"
    ) as client:
        behind_proxy = await client.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in behind_proxy.headers["set-cookie"]


async def test_the_cookie_hides_the_token_and_a_changed_cookie_is_no_session(
    web: httpx.AsyncClient, services: FakeServices
) -> None:
    await logged_in(web)
    sealed = web.cookies[COOKIE_NAME]
    assert "access-1" not in sealed and "refresh-1" not in sealed
    services.answer(
        "GET",
        "identity",
        "/me",
        {
            "user_id": "u-buyer",
            "phone_masked": "139****0009",
            "roles": ["buyer"],
            "tier": "phone",
            "limits": None,
            "shop_name": None,
        },
    )
    services.answer("GET", "identity", "/tiers", [])
    services.answer(
        "GET",
        "payment",
        "/wallet",
        {
            "buyer_id": "u-buyer",
            "balance": 100,
            "currency": "CNY",
            "has_payment_password": False,
            "locked_until": None,
            "daily_payment_limit": 50000,
            "spent_today": 0,
        },
    )
    assert (await web.get("/me")).status_code == 200
    assert services.calls_to("identity", "/me")[0].headers["authorization"] == "Bearer access-1"

    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    web.cookies.set(COOKIE_NAME, flipped, domain="web.test")
    response = await web.get("/me")
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


def test_a_session_sealed_with_another_key_does_not_open() -> None:
    mine, theirs = SessionSealer(b"a" * 32, 3600), SessionSealer(b"b" * 32, 3600)
    session = Session(user_id="u", access_token="t", refresh_token="r", access_expires_at=1.0)
    assert mine.open(mine.seal(session)) == session
    assert theirs.open(mine.seal(session)) is None
    assert mine.open("not-a-cookie") is None


def test_a_session_older_than_its_max_age_does_not_open() -> None:
    sealer = SessionSealer(b"a" * 32, 60)
    old = Session(issued_at=0.0)
    assert sealer.open(sealer.seal(old)) is None


# -- CSRF ---------------------------------------------------------------------------------


async def test_a_post_without_the_csrf_token_is_refused(
    web: httpx.AsyncClient, services: FakeServices
) -> None:
    token = csrf_of((await web.get("/login")).text)
    form = {"phone": "13900000009", "password": "pw"}
    assert (await web.post("/login", data=form)).status_code == 403
    assert (await web.post("/login", data=form | {"csrf_token": "x" + token})).status_code == 403
    assert services.calls_to("identity", "/auth/login") == []

    accepted = await web.post("/login", data=form | {"csrf_token": token})
    assert accepted.status_code == 303
    assert len(services.calls_to("identity", "/auth/login")) == 1


async def test_the_csrf_token_of_another_session_is_refused(
    services: FakeServices, web: httpx.AsyncClient
) -> None:
    app = create_app(settings(), transport=services.transport())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://web.test"
    ) as attacker:
        their_token = csrf_of((await attacker.get("/login")).text)
    await web.get("/login")
    refused = await web.post(
        "/login", data={"phone": "13900000009", "password": "pw", "csrf_token": their_token}
    )
    assert refused.status_code == 403


async def test_login_starts_a_new_csrf_token(web: httpx.AsyncClient) -> None:
    before = csrf_of((await web.get("/login")).text)
    after = await logged_in(web)
    assert after != before
    refused = await web.post("/logout", data={"csrf_token": before})
    assert refused.status_code == 403


async def test_htmx_posts_send_the_token_as_a_header(
    web: httpx.AsyncClient, services: FakeServices
) -> None:
    token = await logged_in(web)
    services.answer("GET", "delivery", "/vault", {"keys": []})
    assert (await web.post("/orders/o1/keys/reveal")).status_code == 403
    ok = await web.post("/orders/o1/keys/reveal", headers={"X-CSRF-Token": token})
    assert ok.status_code == 200


# -- keys ---------------------------------------------------------------------------------


async def test_revealed_keys_are_never_stored_and_only_shown_after_the_post(
    web: httpx.AsyncClient, services: FakeServices
) -> None:
    token = await logged_in(web)
    services.answer(
        "GET",
        "delivery",
        "/vault",
        {
            "keys": [
                {
                    "key_id": "k1",
                    "order_id": "o1",
                    "offer_id": "f1",
                    "product_id": "p1",
                    "mode": "auto",
                    "masked": "****9XYZ",
                }
            ]
        },
    )
    services.answer(
        "POST",
        "delivery",
        "/vault/k1/reveal",
        {"key_id": "k1", "order_id": "o1", "secret": "KAMI-SECRET-9XYZ", "expires_at": None},
    )
    services.answer("GET", "ordering", "/orders/o1", order("DELIVERED", 5))
    services.answer("GET", "ordering", "/orders/o1/timeline", {"order_id": "o1", "events": []})
    services.answer("GET", "catalog", "/products/p1", product_page())
    services.answer(
        "GET",
        "aftersales",
        "/orders/o1/guarantee",
        {
            "order_id": "o1",
            "stage": "delivered",
            "within_guarantee": True,
            "guarantee_ends_at": "2030-01-01T00:15:00+00:00",
            "arrival_confirmed": False,
            "refundable": 560,
            "settled": False,
            "open_ticket_id": None,
            "replacement_available": False,
        },
    )
    page = await web.get("/orders/o1")
    assert page.status_code == 200
    assert "****9XYZ" in page.text and "KAMI-SECRET-9XYZ" not in page.text
    assert services.calls_to("delivery", "/vault/k1/reveal") == []

    revealed = await web.post("/orders/o1/keys/reveal", data={"csrf_token": token})
    assert revealed.status_code == 200
    assert "KAMI-SECRET-9XYZ" in revealed.text
    assert revealed.headers["cache-control"] == "no-store"
    assert services.calls_to("delivery", "/vault/k1/reveal")[0].headers["authorization"] == (
        "Bearer access-1"
    )


async def test_an_export_is_a_no_store_attachment_from_delivery(
    web: httpx.AsyncClient, services: FakeServices
) -> None:
    token = await logged_in(web)
    services.answer(
        "GET",
        "delivery",
        "/vault/export",
        httpx.Response(
            200,
            text='"key_id","secret"\n"k1","KAMI-1"\n',
            headers={
                "content-type": "text/csv; charset=utf-8",
                "content-disposition": 'attachment; filename="kami-keys-o1.csv"',
            },
        ),
    )
    exported = await web.post("/orders/o1/keys/export", data={"csrf_token": token, "format": "csv"})
    assert exported.status_code == 200
    assert exported.headers["cache-control"] == "no-store"
    assert exported.headers["content-disposition"] == 'attachment; filename="kami-keys-o1.csv"'
    assert "KAMI-1" in exported.text
    (call,) = services.calls_to("delivery", "/vault/export")
    assert call.params == {"format": "csv", "order_id": "o1"}


# -- languages ----------------------------------------------------------------------------


async def test_chinese_by_default_and_english_after_the_switch(web: httpx.AsyncClient) -> None:
    home = await web.get("/")
    assert '<html lang="zh-CN">' in home.text and "热门推荐" in home.text
    switched = await web.post(
        "/language",
        data={"language": "en", "next": "/search?q=x", "csrf_token": csrf_of(home.text)},
    )
    assert switched.status_code == 303 and switched.headers["location"] == "/search?q=x"
    english = await web.get("/")
    assert '<html lang="en">' in english.text and "Popular now" in english.text
    assert "热门推荐" not in english.text


async def test_the_switch_sends_nowhere_but_this_site(web: httpx.AsyncClient) -> None:
    token = csrf_of((await web.get("/")).text)
    for elsewhere in ("https://evil.example/", "//evil.example/"):
        response = await web.post(
            "/language", data={"language": "en", "next": elsewhere, "csrf_token": token}
        )
        assert response.headers["location"] == "/"


def test_both_catalogues_have_the_same_messages() -> None:
    chinese, english = catalogue("zh-CN"), catalogue("en")
    assert set(chinese) == set(english)
    assert all(chinese.values()) and all(english.values())


# -- pages and the APIs they call ----------------------------------------------------------


async def test_search_sends_the_chinese_query_and_filters_in_fen(
    web: httpx.AsyncClient, services: FakeServices
) -> None:
    services.answer(
        "GET",
        "catalog",
        "/search",
        {"items": [product_card()], "next_cursor": None, "sort": "relevance"},
    )
    page = await web.get(
        "/search",
        params={
            "q": "王者 点券",
            "face_min": "5",
            "price_max": "12.5",
            "in_stock": "true",
            "sort": "price_asc",
        },
    )
    assert page.status_code == 200
    (call,) = services.calls_to("catalog", "/search")
    assert call.params["q"] == "王者 点券"
    assert (call.params["face_value_min"], call.params["price_max"]) == ("500", "1250")
    assert (call.params["in_stock"], call.params["sort"]) == ("true", "price_asc")
    assert "face_value_max" not in call.params
    assert "王者荣耀 60 点券" in page.text and "3 家在售" in page.text and "¥5.60" in page.text


async def test_a_page_that_needs_a_login_sends_to_it_and_back(web: httpx.AsyncClient) -> None:
    response = await web.get("/orders?cursor=abc")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/orders%3Fcursor%3Dabc"


async def test_placing_an_order_is_idempotent_per_form(
    web: httpx.AsyncClient, services: FakeServices
) -> None:
    token = await logged_in(web)
    services.answer("POST", "ordering", "/orders", order("PLACED", 1))
    form = {"offer_id": "f1", "quantity": "2", "request_id": "form-1234", "csrf_token": token}
    first = await web.post("/orders", data=form)
    again = await web.post("/orders", data=form)
    assert first.headers["location"] == again.headers["location"] == "/orders/o1"
    keys = {c.headers["idempotency-key"] for c in services.calls_to("ordering", "/orders")}
    assert len(keys) == 1 and keys.pop().endswith("form-1234")
    assert services.calls_to("ordering", "/orders")[0].body == {"offer_id": "f1", "quantity": 2}


async def test_paying_waits_for_payment_to_learn_of_the_reservation(
    web: httpx.AsyncClient, services: FakeServices
) -> None:
    token = await logged_in(web)
    services.answer(
        "POST",
        "payment",
        "/payments",
        error(404, "order_not_found"),
        {"payment_id": "pay1", "status": "confirmed", "pay": None},
    )
    paid = await web.post(
        "/orders/o1/pay",
        data={"channel": "wallet", "payment_password": "135790", "csrf_token": token},
    )
    assert paid.status_code == 303 and paid.headers["location"] == "/orders/o1"
    calls = services.calls_to("payment", "/payments")
    assert len(calls) == 2
    assert calls[1].body == {"order_id": "o1", "channel": "wallet", "payment_password": "135790"}


async def test_the_order_stream_pushes_each_change_then_says_done(
    web: httpx.AsyncClient, services: FakeServices
) -> None:
    await logged_in(web)
    waits: list[str] = []

    def ordering(request: httpx.Request) -> httpx.Response:
        wanted = request.url.params.get("wait_for")
        if wanted:
            waits.append(wanted)
        body = {
            None: order("RESERVED", 2),
            "PAID": order("PAID", 3),
            "DELIVERED": order("DELIVERED", 4),
            "COMPLETED": order("COMPLETED", 6),
        }[wanted]
        return httpx.Response(200, json=body)

    services.answer("GET", "ordering", "/orders/o1", ordering)
    services.answer("GET", "ordering", "/orders/o1/timeline", {"order_id": "o1", "events": []})
    services.answer("GET", "catalog", "/products/p1", product_page())
    services.answer("GET", "delivery", "/vault", {"keys": []})
    services.answer(
        "GET",
        "aftersales",
        "/orders/o1/guarantee",
        {
            "order_id": "o1",
            "stage": "delivered",
            "within_guarantee": True,
            "guarantee_ends_at": None,
            "arrival_confirmed": False,
            "refundable": 560,
            "settled": False,
            "open_ticket_id": None,
            "replacement_available": False,
        },
    )
    async with web.stream("GET", "/orders/o1/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join([chunk async for chunk in stream.aiter_text()])
    assert waits == ["PAID", "DELIVERED", "COMPLETED"]
    events = [block for block in text.split("\n\n") if "event:" in block]
    assert [next(x for x in block.splitlines() if x.startswith("event:")) for block in events] == [
        "event: order",
        "event: order",
        "event: order",
        "event: done",
    ]
    assert 'data-state="DELIVERED"' in events[1]
    assert json.loads(events[3].splitlines()[-1].removeprefix("data: ")) == {"state": "COMPLETED"}


async def test_a_fast_refund_opens_a_refund_claim_for_the_order(
    web: httpx.AsyncClient, services: FakeServices
) -> None:
    token = await logged_in(web)
    services.answer("POST", "aftersales", "/tickets", {"ticket_id": "t1"})
    response = await web.post(
        "/orders/o1/fast-refund", data={"reason": "key_invalid", "csrf_token": token}
    )
    assert response.headers["location"] == "/tickets/t1"
    (call,) = services.calls_to("aftersales", "/tickets")
    assert call.body == {
        "order_id": "o1",
        "category": "key_invalid",
        "description": "卡密无效",
        "preferred_remedy": "refund",
    }


async def test_a_backend_refusal_is_shown_as_a_page_with_its_message(
    web: httpx.AsyncClient, services: FakeServices
) -> None:
    services.answer("GET", "catalog", "/products/nope", error(404, "not_found", "没有这个商品"))
    services.answer("GET", "catalog", "/products/nope/offers", error(404, "not_found", "x"))
    response = await web.get("/products/nope")
    assert response.status_code == 404
    assert "没有这个商品" in response.text


async def test_the_stream_sends_a_change_made_before_it_opened(
    web: httpx.AsyncClient, services: FakeServices
) -> None:
    """The page showed version 1 (PLACED); by the time the browser opens the
    stream the order is RESERVED (version 2): that is sent at once, not after
    the next change. A reconnecting browser's Last-Event-ID counts the same."""
    await logged_in(web)

    def ordering(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("wait_for"):
            return httpx.Response(200, json=order("CANCELLED", 3))
        return httpx.Response(200, json=order("RESERVED", 2))

    services.answer("GET", "ordering", "/orders/o1", ordering)
    services.answer("GET", "ordering", "/orders/o1/timeline", {"order_id": "o1", "events": []})
    services.answer("GET", "catalog", "/products/p1", product_page())
    services.answer(
        "GET",
        "payment",
        "/wallet",
        {
            "buyer_id": "u-buyer",
            "balance": 0,
            "currency": "CNY",
            "has_payment_password": False,
            "locked_until": None,
            "daily_payment_limit": 50000,
            "spent_today": 0,
        },
    )

    async def events(**kwargs: Any) -> list[str]:
        async with web.stream("GET", "/orders/o1/events", **kwargs) as stream:
            text = "".join([chunk async for chunk in stream.aiter_text()])
        return [b for b in text.split("\n\n") if "event:" in b]

    sent = await events(params={"since": "1"})
    assert sent[0].startswith("id: 2\nevent: order") and 'data-state="RESERVED"' in sent[0]
    assert sent[1].startswith("id: 3\nevent: order") and sent[2].startswith("event: done")
    # Seen version 2 already: only the change after it.
    again = await events(params={"since": "1"}, headers={"Last-Event-ID": "2"})
    assert [b.split("\n")[1] for b in again] == ["event: order", 'data: {"state": "CANCELLED"}']
