"""`kami demo buy`: one purchase as the demo buyer, through the public APIs only.

The local platform's seed (`deploy/local/seed_demo.py market`) registers the
demo buyer under a fixed phone with these passwords and funds its wallet, so
the command needs nothing copied from the seed's output. Each step is what
a buyer's app would do: log in, pick an offer in stock, place the order
(with an Idempotency-Key), wait until the keys are reserved, pay from the
wallet, wait until delivered, reveal the key from the vault.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import httpx

from kami_cli.config import CliSettings
from kami_cli.errors import CliError
from kami_cli.http import TIMEOUT, error_message

# The demo accounts of the local platform (never of a real deployment).
DEMO_BUYER_PHONE = "13900000009"
DEMO_PASSWORD = "E2e-correct-horse-42"  # noqa: S105
DEMO_PAYMENT_PASSWORD = "135790"  # noqa: S105

# Order states from RESERVED on, in the saga's order (docs/saga.md).
_AFTER_PLACED = ("RESERVED", "PAID", "DELIVERED", "COMPLETED")
_COMPENSATED = ("CANCELLED", "REFUNDED")
_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Step:
    name: str
    seconds: float  # since the command started
    detail: str


@dataclass(frozen=True)
class Purchase:
    order_id: str
    key_id: str
    secret: str


class _Platform:
    """The services' public APIs, with a clear error when one does not answer."""

    def __init__(self, settings: CliSettings) -> None:
        self._settings = settings
        self._client = httpx.Client(timeout=TIMEOUT)
        self.token: str | None = None

    def close(self) -> None:
        self._client.close()

    def call(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = self._settings.url(service)
        headers = kwargs.pop("headers", {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            return self._client.request(method, f"{url}{path}", headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise CliError(
                f"{service} at {url} does not answer ({exc}): is the platform running? "
                "Start it with ./scripts/run, or set KAMI_"
                f"{service.upper()}_URL"
            ) from None

    def ok(self, response: httpx.Response, what: str) -> Any:
        if response.status_code not in (200, 201):
            raise CliError(f"{what}: {error_message(response)}")
        return response.json()


def _until(
    attempt: Callable[[], httpx.Response],
    done: Callable[[httpx.Response], bool],
    *,
    timeout: float,
    what: str,
) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = attempt()
        if done(response):
            return response
        if time.monotonic() > deadline:
            raise CliError(
                f"timed out after {timeout:.0f}s waiting for {what} "
                f"(last answer: {error_message(response)})"
            )
        time.sleep(_POLL_SECONDS)


def _error_code(response: httpx.Response) -> str | None:
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return str(code)


def _choose_offer(api: _Platform, offer_id: str | None) -> dict[str, Any]:
    """The given offer, else the best-value live offer of the first product in stock."""
    if offer_id:
        offer = api.ok(api.call("catalog", "GET", f"/offers/{offer_id}"), f"offer {offer_id}")
        if not offer["live"]:
            raise CliError(f"offer {offer_id} is not on sale ({offer['status']})")
        return dict(offer)
    found = api.ok(
        api.call(
            "catalog",
            "GET",
            "/search",
            params={"delivery_mode": "auto", "in_stock": "true", "limit": 20},
        ),
        "catalog search",
    )
    for product in found["items"]:
        compared = api.ok(
            api.call("catalog", "GET", f"/products/{product['product_id']}/offers"),
            "the price comparison",
        )
        lines = [line["offer"] for line in compared["offers"]]
        in_stock = [o for o in lines if o["delivery_mode"] == "auto" and (o["stock"] or 0) > 0]
        best = [o for o in in_stock if o["offer_id"] == compared["best_value_offer_id"]]
        if best or in_stock:
            chosen = dict((best or in_stock)[0])
            chosen["product_name"] = product["name"]
            return chosen
    raise CliError(
        "no offer is in stock: seed the demo market (./scripts/run does, or "
        "`uv run python deploy/local/seed_demo.py market`), or name one with --offer"
    )


def buy(
    settings: CliSettings,
    *,
    phone: str,
    password: str,
    payment_password: str,
    offer_id: str | None,
    timeout: float,
    on_step: Callable[[Step], None],
) -> Purchase:
    started = time.monotonic()

    def step(name: str, detail: str) -> None:
        on_step(Step(name, time.monotonic() - started, detail))

    api = _Platform(settings)
    try:
        login = api.call(
            "identity", "POST", "/auth/login", json={"phone": phone, "password": password}
        )
        if login.status_code != 200:
            raise CliError(
                f"login as {phone} refused: {error_message(login)} (the demo buyer exists once "
                "the demo market is seeded; --phone/--password name another buyer)"
            )
        api.token = login.json()["access_token"]
        step("logged in", f"as {phone}")

        offer = _choose_offer(api, offer_id)
        name = offer.get("product_name") or offer["product_id"]
        step("offer", f"{offer['offer_id']} ({name}), {offer['unit_price']} fen")

        idempotency_key = str(uuid4())
        placed = _until(
            lambda: api.call(
                "ordering",
                "POST",
                "/orders",
                json={"offer_id": offer["offer_id"], "quantity": 1},
                headers={"Idempotency-Key": idempotency_key},
            ),
            # 404: ordering has not yet had the offer's event (a fresh listing).
            lambda r: r.status_code != 404,
            timeout=timeout,
            what="ordering to know the offer",
        )
        order_id = str(api.ok(placed, "placing the order")["order_id"])
        step("placed", f"order {order_id}")

        def order_in(states: tuple[str, ...], what: str) -> dict[str, Any]:
            response = _until(
                lambda: api.call("ordering", "GET", f"/orders/{order_id}"),
                lambda r: r.status_code == 200 and r.json()["state"] in states + _COMPENSATED,
                timeout=timeout,
                what=what,
            )
            order: dict[str, Any] = response.json()
            if order["state"] in _COMPENSATED:
                why = order["cancel_reason"] or "refunded"
                raise CliError(
                    f"order {order_id} was {order['state']} ({why}): "
                    f"see `kami orders show {order_id}`"
                )
            return order

        reserved = order_in(_AFTER_PLACED, f"order {order_id} to be reserved")
        pay_by = reserved["deadlines"]["payment_deadline"]
        step("reserved", f"{len(reserved['key_ids'])} key held, pay by {pay_by}")

        paid = _until(
            lambda: api.call(
                "payment",
                "POST",
                "/payments",
                json={
                    "order_id": order_id,
                    "channel": "wallet",
                    "payment_password": payment_password,
                },
            ),
            # Payment learns of the order and its reservation by events, a moment later.
            lambda r: (
                (r.status_code, _error_code(r))
                not in {(404, "order_not_found"), (409, "order_not_reserved")}
            ),
            timeout=timeout,
            what="payment to know the order",
        )
        payment = api.ok(paid, "paying from the wallet")
        if payment["status"] != "confirmed":
            raise CliError(
                f"the payment was not confirmed: {payment['status']} {payment['failure']}"
            )
        step("paid", f"{payment['amount']} fen from the wallet, payment {payment['payment_id']}")

        order_in(("DELIVERED", "COMPLETED"), f"order {order_id} to be delivered")
        step("delivered", "the key is in the buyer's vault")

        vault = api.ok(
            api.call("delivery", "GET", "/vault", params={"order_id": order_id}), "the vault"
        )
        if not vault["keys"]:
            raise CliError(f"order {order_id} is delivered but its key is not in the vault")
        key_id = str(vault["keys"][0]["key_id"])
        revealed = api.ok(
            api.call("delivery", "POST", f"/vault/{key_id}/reveal"), "revealing the key"
        )
        step("revealed", f"key {key_id}")
        return Purchase(order_id, key_id, str(revealed["secret"]))
    finally:
        api.close()
