"""The bench's buyer app against stand-ins of ordering and payment: it waits
with long polls (one request per state when the answer comes in time),
spreads purchases over a service's processes, and still polls with --poll."""

from __future__ import annotations

from pathlib import Path

import httpx

from kami_actors import Person
from kami_bench.driver import Pacing, Shop
from kami_bench.market import BenchOffer, Buyer
from kami_local import Platform


class FakeShop(Shop):
    """Ordering and payment answered in-process; every request recorded."""

    def __init__(self, platform: Platform, pacing: Pacing) -> None:
        self.requests: list[httpx.Request] = []
        self.state = "PLACED"
        self.pay_attempts = 0
        self.busy_answers = 0  # 429s payment gives before the not-found one
        super().__init__(platform, pacing, connections=4)

    def _client(self, url: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=url, transport=httpx.MockTransport(self._answer))

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "POST" and request.url.path == "/orders":
            self.state = "RESERVED"  # as if the long poll then waited for it
            return httpx.Response(201, json={"order_id": "o1"})
        if request.method == "POST" and request.url.path == "/payments":
            self.pay_attempts += 1
            if self.pay_attempts <= self.busy_answers:  # every password check busy
                return httpx.Response(
                    429,
                    headers={"Retry-After": "0"},
                    json={"error": {"code": "payment_password_checks_busy"}},
                )
            if self.pay_attempts == self.busy_answers + 1:  # payment has not consumed OrderPlaced
                return httpx.Response(404, json={"error": {"code": "order_not_found"}})
            self.state = "DELIVERED"
            return httpx.Response(201, json={"status": "confirmed"})
        return httpx.Response(200, json={"order_id": "o1", "state": self.state})


def _platform(tmp_path: Path, **replicas: int) -> Platform:
    return Platform.isolated(
        "k:9092", "mongodb://m/", home=tmp_path, name="t", extra_env={}, replicas=replicas
    )


def _buyer(platform: Platform) -> Buyer:
    return Buyer(Person(platform, "13800000000", access_token="t"), "phone")


async def test_the_buyer_waits_with_one_long_poll_per_state(tmp_path: Path) -> None:
    platform = _platform(tmp_path)
    shop = FakeShop(platform, Pacing(poll_first=0.01, timeout=5))
    offer = BenchOffer("offer-1", _buyer(platform).person)

    purchase = await shop.purchase(_buyer(platform), offer, "rate")

    assert purchase.outcome == "delivered", purchase.detail
    waits = [r.url.params.get("wait_for") for r in shop.requests if r.method == "GET"]
    assert waits == ["RESERVED", "DELIVERED"]
    assert all(float(r.url.params["timeout"]) <= 20 for r in shop.requests if r.method == "GET")
    assert shop.pay_attempts == 2  # asked again after payment's "not yet"
    await shop.close()


async def test_with_poll_the_buyer_asks_without_waiting(tmp_path: Path) -> None:
    platform = _platform(tmp_path)
    shop = FakeShop(platform, Pacing(poll_first=0.01, timeout=5, long_poll=False))

    purchase = await shop.purchase(_buyer(platform), BenchOffer("o", _buyer(platform).person), "r")

    assert purchase.outcome == "delivered"
    assert all(not r.url.params for r in shop.requests if r.method == "GET")
    await shop.close()


async def test_purchases_go_to_a_services_processes_in_turn(tmp_path: Path) -> None:
    platform = _platform(tmp_path, ordering=2)
    shop = FakeShop(platform, Pacing(poll_first=0.01, timeout=5))
    shop.spread("ordering", platform.urls("ordering"))
    offer = BenchOffer("offer-1", _buyer(platform).person)

    for _ in range(4):
        shop.state = "PLACED"
        shop.pay_attempts = 1
        await shop.purchase(_buyer(platform), offer, "rate")

    ports = {r.url.port for r in shop.requests if r.url.path.startswith("/orders")}
    assert ports == {platform.port_of("ordering"), platform.port_of("ordering-2")}
    await shop.close()


async def test_a_busy_payment_is_asked_again_when_it_says(tmp_path: Path) -> None:
    platform = _platform(tmp_path)
    shop = FakeShop(platform, Pacing(poll_first=0.01, timeout=5))
    shop.busy_answers = 2
    offer = BenchOffer("offer-1", _buyer(platform).person)

    purchase = await shop.purchase(_buyer(platform), offer, "burst")

    assert purchase.outcome == "delivered", purchase.detail
    assert shop.pay_attempts == 4
