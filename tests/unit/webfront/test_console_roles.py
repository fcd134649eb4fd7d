"""The seller center and the operator console on fake services: who gets in
(roles from identity's `GET /me`), CSRF on their forms, what they send to
the services, and every page rendering in both languages."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from kami_webfront.app import create_app
from kami_webfront.i18n import _LOCALES
from kami_webfront.routes.seller import ImportChunk, chunk_import_id, fen
from kami_webfront.settings import BACKENDS, WebSettings

PORTS = {8101 + n: service for n, service in enumerate(BACKENDS)}
ROLES = {
    "13800000001": ("buyer",),
    "13800000002": ("buyer", "seller"),
    "13800000003": ("support",),
    "13800000004": ("buyer", "operator"),
}
NOW = "2026-12-07T03:00:00+00:00"


@dataclass
class FakeServices:
    """Answers like the services, records what the web service asked."""

    calls: list[tuple[str, str, str, Any]] = field(default_factory=list)
    tokens: list[tuple[str, str, str]] = field(default_factory=list)
    application: dict[str, Any] | None = None
    down: set[str] = field(default_factory=set)
    # Identity's word on each phone's roles now (an approval changes it).
    roles: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(ROLES))

    def tokens_for(self, phone: str) -> dict[str, Any]:
        return {
            "user_id": f"user-{phone}",
            "access_token": _token(phone, self.roles.get(phone, ())),
            "refresh_token": f"refresh-{phone}",
            "expires_in": 300,
            "refresh_expires_at": NOW,
            "token_type": "Bearer",
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        service = PORTS[request.url.port or 80]
        body = json.loads(request.content) if request.content else None
        self.calls.append((service, request.method, request.url.path, body))
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        self.tokens.append((service, request.url.path, token))
        phone = str(_claims(token).get("sub", ""))
        roles = self.roles.get(phone, ())
        answer = self.answer(service, request.method, request.url.path, body, roles)
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, json=answer)

    def sent(self, service: str, method: str, path: str) -> list[Any]:
        return [b for s, m, p, b in self.calls if (s, m, p) == (service, method, path)]

    def answer(
        self, service: str, method: str, path: str, body: Any, roles: tuple[str, ...]
    ) -> Any:
        if (service, path) == ("identity", "/auth/login"):
            return self.tokens_for(body["phone"])
        if (service, path) == ("identity", "/auth/refresh"):
            return self.tokens_for(body["refresh_token"].removeprefix("refresh-"))
        if (service, path) == ("identity", "/me"):
            return {
                "user_id": "u",
                "roles": list(roles),
                "shop_name": "小店",
                "tier": "real_name",
                "seller_application": self.application,
            }
        if (service, path) == ("identity", "/me/seller-application"):
            self.application = {"status": "pending", "category": None, **body}
            return self.application
        if path == "/dead-letters" and service in self.down:
            return httpx.Response(
                503, json={"error": {"code": "kafka_unreachable", "message": "Kafka is down"}}
            )
        if path == "/dead-letters":
            return {
                "service": service,
                "topic": f"kami.{service}.dead-letter.v1",
                "dead_letters": [_letter(service)] if service == "payment" else [],
            }
        if path == "/dead-letters/redrive":
            return {"service": service, "sent": 1, "skipped": 0, "outcomes": []}
        if (service, path) == ("inventory", "/offers/offer-1/imports"):
            return httpx.Response(201, json=_import_report(body))
        return FAKE_GETS.get((service, path), {})


def _token(phone: str, roles: tuple[str, ...]) -> str:
    """Shaped like identity's JWT (the web service reads the roles claim)."""
    claims = json.dumps({"sub": phone, "roles": list(roles)}).encode()
    return "e30." + base64.urlsafe_b64encode(claims).decode().rstrip("=") + ".sig"


def _claims(token: str) -> dict[str, Any]:
    try:
        payload = token.split(".")[1]
        found: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    except (IndexError, ValueError):
        return {}
    return found


def _letter(service: str) -> dict[str, Any]:
    return {
        "service": service,
        "id": "0:7",
        "event_type": "OrderPaid",
        "event_id": "e-1",
        "error": "RuntimeError: boom",
        "source_topic": "kami.ordering.order.v1",
        "source_partition": "0",
        "source_offset": "3",
        "failed_at": NOW,
        "attempts": "5",
        "redriven_at": None,
    }


def _import_report(body: dict[str, Any]) -> dict[str, Any]:
    lines = body["content"].splitlines()
    rejected = [
        {"line": n, "reason": "empty", "message": "empty"}
        for n, line in enumerate(lines, start=1)
        if not line.strip()
    ]
    return {
        "import_id": body["import_id"],
        "offer_id": "offer-1",
        "format": body["format"],
        "imported": len(lines) - len(rejected),
        "duplicates": 0,
        "rejected": len(rejected),
        "earliest_expires_at": None,
        "rejected_lines": rejected,
    }


OFFER = {
    "offer_id": "offer-1",
    "product_id": "p-1",
    "seller_id": "user-13800000002",
    "status": "listed",
    "delist_reason": None,
    "live": True,
    "unit_price": 9_50,
    "delivery_mode": "auto",
    "manual_delivery_sla_minutes": None,
    "guarantee_window_minutes": 1440,
    "min_quantity_per_order": 1,
    "max_quantity_per_order": 5,
    "stock": 3,
    "sales": 1,
    "rating_milli": 0,
    "rating_count": 0,
}
STOCK = {
    "offer_id": "offer-1",
    "available": 3,
    "reserved": 0,
    "sold": 1,
    "blocked": 0,
    "voided": 0,
    "expired": 0,
}
LINE = {
    "at": NOW,
    "account": "seller:x:deposit",
    "account_type": "seller_deposit",
    "seq": 1,
    "change": 50_000,
    "balance": 50_000,
    "purpose": "deposit_top_up",
    "order_id": None,
    "movement_id": "m-1",
}
TICKET = {
    "ticket_id": "t-1",
    "order_id": "order-9",
    "category": "key_invalid",
    "state": "escalated",
    "level": "agent",
    "priority": 1,
    "opened_at": NOW,
    "sla_due_at": NOW,
    "resolution": None,
}
FAKE_GETS: dict[tuple[str, str], Any] = {
    ("catalog", "/sellers/me/offers"): [OFFER],
    ("catalog", "/categories"): [
        {"category_id": "games", "name": "游戏", "parent_id": None, "path": ["games"]}
    ],
    ("catalog", "/search"): {
        "items": [{"product_id": "p-1", "name": "游戏点卡 100", "face_value": 10_000}],
        "next_cursor": None,
        "sort": "relevance",
    },
    ("inventory", "/offers"): [
        {
            "offer_id": "offer-1",
            "product_id": "p-1",
            "delivery_mode": "auto",
            "listed": True,
            "stock": STOCK,
        }
    ],
    ("inventory", "/offers/offer-1/stock"): STOCK,
    ("payment", "/deposits/me"): {
        "seller_id": "s",
        "category": None,
        "balance": 50_000,
        "minimum": 100_000,
        "below_minimum": True,
        "shortfall": 50_000,
        "owed": 0,
        "seller_balance": 1_900,
        "currency": "CNY",
    },
    ("payment", "/sellers/me/statement"): {"lines": [LINE], "limit": 50, "offset": 0},
    ("payment", "/ledger/trial-balance"): {
        "totals": {"buyer_wallet": -100, "escrow": 100},
        "total": 0,
        "balanced": True,
        "movements_in_flight": 0,
    },
    ("delivery", "/seller/deliveries"): {
        "deliveries": [
            {
                "delivery_id": "d-1",
                "order_id": "order-5",
                "offer_id": "offer-2",
                "product_id": "p-2",
                "buyer_id": "b",
                "quantity": 2,
                "buyer_fields": {"account": "player-1"},
                "paid_at": NOW,
                "deadline": NOW,
            }
        ]
    },
    ("aftersales", "/seller/tickets"): {"tickets": [TICKET | {"offer_id": "offer-1"}]},
    ("aftersales", "/queue"): {"tickets": [TICKET]},
    ("aftersales", "/reports/flagged-sellers"): {
        "sellers": [
            {
                "seller_id": "seller-7",
                "offer_ids": ["offer-1"],
                "flags": [{"reason": "high_claim_rate", "offer_id": None, "severity": "warning"}],
            }
        ]
    },
    ("aftersales", "/reports/sellers/seller-7"): {
        "seller_id": "seller-7",
        "window_days": 30,
        "rates": {
            "orders": 10,
            "tickets": {"key_invalid": 3},
            "claim_rate_bp": 3000,
            "invalid_key_rate_bp": 3000,
        },
        "flags": [{"reason": "high_claim_rate", "offer_id": None, "severity": "warning"}],
    },
    ("aftersales", "/reports/issues"): {
        "window": "24h",
        "issues": [{"product_id": "p-1", "category": "key_invalid", "count": 4}],
    },
    ("identity", "/seller-applications"): {
        "applications": [
            {
                "user_id": "applicant-1",
                "shop_name": "卡密小铺",
                "category": "games",
                "status": "pending",
                "submitted_at": NOW,
                "decided_at": None,
                "rejection_reason": None,
                "phone_masked": "138****0005",
                "tier": "real_name",
                "suspended": False,
            }
        ]
    },
    ("identity", "/verifications/pending"): {
        "verifications": [
            {
                "user_id": "u-2",
                "request_id": "r-1",
                "phone_masked": "138****0006",
                "tier": "real_name",
                "attempts": 2,
                "submitted_at": NOW,
                "next_attempt_at": NOW,
            }
        ]
    },
    ("identity", "/users/suspended"): {
        "users": [
            {
                "user_id": "u-3",
                "phone_masked": "138****0007",
                "roles": ["buyer"],
                "reason": "fraud_suspected",
                "detail": "拒付",
                "suspended_by": "op",
                "until": None,
            }
        ]
    },
    ("ordering", "/sagas/past-deadline"): {
        "as_of": NOW,
        "overdue_after_seconds": 60.0,
        "sagas": [
            {
                "order_id": "order-3",
                "state": "RESERVED",
                "deadline": "payment",
                "due_at": NOW,
                "overdue_seconds": 120.0,
            }
        ],
    },
}


@dataclass
class Browser:
    client: httpx.AsyncClient
    services: FakeServices

    async def log_in(self, phone: str) -> None:
        form = await self.client.get("/login")
        await self.client.post(
            "/login",
            data={"phone": phone, "password": "pw-123456", "csrf_token": self.csrf(form.text)},
        )

    @staticmethod
    def csrf(html: str) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert found, "the page has no CSRF field"
        return found.group(1)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    services = FakeServices()
    settings = WebSettings(
        web_session_key=base64.b64encode(os.urandom(32)).decode(), web_cookie_secure=False
    )
    app = create_app(settings, transport=httpx.MockTransport(services))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://web") as client:
        yield Browser(client, services)


SELLER_PAGES = (
    "/seller",
    "/seller/offers/new",
    "/seller/offers/offer-1",
    "/seller/offers/offer-1/stock",
    "/seller/deposit",
    "/seller/settlements",
    "/seller/settlements?account=deposit",
    "/seller/tickets",
    "/seller/deliveries",
)
OPERATOR_PAGES = (
    "/ops/applications",
    "/ops/verifications",
    "/ops/suspended",
    "/ops/sagas",
    "/ops/dead-letters",
    "/ops/ledger",
    "/ops/flagged",
    "/ops/flagged/seller-7",
    "/ops/issues",
    "/ops/issues?window=7d",
)


async def test_a_visitor_who_is_not_logged_in_is_sent_to_log_in(browser: Browser) -> None:
    for path in ("/seller", "/ops", "/ops/dead-letters"):
        response = await browser.client.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == f"/login?next={path}"


async def test_a_buyer_gets_a_403_page_in_the_seller_center_and_the_console(
    browser: Browser,
) -> None:
    await browser.log_in("13800000001")
    for path in (*SELLER_PAGES, "/ops", "/ops/queue", *OPERATOR_PAGES):
        response = await browser.client.get(path)
        assert response.status_code == 403, path
        wanted = "/seller/apply" if path.startswith("/seller") else "角色之一：运营"
        assert wanted in response.text, path
    # Nothing but the profile was asked of the services on the buyer's behalf.
    assert {(s, p) for s, _, p, _ in browser.services.calls} <= {
        ("identity", "/auth/login"),
        ("identity", "/me"),
    }


async def test_a_seller_gets_into_the_seller_center_only(browser: Browser) -> None:
    await browser.log_in("13800000002")
    for path in SELLER_PAGES:
        response = await browser.client.get(path)
        assert response.status_code == 200, (path, response.text[:500])
    for path in ("/ops", "/ops/queue", *OPERATOR_PAGES):
        assert (await browser.client.get(path)).status_code == 403, path


async def test_a_support_agent_gets_the_ticket_queue_and_no_operator_page(
    browser: Browser,
) -> None:
    await browser.log_in("13800000003")
    assert (await browser.client.get("/ops")).status_code == 200
    queue = await browser.client.get("/ops/queue")
    assert queue.status_code == 200 and "order-9" in queue.text
    for path in (*OPERATOR_PAGES, *SELLER_PAGES):
        assert (await browser.client.get(path)).status_code == 403, path


async def test_an_operator_gets_every_console_page_in_both_languages(browser: Browser) -> None:
    await browser.log_in("13800000004")
    for path in ("/ops", "/ops/queue", *OPERATOR_PAGES):
        response = await browser.client.get(path)
        assert response.status_code == 200, (path, response.text[:500])
    dead = await browser.client.get("/ops/dead-letters")
    assert "RuntimeError: boom" in dead.text and 'value="0:7"' in dead.text
    assert "死信队列" in dead.text
    browser.client.cookies.set("kami_lang", "en")
    english = await browser.client.get("/ops/dead-letters")
    assert "Dead letters" in english.text and "Redrive" in english.text
    for path in SELLER_PAGES:
        assert (await browser.client.get(path)).status_code == 403, path


async def test_console_forms_need_the_csrf_token_and_send_what_the_operator_chose(
    browser: Browser,
) -> None:
    await browser.log_in("13800000004")
    page = await browser.client.get("/ops/applications")
    assert "卡密小铺" in page.text
    forged = await browser.client.post(
        "/ops/applications/applicant-1/approve", data={"shop_name": "卡密小铺"}
    )
    assert forged.status_code == 403
    assert browser.services.sent("identity", "POST", "/users/applicant-1/seller-approval") == []

    token = browser.csrf(page.text)
    approved = await browser.client.post(
        "/ops/applications/applicant-1/approve",
        data={"shop_name": "卡密小铺", "category": "games", "csrf_token": token},
    )
    assert approved.status_code == 303
    assert approved.headers["location"] == "/ops/applications?done=approved"
    assert browser.services.sent("identity", "POST", "/users/applicant-1/seller-approval") == [
        {"shop_name": "卡密小铺", "category": "games"}
    ]
    rejected = await browser.client.post(
        "/ops/applications/applicant-1/reject", data={"reason": "shop_name", "csrf_token": token}
    )
    assert rejected.status_code == 303
    [reason] = browser.services.sent(
        "identity", "POST", "/seller-applications/applicant-1/rejection"
    )
    assert reason == {"reason": "店铺名不合规"}

    redriven = await browser.client.post(
        "/ops/dead-letters/payment/redrive", data={"letter_id": "0:7", "csrf_token": token}
    )
    assert redriven.status_code == 200 and "payment" in redriven.text
    assert browser.services.sent("payment", "POST", "/dead-letters/redrive") == [{"ids": ["0:7"]}]
    everything = await browser.client.post(
        "/ops/dead-letters/delivery/redrive", data={"letter_id": "all", "csrf_token": token}
    )
    assert everything.status_code == 200
    assert browser.services.sent("delivery", "POST", "/dead-letters/redrive") == [{"all": True}]
    unknown = await browser.client.post(
        "/ops/dead-letters/shipping/redrive", data={"letter_id": "all", "csrf_token": token}
    )
    assert unknown.status_code == 404


async def test_an_import_chunk_goes_to_inventory_once_with_the_files_line_numbers(
    browser: Browser,
) -> None:
    await browser.log_in("13800000002")
    page = await browser.client.get("/seller/offers/offer-1")
    token = browser.csrf(page.text)
    upload = re.search(r'data-upload-id="([^"]+)"', page.text)
    assert upload
    chunk = {
        "upload_id": upload.group(1),
        "format": "txt",
        "first_line": 501,
        "content": "KEY-A\n\nKEY-C\n",
    }
    forged = await browser.client.post("/seller/offers/offer-1/imports", json=chunk)
    assert forged.status_code == 403
    sent = await browser.client.post(
        "/seller/offers/offer-1/imports", json=chunk, headers={"X-CSRF-Token": token}
    )
    assert sent.status_code == 200, sent.text
    report = sent.json()
    assert (report["imported"], report["rejected"]) == (2, 1)
    assert report["rejected_lines"] == [{"line": 502, "reason": "empty", "reason_text": "空行"}]
    again = await browser.client.post(
        "/seller/offers/offer-1/imports", json=chunk, headers={"X-CSRF-Token": token}
    )
    assert again.status_code == 200
    first, second = browser.services.sent("inventory", "POST", "/offers/offer-1/imports")
    assert first["import_id"] == second["import_id"]  # a retry is the same import
    assert first["content"] == "KEY-A\n\nKEY-C\n"


def test_an_import_id_changes_with_the_upload_the_place_and_the_content() -> None:
    base = ImportChunk(upload_id="upload-0001", format="txt", first_line=1, content="K\n")
    ids = {
        chunk_import_id("offer-1", base),
        chunk_import_id("offer-2", base),
        chunk_import_id("offer-1", base.model_copy(update={"upload_id": "upload-0002"})),
        chunk_import_id("offer-1", base.model_copy(update={"first_line": 2})),
        chunk_import_id("offer-1", base.model_copy(update={"content": "L\n"})),
    }
    assert len(ids) == 5
    assert all(re.fullmatch(r"web-[0-9a-f]{40}", i) for i in ids)


def test_prices_in_yuan_become_exact_fen() -> None:
    assert [fen("9.5"), fen("9.50"), fen("0.01"), fen("120")] == [950, 950, 1, 12_000]


def test_the_console_catalogues_have_the_same_keys_in_both_languages() -> None:
    zh = json.loads((_LOCALES / "console" / "zh-CN.json").read_text("utf-8"))
    en = json.loads((_LOCALES / "console" / "en.json").read_text("utf-8"))
    assert set(zh) == set(en)
    assert all(zh.values()) and all(en.values())


async def test_seller_forms_send_the_price_in_fen_pause_resume_and_deliver(
    browser: Browser,
) -> None:
    await browser.log_in("13800000002")
    page = await browser.client.get("/seller/offers/offer-1")
    assert 'action="/seller/offers/offer-1/pause"' in page.text  # listed: it can be paused
    token = browser.csrf(page.text)
    post = browser.client.post
    assert (
        await post("/seller/offers/offer-1/price", data={"unit_price_yuan": "12.5"})
    ).status_code == 403
    priced = await post(
        "/seller/offers/offer-1/price", data={"unit_price_yuan": "12.5", "csrf_token": token}
    )
    assert priced.status_code == 303
    assert browser.services.sent("catalog", "PUT", "/offers/offer-1/price") == [
        {"unit_price": 1250}
    ]
    not_money = await post(
        "/seller/offers/offer-1/price", data={"unit_price_yuan": "1e3", "csrf_token": token}
    )
    assert not_money.status_code == 422
    assert len(browser.services.sent("catalog", "PUT", "/offers/offer-1/price")) == 1

    await post("/seller/offers/offer-1/pause", data={"csrf_token": token})
    assert browser.services.sent("catalog", "POST", "/offers/offer-1/withdraw") == [None]
    await post("/seller/offers/offer-1/resume", data={"csrf_token": token})
    [relisted] = browser.services.sent("catalog", "POST", "/offers")
    assert relisted["product_id"] == "p-1" and relisted["unit_price"] == 950
    assert relisted["max_quantity_per_order"] == 5

    delivered = await post(
        "/seller/deliveries/d-1/keys",
        data={"keys": " KEY-1 \n\nKEY-2\n", "csrf_token": token},
    )
    assert delivered.status_code == 303
    assert browser.services.sent("delivery", "POST", "/seller/deliveries/d-1/keys") == [
        {"keys": ["KEY-1", "KEY-2"]}
    ]


async def test_a_buyer_applies_to_sell_from_the_web_and_sees_it_pending(browser: Browser) -> None:
    await browser.log_in("13800000001")
    form = await browser.client.get("/seller/apply")
    assert form.status_code == 200 and 'data-testid="apply-form"' in form.text
    assert '<option value="games"' in form.text
    applied = await browser.client.post(
        "/seller/apply",
        data={"shop_name": "新店", "category": "games", "csrf_token": browser.csrf(form.text)},
    )
    assert applied.status_code == 303 and applied.headers["location"] == "/seller/apply"
    assert browser.services.sent("identity", "POST", "/me/seller-application") == [
        {"shop_name": "新店", "category": "games"}
    ]
    status = await browser.client.get("/seller/apply")
    assert 'data-status="pending"' in status.text and "正在等待运营审核" in status.text


async def test_a_seller_is_sent_from_the_application_to_the_seller_center(
    browser: Browser,
) -> None:
    await browser.log_in("13800000002")
    response = await browser.client.get("/seller/apply")
    assert response.status_code == 303 and response.headers["location"] == "/seller"


async def test_a_seller_approved_after_logging_in_gets_a_token_with_the_role_at_once(
    browser: Browser,
) -> None:
    await browser.log_in("13800000001")
    assert (await browser.client.get("/seller")).status_code == 403
    assert browser.services.sent("identity", "POST", "/auth/refresh") == []
    browser.services.roles["13800000001"] = ("buyer", "seller")  # an operator approved it

    home = await browser.client.get("/seller")
    assert home.status_code == 200, home.text[:300]
    assert browser.services.sent("identity", "POST", "/auth/refresh") == [
        {"refresh_token": "refresh-13800000001"}
    ]
    [(_, _, used)] = [
        t for t in browser.services.tokens if t[:2] == ("catalog", "/sellers/me/offers")
    ]
    assert "seller" in _claims(used)["roles"]  # the services were asked with the new token
    await browser.client.get("/seller/deposit")
    assert len(browser.services.sent("identity", "POST", "/auth/refresh")) == 1  # kept


async def test_a_service_that_cannot_read_its_dead_letters_does_not_hide_the_others(
    browser: Browser,
) -> None:
    browser.services.down.add("ordering")
    await browser.log_in("13800000004")
    page = await browser.client.get("/ops/dead-letters")
    assert page.status_code == 200
    ordering = page.text.split('data-testid="dlq-ordering"')[1].split("</section>")[0]
    assert "暂时无法读取" in ordering and "Kafka is down" in ordering
    payment = page.text.split('data-testid="dlq-payment"')[1].split("</section>")[0]
    assert "RuntimeError: boom" in payment


async def test_the_header_links_to_the_areas_the_visitor_may_open(browser: Browser) -> None:
    expected = {
        "13800000001": (False, False),
        "13800000002": (True, False),
        "13800000003": (False, True),
        "13800000004": (False, True),
    }
    for phone, (seller_link, console_link) in expected.items():
        await browser.log_in(phone)
        page = (await browser.client.get("/ops/queue")).text  # a 403 page for some
        assert ('href="/seller"' in page) is seller_link, phone
        assert ('href="/ops"' in page) is console_link, phone
