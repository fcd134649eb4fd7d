"""A reseller over the real platform (issue 15): an operator approves it and
issues a credential; its signed order is paid from its prepaid balance at its
price, delivered, its keys fetched, and its signed webhook received (after a
failed first attempt, retried) and verified by a receiver in this test; a
replayed, a tampered and a stale request are refused with 401 and a reason.

The requests are signed by docs/reseller_client.py, the example the README
shows, so the example cannot rot.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import uuid4

import httpx
import pytest

from kami_actors import Person
from kami_local import Platform
from kami_market import funded_buyer, list_offer_with_keys, until

CLIENT_PATH = Path(__file__).resolve().parents[2] / "docs" / "reseller_client.py"


def example_client() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reseller_client", CLIENT_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Receiver:
    """A reseller's webhook endpoint: answers 500 to the first `fail_first`
    deliveries, then 200; keeps every request it got."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = 500 if len(receiver.received) < receiver.fail_first else 200
                receiver.received.append((dict(self.headers.items()), body, status))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"try later")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/kami/webhooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(fail_first=1) as instance:
        yield instance


class Signed:
    """A reseller's signed calls, made with the example client's signer."""

    def __init__(self, platform: Platform, key_id: str, secret: str) -> None:
        self.base_url = platform.url("reseller")
        self.key_id, self.secret = key_id, secret
        self.client = example_client()

    def headers(self, method: str, path: str, body: bytes, **kwargs: Any) -> dict[str, str]:
        made: dict[str, str] = self.client.signed_headers(
            self.key_id, self.secret, method, path, body, **kwargs
        )
        return made | {"Content-Type": "application/json"}

    async def call(self, method: str, path: str, payload: Any = None) -> httpx.Response:
        body = b"" if payload is None else json.dumps(payload).encode()
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as http:
            return await http.request(
                method, path, content=body, headers=self.headers(method, path, body)
            )

    async def raw(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as http:
            return await http.request(method, path, content=body, headers=headers)


async def approved_reseller(platform: Platform, operator: Person, user: Person) -> Signed:
    approved = await until(
        lambda: operator.call("reseller", "POST", "/resellers", json={"user_id": user.user_id}),
        lambda r: r.status_code != 404,
        what="the reseller service to know the user (UserRegistered)",
    )
    assert approved.status_code == 201, approved.text
    reseller_id = approved.json()["reseller_id"]
    issued = await operator.call("reseller", "POST", f"/resellers/{reseller_id}/credentials")
    assert issued.status_code == 201, issued.text
    assert issued.headers["cache-control"] == "no-store"
    # Only an operator approves.
    refused = await user.call("reseller", "POST", "/resellers", json={"user_id": user.user_id})
    assert refused.status_code == 403
    return Signed(platform, issued.json()["key_id"], issued.json()["secret"])


async def test_a_resellers_signed_order_is_delivered_and_its_webhook_verified(
    platform: Platform, operator: Person, receiver: Receiver
) -> None:
    offer = await list_offer_with_keys(platform, operator, keys=3, unit_price=1000)
    user = await funded_buyer(platform, 5000)
    reseller = await approved_reseller(platform, operator, user)

    listed = await until(
        lambda: reseller.call("GET", "/v1/catalogue?limit=200"),
        lambda r: (
            r.status_code == 200 and offer.offer_id in {o["offer_id"] for o in r.json()["offers"]}
        ),
        what="the offer in the reseller's catalogue",
    )
    assert listed.status_code == 200, listed.text
    markup = await reseller.call("PUT", f"/v1/markups/{offer.offer_id}", {"markup_bp": 1500})
    assert markup.status_code == 200, markup.text
    hook = await reseller.call("PUT", "/v1/webhook", {"url": receiver.url})
    assert hook.status_code == 200, hook.text
    catalogue = await reseller.call("GET", "/v1/catalogue?limit=200")
    entry = next(o for o in catalogue.json()["offers"] if o["offer_id"] == offer.offer_id)
    assert (entry["offer_price"], entry["price"]) == (1000, 1150)

    order_body = {
        "client_order_id": f"shop-{uuid4().hex[:8]}",
        "offer_id": offer.offer_id,
        "quantity": 2,
        "customer_ref": "customer-7",
    }
    placed = await reseller.call("POST", "/v1/orders", order_body)
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert (order["offer_total"], order["reseller_total"], order["margin"]) == (2000, 2300, 300)
    order_id = order["order_id"]
    # The same client order id again is the same order.
    again = await reseller.call("POST", "/v1/orders", order_body)
    assert (again.status_code, again.json()["order_id"]) == (200, order_id)

    delivered = await until(
        lambda: reseller.call("GET", f"/v1/orders/{order_id}"),
        lambda r: r.json().get("state") in ("delivered", "cancelled", "refunded"),
        timeout=90,
        what="the reseller's order delivered",
    )
    assert delivered.json()["state"] == "delivered", delivered.text
    keys = await reseller.call("GET", f"/v1/orders/{order_id}/keys")
    assert keys.status_code == 200, keys.text
    secrets = [k["secret"] for k in keys.json()["keys"]]
    assert len(set(secrets)) == 2 and set(secrets) <= set(offer.keys)

    # Paid from the prepaid balance at the reseller's price.
    wallet = await user.call("payment", "GET", "/wallet")
    assert wallet.json()["balance"] == 5000 - 2300

    # The webhook: refused once by the receiver, retried, then delivered.
    deadline = time.monotonic() + 60
    while not any(status == 200 for _, _, status in receiver.received):
        assert time.monotonic() < deadline, f"no webhook delivered: {receiver.received}"
        await asyncio.sleep(0.5)
    client = example_client()
    headers, body, _ = next(r for r in receiver.received if r[2] == 200)
    signature = next(v for k, v in headers.items() if k.lower() == "x-kami-webhook-signature")
    assert client.verify_webhook(reseller.secret, signature, body)
    assert not client.verify_webhook(reseller.secret, signature, body.replace(b"2300", b"2301"))
    sent = json.loads(body)
    assert sent["type"] == "order.delivered"
    assert (sent["order"]["order_id"], sent["order"]["customer_ref"]) == (order_id, "customer-7")
    assert len(receiver.received) >= 2 and receiver.received[0][2] == 500

    webhooks = await reseller.call("GET", "/v1/webhooks")
    (listed_hook,) = [w for w in webhooks.json()["webhooks"] if w["order_id"] == order_id]
    detail = await until(
        lambda: reseller.call("GET", f"/v1/webhooks/{listed_hook['webhook_id']}"),
        lambda r: r.json()["status"] == "delivered",
        what="the webhook's attempts recorded",
    )
    attempts = detail.json()["attempts"]
    assert [a["status_code"] for a in attempts][:2] == [500, 200]
    assert not attempts[0]["succeeded"] and attempts[1]["succeeded"]
    # Re-sent on request: another attempt, delivered again.
    resent = await reseller.call("POST", f"/v1/webhooks/{listed_hook['webhook_id']}/resend")
    assert resent.status_code == 202, resent.text
    redone = await until(
        lambda: reseller.call("GET", f"/v1/webhooks/{listed_hook['webhook_id']}"),
        lambda r: len(r.json()["attempts"]) >= 3 and r.json()["status"] == "delivered",
        what="the re-sent webhook delivered",
    )
    assert redone.json()["attempts"][2]["status_code"] == 200


async def test_replayed_tampered_and_stale_requests_are_refused(
    platform: Platform, operator: Person
) -> None:
    user = await funded_buyer(platform, 100)
    reseller = await approved_reseller(platform, operator, user)
    body = json.dumps({"markup_bp": 700}).encode()
    headers = reseller.headers("PUT", "/v1/markups/default", body)

    first = await reseller.raw("PUT", "/v1/markups/default", body, headers)
    assert first.status_code == 200, first.text
    assert first.json()["default_markup_bp"] == 700

    replayed = await reseller.raw("PUT", "/v1/markups/default", body, headers)
    assert replayed.status_code == 401
    assert replayed.json()["error"]["code"] == "nonce_replayed"

    signed_for = json.dumps({"markup_bp": 100}).encode()
    tampered_headers = reseller.headers("PUT", "/v1/markups/default", signed_for)
    tampered = await reseller.raw(
        "PUT", "/v1/markups/default", json.dumps({"markup_bp": 90000}).encode(), tampered_headers
    )
    assert tampered.status_code == 401
    assert tampered.json()["error"]["code"] == "signature_mismatch"

    query_headers = reseller.headers("GET", "/v1/catalogue?limit=5", b"")
    changed_query = await reseller.raw("GET", "/v1/catalogue?limit=50", b"", query_headers)
    assert changed_query.json()["error"]["code"] == "signature_mismatch"

    stale_headers = reseller.headers("GET", "/v1/me", b"", timestamp=int(time.time()) - 301)
    stale = await reseller.raw("GET", "/v1/me", b"", stale_headers)
    assert stale.status_code == 401
    assert stale.json()["error"]["code"] == "timestamp_outside_window"

    unsigned = await reseller.raw("GET", "/v1/me", b"", {})
    assert unsigned.json()["error"]["code"] == "signature_headers_missing"
    # Nothing the refused requests asked for happened.
    me = await reseller.call("GET", "/v1/me")
    assert me.status_code == 200 and me.json()["default_markup_bp"] == 700

    # The example client as the README runs it: its own HTTP call, and its command line.
    client = reseller.client
    status, answer = await asyncio.to_thread(
        client.call, reseller.base_url, reseller.key_id, reseller.secret, "GET", "/v1/me"
    )
    assert (status, answer["default_markup_bp"]) == (200, 700)
    argv = ["--base-url", reseller.base_url, "--key-id", reseller.key_id]
    argv += ["--secret", reseller.secret, "PUT", "/v1/markups/default", '{"markup_bp": 800}']
    assert await asyncio.to_thread(client.main, argv) == 0
    me = await reseller.call("GET", "/v1/me")
    assert me.json()["default_markup_bp"] == 800
