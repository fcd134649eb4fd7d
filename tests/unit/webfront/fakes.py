"""The services as the web service sees them: an httpx transport that answers
each (method, service, path) with what a test scripted, and records the calls."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from kami_webfront.settings import WebSettings

PORTS = {
    8101: "identity",
    8102: "catalog",
    8103: "inventory",
    8104: "ordering",
    8105: "payment",
    8106: "delivery",
    8107: "aftersales",
}
SESSION_KEY = base64.b64encode(bytes(range(32))).decode()

Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


def settings(**overrides: Any) -> WebSettings:
    return WebSettings(web_session_key=SecretStr(SESSION_KEY), **overrides)


def error(status: int, code: str, message: str = "refused") -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


@dataclass
class Call:
    service: str
    method: str
    path: str
    params: dict[str, str]
    headers: httpx.Headers
    body: Any


@dataclass
class FakeServices:
    """`answer("GET", "catalog", "/products/p1", {...})`: a JSON body, a
    Response, or a function of the request; a path may be a regex."""

    routes: list[tuple[str, str, re.Pattern[str], list[Answer]]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)

    def answer(self, method: str, service: str, path: str, *answers: Any) -> None:
        responses = [
            a if isinstance(a, httpx.Response) or callable(a) else httpx.Response(200, json=a)
            for a in answers
        ]
        self.routes.append((method, service, re.compile(f"^{path}$"), responses))

    def calls_to(self, service: str, path: str) -> list[Call]:
        return [c for c in self.calls if c.service == service and c.path == path]

    def handle(self, request: httpx.Request) -> httpx.Response:
        service = PORTS[request.url.port or 80]
        body = json.loads(request.content) if request.content else None
        self.calls.append(
            Call(
                service,
                request.method,
                request.url.path,
                dict(request.url.params),
                request.headers,
                body,
            )
        )
        for method, name, pattern, answers in self.routes:
            if method == request.method and name == service and pattern.match(request.url.path):
                # Each answer once, the last one from then on.
                answer = answers.pop(0) if len(answers) > 1 else answers[0]
                return answer(request) if callable(answer) else answer
        return error(404, "not_scripted", f"{request.method} {service} {request.url.path}")

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


TOKENS = {
    "user_id": "u-buyer",
    "access_token": "access-1",
    "token_type": "Bearer",
    "expires_in": 300,
    "refresh_token": "refresh-1",
    "refresh_expires_at": "2030-01-01T00:00:00+00:00",
}
CATEGORIES = [
    {
        "category_id": "games",
        "name": "游戏娱乐",
        "parent_id": None,
        "path": ["games"],
        "children": [
            {
                "category_id": "game-points",
                "name": "游戏点卡",
                "parent_id": "games",
                "path": ["games", "game-points"],
                "children": [],
            }
        ],
    },
    {
        "category_id": "life",
        "name": "生活服务",
        "parent_id": None,
        "path": ["life"],
        "children": [],
    },
]


def product_card(product_id: str = "p1", **overrides: Any) -> dict[str, Any]:
    card = {
        "product_id": product_id,
        "name": "王者荣耀 60 点券",
        "kind": "game_points",
        "category_id": "game-points",
        "category_names": ["游戏娱乐", "游戏点卡"],
        "brand": "腾讯",
        "face_value": 600,
        "delivery_mode": "auto",
        "image_url": None,
        "min_price": 560,
        "live_offers": 3,
        "in_stock": True,
        "stock": 40,
        "sales": 12,
        "rating_milli": 4800,
        "rating_count": 5,
        "demoted": False,
        "relevance": None,
    }
    return card | overrides


def order(state: str, version: int, **overrides: Any) -> dict[str, Any]:
    body = {
        "order_id": "o1",
        "state": state,
        "buyer_id": "u-buyer",
        "seller_id": "s1",
        "offer_id": "f1",
        "product_id": "p1",
        "quantity": 1,
        "unit_price": 560,
        "total": 560,
        "currency": "CNY",
        "delivery_mode": "auto",
        "buyer_fields": {},
        "key_ids": ["k1"],
        "delivered_key_ids": ["k1"] if state in ("DELIVERED", "COMPLETED") else [],
        "payment_id": None,
        "paid_amount": 0,
        "refunded_amount": 0,
        "cancel_reason": None,
        "completed_by": None,
        "refunds": [],
        "deadlines": {
            "payment_deadline": "2030-01-01T00:15:00+00:00",
            "reservation_expires_at": None,
            "delivery_deadline": None,
            "guarantee_ends_at": None,
            "next": None,
        },
        "placed_at": "2030-01-01T00:00:00+00:00",
        "updated_at": "2030-01-01T00:00:00+00:00",
        "version": version,
    }
    return body | overrides


def product_page(product_id: str = "p1") -> dict[str, Any]:
    return product_card(product_id) | {
        "aliases": [],
        "category_path": ["games", "game-points"],
        "scope": "全区全服",
        "validity_days": 365,
        "usage_rules": "登录游戏后在商城兑换",
        "binds_to_account": False,
        "required_buyer_fields": [],
        "buyer_fields": [],
        "tutorial": "打开游戏 → 商城 → 兑换",
        "faq": [],
        "image_urls": [],
    }
