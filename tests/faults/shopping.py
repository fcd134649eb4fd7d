"""Buyers purchasing while things break: every step is repeated through
restarts (an idempotency key makes a repeated order one order; paying an
order already paid answers the same payment)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from uuid import uuid4

import httpx

from kami_actors import Person
from kami_market import PAYMENT_PASSWORD, Offer, funded_buyer, list_offer_with_keys
from tests.faults.harness import FaultsPlatform, ScenarioLog, answered, persist

Plan = Literal["complete", "deliver", "cancel"]
TERMINAL = ("COMPLETED", "CANCELLED", "REFUNDED")


@dataclass
class Market:
    operator: Person
    offer: Offer
    buyers: list[Person]
    funds: int = 0

    async def restock(self, *, keys: int = 300, low: int = 100) -> list[str]:
        """Fresh tokens for everyone, more keys when few are left, and money
        for a buyer running short: what a long soak needs between scenarios."""
        done = []
        for person in (self.operator, self.offer.seller, *self.buyers):
            await persist(person, "identity", "GET", "/me", done=answered(200), what="a token")
        stock = await persist(
            self.offer.seller,
            "inventory",
            "GET",
            f"/offers/{self.offer.offer_id}/stock",
            done=answered(200),
            what="the stock",
        )
        if stock.json()["available"] < low:
            secrets = [f"SOAK-{uuid4().hex[:16].upper()}" for _ in range(keys)]
            await persist(
                self.offer.seller,
                "inventory",
                "POST",
                f"/offers/{self.offer.offer_id}/imports",
                json={"import_id": str(uuid4()), "format": "txt", "content": "\n".join(secrets)},
                done=answered(200, 201),
                what="more keys",
            )
            done.append(f"{keys} keys imported")
        for buyer in self.buyers:
            wallet = await persist(
                buyer, "payment", "GET", "/wallet", done=answered(200), what="a wallet"
            )
            if wallet.json()["balance"] < self.funds // 5:
                top_up = await persist(
                    buyer,
                    "payment",
                    "POST",
                    "/wallet/top-ups",
                    json={"amount": self.funds, "channel": "alipay"},
                    done=answered(201),
                    what="a top-up",
                )
                await persist(
                    buyer,
                    "payment",
                    "POST",
                    top_up.json()["pay"]["simulator_pay"],
                    done=answered(200),
                    what="the top-up paid",
                )
                done.append(f"buyer {buyer.user_id} topped up")
        return done


async def open_market(
    platform: FaultsPlatform, operator: Person, *, keys: int, buyers: int, funds: int
) -> Market:
    offer = await list_offer_with_keys(
        platform, operator, keys=keys, unit_price=300, max_quantity=2
    )
    people = await asyncio.gather(*(funded_buyer(platform, funds) for _ in range(buyers)))
    return Market(operator, offer, list(people), funds)


@dataclass
class Purchase:
    plan: Plan
    quantity: int
    order_id: str = ""
    state: str = ""
    cancel_reason: str | None = None


def state_in(*states: str) -> Callable[[httpx.Response], bool]:
    return lambda r: r.status_code == 200 and r.json()["state"] in states


async def purchase(
    buyer: Person, offer: Offer, plan: Plan, quantity: int = 1, *, timeout: float = 240.0
) -> Purchase:
    """One purchase to the end its plan asks for: COMPLETED (arrival
    confirmed), DELIVERED, or CANCELLED by the buyer before paying. An order
    that meets no stock ends CANCELLED, as it must."""
    done = Purchase(plan, quantity)
    key = str(uuid4())
    placed = await persist(
        buyer,
        "ordering",
        "POST",
        "/orders",
        json={"offer_id": offer.offer_id, "quantity": quantity},
        headers={"Idempotency-Key": key},
        done=answered(200, 201),
        what="the order to be placed",
        timeout=timeout,
    )
    done.order_id = order_id = str(placed.json()["order_id"])
    path = f"/orders/{order_id}"
    view = await persist(
        buyer,
        "ordering",
        "GET",
        path,
        done=state_in("RESERVED", *TERMINAL),
        what=f"{order_id} reserved",
        timeout=timeout,
    )
    if view.json()["state"] == "RESERVED" and plan == "cancel":
        await persist(
            buyer,
            "ordering",
            "POST",
            f"{path}/cancel",
            done=answered(200, 202, 409),
            what=f"{order_id} cancelled",
            timeout=timeout,
        )
    elif view.json()["state"] == "RESERVED":
        await persist(
            buyer,
            "payment",
            "POST",
            "/payments",
            json={"order_id": order_id, "channel": "wallet", "payment_password": PAYMENT_PASSWORD},
            # 409 order_not_reserved: payment has not heard of the reservation yet.
            done=answered(200, 201),
            what=f"{order_id} paid",
            timeout=timeout,
        )
        view = await persist(
            buyer,
            "ordering",
            "GET",
            path,
            done=state_in("DELIVERED", *TERMINAL),
            what=f"{order_id} delivered",
            timeout=timeout,
        )
        if view.json()["state"] == "DELIVERED" and plan == "complete":
            await persist(
                buyer,
                "delivery",
                "POST",
                f"{path}/arrival",
                done=answered(200, 201, 202),
                what=f"{order_id} arrival confirmed",
                timeout=timeout,
            )
    wanted = {"complete": ("COMPLETED",), "deliver": ("DELIVERED",), "cancel": ("CANCELLED",)}[plan]
    final = await persist(
        buyer,
        "ordering",
        "GET",
        path,
        done=state_in(*wanted, *TERMINAL),
        what=f"{order_id} to end",
        timeout=timeout,
    )
    done.state = str(final.json()["state"])
    done.cancel_reason = final.json()["cancel_reason"]
    return done


@dataclass
class Stream:
    """Shoppers buying one after another until told to stop."""

    market: Market
    log: ScenarioLog
    rng: random.Random
    shoppers: int = 4
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    purchases: list[Purchase] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        for n in range(self.shoppers):
            buyer = self.market.buyers[n % len(self.market.buyers)]
            self._tasks.append(
                asyncio.create_task(self._shop(buyer, random.Random(self.rng.random())))
            )

    def burst(self, count: int) -> None:
        """`count` purchases at once, besides the shoppers: many appends in flight."""
        for _ in range(count):
            buyer = self.rng.choice(self.market.buyers)
            plans: list[Plan] = ["complete", "deliver", "cancel"]
            self._tasks.append(
                asyncio.create_task(
                    self._one(buyer, self.rng.choice(plans), self.rng.choice([1, 2]))
                )
            )

    async def _one(self, buyer: Person, plan: Plan, quantity: int) -> None:
        done = await purchase(buyer, self.market.offer, plan, quantity=quantity)
        self.purchases.append(done)
        self.log.count(f"orders {done.state}")

    async def _shop(self, buyer: Person, rng: random.Random) -> None:
        while not self.stop.is_set():
            plans: list[Plan] = ["complete", "deliver", "cancel"]
            plan = rng.choices(plans, weights=[6, 2, 2])[0]
            await self._one(buyer, plan, rng.choice([1, 1, 2]))

    async def finish(self) -> list[Purchase]:
        self.stop.set()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            for task in self._tasks:
                task.cancel()
        return self.purchases

    def check(self) -> None:
        """Each purchase ended as planned, or cancelled for want of stock."""
        check_purchases(self.purchases)


def check_purchases(purchases: list[Purchase]) -> None:
    expected = {"complete": "COMPLETED", "deliver": "DELIVERED", "cancel": "CANCELLED"}
    unexpected = [
        p
        for p in purchases
        if p.state != expected[p.plan]
        and not (p.state == "CANCELLED" and p.cancel_reason == "out_of_stock")
    ]
    assert unexpected == [], f"purchases that did not end as planned: {unexpected}"
