"""Purchases through the public HTTP APIs, as a buyer's app makes them:
place the order with an Idempotency-Key, wait until it is RESERVED, pay from
the wallet, wait until it is DELIVERED (or compensated).

Three shapes of load:
- `open_loop`: arrivals at a target rate (Poisson), each purchase on its own,
  whether or not earlier ones finished (how real traffic arrives);
- `closed_loop`: C buyers each buying again as soon as their purchase ends
  (saturation: what the platform completes at most);
- `burst`: N orders reserved first, then all paid at once, so the deliveries
  back up and the priority lane decides who is served first.

The buyer's app waits for RESERVED and for DELIVERED with ordering's long
poll (`GET /orders/{id}?wait_for=STATE&timeout=S`, asked again after a
timeout), or, with `Pacing(long_poll=False)`, polls as apps did before it.

The client's clock says when a purchase ended for the throughput and the
buyer's view (the time the buyer saw DELIVERED); the platform's latencies
come from the events' own timestamps (`kami_bench.events`), so the client's
waiting does not show in them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import httpx

from kami_bench.market import BenchOffer, Buyer
from kami_local import Platform
from kami_market import PAYMENT_PASSWORD

COMPENSATED = frozenset({"CANCELLED", "REFUNDING", "REFUNDED"})
DELIVERED = frozenset({"DELIVERED", "COMPLETED"})


@dataclass
class Purchase:
    phase: str
    tier: str
    offer_id: str
    started: float  # time.monotonic()
    order_id: str | None = None
    # delivered | compensated | failed | timeout | pending
    outcome: str = "pending"
    # The final state's reason: cancel reason, refusal code, HTTP error.
    detail: str = ""
    finished: float | None = None
    buyer: Buyer | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Pacing:
    """How the buyer's app waits: a long poll of at most `long_poll_seconds`
    asked again until the purchase times out, or (`long_poll=False`) polls
    quickly at first, then every `poll_max` seconds. Payment's "not yet" is
    always asked again on the polling schedule."""

    poll_first: float = 0.05
    poll_max: float = 1.0
    timeout: float = 60.0
    long_poll: bool = True
    long_poll_seconds: float = 20.0

    def intervals(self) -> Any:
        delay = self.poll_first
        while True:
            yield delay
            delay = min(self.poll_max, delay * 2)


class Gate:
    """Holds the burst's purchases after their reservation until all have
    arrived (reserved, or failed before that), then lets them pay at once."""

    def __init__(self, expected: int) -> None:
        self._expected = expected
        self._arrived = 0
        self.all_arrived = asyncio.Event()
        self.open = asyncio.Event()
        if expected == 0:
            self.all_arrived.set()

    def arrive(self) -> None:
        self._arrived += 1
        if self._arrived >= self._expected:
            self.all_arrived.set()


class Failed(Exception):
    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


class Shop:
    """One HTTP client per service, shared by every simulated buyer (as a load
    balancer's connection pool would be), each request with its buyer's token."""

    SERVICES = ("ordering", "payment")

    def __init__(self, platform: Platform, pacing: Pacing, *, connections: int) -> None:
        self._pacing = pacing
        self._limits = httpx.Limits(
            max_connections=connections, max_keepalive_connections=connections
        )
        # Per service, a client per process serving it: each purchase takes
        # the next in turn (a load balancer's round robin over the replicas).
        self._clients: dict[str, list[httpx.AsyncClient]] = {
            service: [self._client(platform.url(service))] for service in self.SERVICES
        }
        self._turn = 0
        self.purchases: list[Purchase] = []

    def _client(self, url: str) -> httpx.AsyncClient:
        # Longer than any long poll: the server answers when its wait ends.
        read = self._pacing.long_poll_seconds + 10 if self._pacing.long_poll else 30.0
        return httpx.AsyncClient(
            base_url=url, timeout=httpx.Timeout(30.0, read=read), limits=self._limits
        )

    def spread(self, service: str, urls: Sequence[str]) -> None:
        """From now on, spread the purchases over these processes of `service` too."""
        if service in self._clients:
            known = {str(client.base_url).rstrip("/") for client in self._clients[service]}
            self._clients[service] += [self._client(u) for u in urls if u not in known]

    async def close(self) -> None:
        for clients in self._clients.values():
            for client in clients:
                await client.aclose()

    async def purchase(
        self, buyer: Buyer, offer: BenchOffer, phase: str, gate: Gate | None = None
    ) -> Purchase:
        record = Purchase(phase, buyer.tier, offer.offer_id, time.monotonic(), buyer=buyer)
        self.purchases.append(record)
        offer.ordered += 1
        deadline = record.started + self._pacing.timeout
        self._turn += 1
        ordering, payment = (
            clients[self._turn % len(clients)]
            for clients in (self._clients["ordering"], self._clients["payment"])
        )
        try:
            record.order_id = await self._place(ordering, buyer, offer)
            await self._wait(ordering, buyer, record.order_id, "RESERVED", deadline)
            if gate is not None:
                held, gate = gate, None
                held.arrive()
                await held.open.wait()
                deadline = time.monotonic() + self._pacing.timeout
            await self._pay(payment, buyer, record.order_id, deadline)
            await self._wait(ordering, buyer, record.order_id, "DELIVERED", deadline)
            record.outcome = "delivered"
        except Failed as failed:
            record.outcome, record.detail = failed.outcome, failed.detail
        except httpx.HTTPError as exc:
            record.outcome, record.detail = "failed", f"http: {type(exc).__name__}"
        finally:
            if gate is not None:
                gate.arrive()
            record.finished = time.monotonic()
        return record

    async def _place(self, client: httpx.AsyncClient, buyer: Buyer, offer: BenchOffer) -> str:
        # The same key on every retry: a lost answer must not place a second order.
        key = str(uuid4())
        for attempt in range(3):
            try:
                response = await client.post(
                    "/orders",
                    json={"offer_id": offer.offer_id, "quantity": 1},
                    headers={**buyer.headers, "Idempotency-Key": key},
                )
            except httpx.TransportError:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.1)
                continue
            if response.status_code in (200, 201):
                return str(response.json()["order_id"])
            raise Failed("failed", f"place: {response.status_code} {_code(response)}")
        raise AssertionError("unreachable")

    async def _wait(
        self,
        client: httpx.AsyncClient,
        buyer: Buyer,
        order_id: str,
        wanted: str,
        deadline: float,
    ) -> None:
        """Until the order is `wanted` (DELIVERED: or COMPLETED), by long polls
        or by polling; a compensated order or the deadline ends the purchase."""
        states = DELIVERED if wanted == "DELIVERED" else {wanted}
        polls = self._pacing.intervals()
        while True:
            params: dict[str, str | float] = {}
            if self._pacing.long_poll:
                left = deadline - time.monotonic()
                wait = max(0.1, min(self._pacing.long_poll_seconds, left))
                params = {"wait_for": wanted, "timeout": round(wait, 1)}
            else:
                await asyncio.sleep(next(polls))
            try:
                response = await client.get(
                    f"/orders/{order_id}", params=params, headers=buyer.headers
                )
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise Failed("timeout", "ordering did not answer in time") from None
                await asyncio.sleep(next(polls) if self._pacing.long_poll else 0)
                continue  # a dropped connection: ask again
            if response.status_code != 200:
                raise Failed("failed", f"order status: {response.status_code} {_code(response)}")
            order = response.json()
            if order["state"] in states:
                return
            if order["state"] in COMPENSATED:
                raise Failed("compensated", f"{order['state']}: {order.get('cancel_reason')}")
            if time.monotonic() > deadline:
                raise Failed("timeout", f"still {order['state']}")

    async def _pay(
        self, client: httpx.AsyncClient, buyer: Buyer, order_id: str, deadline: float
    ) -> None:
        body = {"order_id": order_id, "channel": "wallet", "payment_password": PAYMENT_PASSWORD}
        delays = self._pacing.intervals()
        while True:
            if time.monotonic() > deadline:
                raise Failed("timeout", "payment did not answer in time")
            try:
                # Paying is idempotent per order: an answer lost on the way is asked again.
                response = await client.post(
                    "/payments",
                    json=body,
                    headers={**buyer.headers, "X-Request-ID": f"bench-pay-{order_id}"},
                )
            except httpx.TransportError:
                await asyncio.sleep(next(delays))
                continue
            # Payment learns of the order and its reservation by its own consumer;
            # until then it says so (404 order_not_found, 409 order_not_reserved).
            if (response.status_code, _code(response)) in NOT_YET_PAYABLE:
                if time.monotonic() > deadline:
                    raise Failed("timeout", "payment never saw the reservation")
                await asyncio.sleep(next(delays))
                continue
            if response.status_code == 429:
                # Payment's password checks are all busy: it says when to ask
                # again (Retry-After), as a buyer's app would.
                await asyncio.sleep(_retry_after(response, next(delays)))
                continue
            if response.status_code not in (200, 201):
                raise Failed("failed", f"pay: {response.status_code} {_code(response)}")
            status = response.json()["status"]
            if status == "failed":
                raise Failed("failed", f"payment failed: {response.json().get('failure')}")
            return


NOT_YET_PAYABLE = {(409, "order_not_reserved"), (404, "order_not_found")}


def _retry_after(response: httpx.Response, otherwise: float) -> float:
    """The seconds a 429's `Retry-After` asks for (capped at 5), else `otherwise`."""
    with contextlib.suppress(KeyError, ValueError):
        return min(5.0, max(0.0, float(response.headers["Retry-After"])))
    return otherwise


def _code(response: httpx.Response) -> str:
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return str(response.json()["error"]["code"])
    return response.text[:80]


@dataclass
class PhaseRun:
    name: str
    started: float
    load_ended: float  # no purchase starts after this
    ended: float = 0.0  # every purchase it started has finished (or timed out)
    dropped: int = 0  # open loop: arrivals refused because too many were in flight
    purchases: list[Purchase] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Assignments:
    """Which buyer and offer each new purchase takes, in turn."""

    def __init__(self, buyers: Sequence[Buyer], offers: Sequence[BenchOffer]) -> None:
        if not buyers or not offers:
            raise ValueError("a load needs buyers and offers")
        self._buyers = buyers
        self._offers = offers
        self._next = 0

    def take(self) -> tuple[Buyer, BenchOffer]:
        n = self._next
        self._next += 1
        return self._buyers[n % len(self._buyers)], self._offers[n % len(self._offers)]


async def _drain(tasks: set[asyncio.Task[Purchase]], run: PhaseRun) -> None:
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    run.ended = time.monotonic()


async def open_loop(
    shop: Shop,
    assignments: Assignments,
    *,
    rate: float,
    duration: float,
    max_in_flight: int,
    rng: random.Random,
    name: str = "rate",
) -> PhaseRun:
    """Purchases arriving as a Poisson process of `rate` per second for
    `duration` seconds. An arrival finding `max_in_flight` purchases still
    open is dropped and counted: the platform is not keeping up."""
    start = time.monotonic()
    run = PhaseRun(name, start, start)
    tasks: set[asyncio.Task[Purchase]] = set()
    due = start
    while True:
        due += rng.expovariate(rate)
        if due - start >= duration:
            break
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if len(tasks) >= max_in_flight:
            run.dropped += 1
            continue
        buyer, offer = assignments.take()
        task = asyncio.create_task(shop.purchase(buyer, offer, name))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    run.load_ended = time.monotonic()
    await _drain(tasks, run)
    run.purchases = [p for p in shop.purchases if p.phase == name]
    return run


async def closed_loop(
    shop: Shop,
    assignments: Assignments,
    *,
    concurrency: int,
    duration: float,
    name: str = "saturation",
) -> PhaseRun:
    """`concurrency` buyers, each starting a new purchase as soon as the last ended."""
    start = time.monotonic()
    run = PhaseRun(name, start, start + duration)

    async def buyer_loop() -> None:
        while time.monotonic() < run.load_ended:
            buyer, offer = assignments.take()
            await shop.purchase(buyer, offer, name)

    await asyncio.gather(*(buyer_loop() for _ in range(concurrency)))
    run.ended = time.monotonic()
    run.purchases = [p for p in shop.purchases if p.phase == name]
    return run


async def burst(
    shop: Shop,
    assignments: Assignments,
    *,
    size: int,
    while_paying: Callable[[], Any] | None = None,
    name: str = "burst",
) -> PhaseRun:
    """`size` orders placed and reserved, then all paid at the same moment."""
    start = time.monotonic()
    run = PhaseRun(name, start, start)
    gate = Gate(size)
    tasks = set()
    for _ in range(size):
        buyer, offer = assignments.take()
        tasks.add(asyncio.create_task(shop.purchase(buyer, offer, name, gate)))
    await gate.all_arrived.wait()
    run.notes.append(f"{size} orders placed and reserved in {time.monotonic() - start:.1f}s")
    run.load_ended = time.monotonic()
    gate.open.set()
    if while_paying is not None:
        await while_paying()
    await _drain(tasks, run)
    run.purchases = [p for p in shop.purchases if p.phase == name]
    return run
