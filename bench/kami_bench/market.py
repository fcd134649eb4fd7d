"""The bench's market, set up over the public APIs as its people would: an
operator publishes products, approved sellers with a deposit list offers and
import keys, buyers of each verification tier fund a wallet.

Keys are imported as they are needed (`Restocker`), not all up front: on
FerretDB every reservation scans the whole key collection, so a pool ten
times larger than the run needs would slow every purchase for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import uuid4

import httpx

from kami_actors import PASSWORD, Person, approved_seller, verify_real_name
from kami_bench.metrics import counter_total
from kami_local import Platform
from kami_market import (
    funded_buyer,
    funded_deposit,
    list_offer_with_keys,
    operator_of,
    until,
)

# The verification tiers, lowest first, and the delivery priority identity's
# default tier table grants each (kami_identity.domain.tiers).
TIERS: tuple[str, ...] = ("phone", "real_name", "advanced")
DEFAULT_PRIORITY = {"phone": 0, "real_name": 1, "advanced": 2}

UNIT_PRICE = 100  # fen: one yuan a key, so a wallet lasts a whole run
DEPOSIT = 500_000
T = TypeVar("T")


@dataclass
class Buyer:
    person: Person
    tier: str

    @property
    def headers(self) -> dict[str, str]:
        return self.person.headers


@dataclass
class BenchOffer:
    offer_id: str
    seller: Person
    imported: int = 0
    ordered: int = 0
    imports: int = 0
    _importing: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def stock_left(self) -> int:
        """Keys not yet asked for by the bench's orders (the pool may hold
        more: cancelled orders release theirs)."""
        return self.imported - self.ordered


@dataclass
class Market:
    operator: Person
    sellers: list[Person]
    offers: list[BenchOffer]
    buyers: list[Buyer]

    def buyers_of(self, tier: str) -> list[Buyer]:
        return [buyer for buyer in self.buyers if buyer.tier == tier]


async def bounded(limit: int, jobs: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run `jobs` with at most `limit` at once, results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return list(await asyncio.gather(*(one(job) for job in jobs)))


async def import_keys(offer: BenchOffer, count: int) -> None:
    """The seller uploads `count` fresh keys (one TXT import, idempotent by its id)."""
    if count <= 0:
        return
    async with offer._importing:
        import_id = f"bench-{uuid4().hex}"
        content = "\n".join(f"BENCH-{uuid4().hex.upper()}" for _ in range(count))
        response = await until(
            lambda: offer.seller.call(
                "inventory",
                "POST",
                f"/offers/{offer.offer_id}/imports",
                json={"import_id": import_id, "format": "txt", "content": content},
            ),
            lambda r: r.status_code in (200, 201),
            what=f"inventory to import keys for offer {offer.offer_id}",
            timeout=120,
        )
        report = response.json()
        if report["imported"] != count:
            raise RuntimeError(f"import into {offer.offer_id} took {report['imported']} of {count}")
        offer.imported += count
        offer.imports += 1


async def seller_with_offers(
    platform: Platform, operator: Person, shop: str, offers: int, keys: int
) -> tuple[Person, list[BenchOffer]]:
    seller = await approved_seller(platform, operator, shop)
    await funded_deposit(seller, DEPOSIT)
    listed = []
    for _ in range(offers):
        offer = await list_offer_with_keys(
            platform, operator, keys=0, unit_price=UNIT_PRICE, max_quantity=5, seller=seller
        )
        bench_offer = BenchOffer(offer.offer_id, seller)
        await import_keys(bench_offer, keys)
        listed.append(bench_offer)
    return seller, listed


async def verified_buyer(platform: Platform, tier: str, wallet: int) -> Buyer:
    person = await funded_buyer(platform, wallet)
    if tier in ("real_name", "advanced"):
        await verify_real_name(person)
    if tier == "advanced":
        answer = await person.call(
            "identity",
            "POST",
            "/me/advanced-verification",
            json={"liveness_token": f"bench-liveness-{uuid4().hex}"},
        )
        if answer.status_code != 200 or answer.json()["status"] != "approved":
            raise RuntimeError(f"advanced verification refused: {answer.status_code} {answer.text}")
        await person.refresh()
    return Buyer(person, tier)


async def build_market(
    platform: Platform,
    *,
    operator_phone: str,
    sellers: int,
    offers_per_seller: int,
    keys_per_offer: int,
    buyers_per_tier: int,
    wallet: int,
    say: Callable[[str], None],
) -> Market:
    operator = await operator_of(platform, operator_phone)
    say(f"seeding {sellers} seller(s) with {offers_per_seller} offer(s) each")
    counter = itertools.count(1)
    shops = await bounded(
        4,
        [
            lambda: seller_with_offers(
                platform, operator, f"压测卡铺{next(counter)}", offers_per_seller, keys_per_offer
            )
            for _ in range(sellers)
        ],
    )
    say(f"seeding {buyers_per_tier} funded buyer(s) per tier ({', '.join(TIERS)})")
    buyers = await bounded(
        8,
        [
            functools.partial(verified_buyer, platform, tier, wallet)
            for tier in TIERS
            for _ in range(buyers_per_tier)
        ],
    )
    return Market(
        operator=operator,
        sellers=[seller for seller, _ in shops],
        offers=[offer for _, offers in shops for offer in offers],
        buyers=buyers,
    )


# -- keeping a market across runs (`--keep`, then `--reuse`) -------------------------


def market_state(market: Market) -> dict[str, Any]:
    return {
        "operator": market.operator.phone,
        "sellers": [seller.phone for seller in market.sellers],
        "offers": [
            {"offer_id": o.offer_id, "seller": o.seller.phone, "imported": o.imported}
            for o in market.offers
        ],
        "buyers": [{"phone": b.person.phone, "tier": b.tier} for b in market.buyers],
        # What the bench's orders took so far; the rest of the pool is still there.
        "ordered": {o.offer_id: o.ordered for o in market.offers},
    }


async def log_in(platform: Platform, phone: str) -> Person:
    person = Person(platform, phone)
    async with httpx.AsyncClient(base_url=platform.url("identity"), timeout=30) as identity:
        response = await identity.post("/auth/login", json={"phone": phone, "password": PASSWORD})
    if response.status_code != 200:
        raise RuntimeError(f"cannot log {phone} in again: {response.status_code} {response.text}")
    person._take_tokens(response.json())
    return person


async def restore_market(platform: Platform, state: dict[str, Any]) -> Market:
    """The kept market with fresh tokens (a kept platform may be days old)."""
    operator = await log_in(platform, state["operator"])
    sellers = {phone: await log_in(platform, phone) for phone in state["sellers"]}
    offers = [
        BenchOffer(
            entry["offer_id"],
            sellers[entry["seller"]],
            imported=entry["imported"],
            ordered=state["ordered"].get(entry["offer_id"], 0),
        )
        for entry in state["offers"]
    ]
    buyers = await bounded(
        8,
        [
            functools.partial(_buyer_again, platform, entry["phone"], entry["tier"])
            for entry in state["buyers"]
        ],
    )
    return Market(operator, list(sellers.values()), offers, buyers)


async def _buyer_again(platform: Platform, phone: str, tier: str) -> Buyer:
    return Buyer(await log_in(platform, phone), tier)


async def top_up_wallets(market: Market, wallet: int) -> None:
    """Bring every buyer's wallet back to at least `wallet` fen (a kept market
    was spent by earlier runs)."""

    async def top_up(buyer: Buyer) -> None:
        balance = (await buyer.person.call("payment", "GET", "/wallet")).json()["balance"]
        if balance >= wallet:
            return
        amount = wallet - balance
        started = await buyer.person.call(
            "payment", "POST", "/wallet/top-ups", json={"amount": amount, "channel": "alipay"}
        )
        if started.status_code != 201:
            raise RuntimeError(f"top-up refused: {started.status_code} {started.text}")
        paid = await buyer.person.call("payment", "POST", started.json()["pay"]["simulator_pay"])
        if paid.status_code != 200:
            raise RuntimeError(f"simulated top-up payment refused: {paid.text}")
        await until(
            lambda: buyer.person.call("payment", "GET", "/wallet"),
            lambda r: r.status_code == 200 and r.json()["balance"] >= wallet,
            what="the top-up to reach the wallet",
        )

    await bounded(8, [functools.partial(top_up, buyer) for buyer in market.buyers])


class Restocker:
    """Imports keys before the bench's orders empty an offer, as a seller
    watching their stock would, keeping each pool a few seconds ahead of
    what its offer sells: on FerretDB a reservation scans the whole key
    collection (sold keys included), so every key imported early slows every
    purchase. The bench counts its own orders; it never asks inventory for
    stock (which counts the pool by scanning it too)."""

    AHEAD_SECONDS = 6.0  # import when fewer keys are left than this long sells
    MINIMUM = 10

    def __init__(self, offers: Sequence[BenchOffer]) -> None:
        self._offers = offers
        self._history: dict[str, list[tuple[float, int]]] = {o.offer_id: [] for o in offers}
        self.failures: list[str] = []

    def top_up_now(self, needed: int) -> list[Awaitable[None]]:
        """Imports that bring each offer to `needed` keys left."""
        return [
            import_keys(offer, needed - offer.stock_left)
            for offer in self._offers
            if offer.stock_left < needed
        ]

    def wanted(self, offer: BenchOffer, now: float) -> int:
        """Keys to import for `offer` now: none while it has enough left for
        AHEAD_SECONDS at the pace of the last few seconds, else twice that."""
        history = self._history[offer.offer_id]
        history.append((now, offer.ordered))
        while len(history) > 2 and now - history[0][0] > 5.0:
            history.pop(0)
        first_at, first_ordered = history[0]
        # Over a second at least: a handful of orders in one moment is no pace.
        pace = (offer.ordered - first_ordered) / max(now - first_at, 1.0)
        ahead = max(self.MINIMUM, round(pace * self.AHEAD_SECONDS))
        return 2 * ahead - offer.stock_left if offer.stock_left < ahead else 0

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            for offer in self._offers:
                count = self.wanted(offer, loop.time())
                if count <= 0 or offer._importing.locked():
                    continue
                try:
                    await import_keys(offer, count)
                except Exception as exc:  # a failed import must not stop the run
                    self.failures.append(f"{offer.offer_id}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)


async def wait_for_tiers(
    scrape: Callable[[str], Awaitable[str]], *, timeout: float = 120.0
) -> None:
    """Until delivery has consumed every `IdentityVerified` identity wrote, so
    each buyer's priority is known to the lane before the first order."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        written = counter_total(
            await scrape("identity"), "kami_events_appended_total", event_type="IdentityVerified"
        )
        consumed = counter_total(
            await scrape("delivery"), "kami_events_consumed_total", event_type="IdentityVerified"
        )
        if consumed >= written:
            return
        if loop.time() > deadline:
            raise RuntimeError(
                f"delivery consumed {consumed:.0f} of {written:.0f} IdentityVerified events "
                f"after {timeout:.0f}s"
            )
        await asyncio.sleep(0.5)
