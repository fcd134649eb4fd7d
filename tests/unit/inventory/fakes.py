"""In-memory stand-ins for inventory's storage, with the same semantics as the
MongoDB adapters (first insert wins, moves claimed per key generation)."""

from __future__ import annotations

import base64
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from kami_events.catalogue.catalog import OfferListed
from kami_events.catalogue.common import DeliveryMode
from kami_events.clock import ManualClock
from kami_events.testing import InMemoryEventStore
from kami_inventory.adapters.crypto import KeyCipher, KeyRing
from kami_inventory.domain.imports import FileFormat, ImportReport, key_id_for
from kami_inventory.domain.keys import KeyStatus, PoolKey, Transition
from kami_inventory.domain.offers import Offer, Product
from kami_inventory.domain.replacements import Replacement
from kami_inventory.domain.reservations import Reservation, ReservationPolicy
from kami_inventory.domain.stock import BookedStock, LiveStock, StockLevels
from kami_inventory.handlers import (
    ImportKeys,
    Inventory,
    PoolRules,
    import_keys,
    record_offer_listed,
)
from kami_inventory.ports import (
    ImportRecord,
    NewKey,
    PendingWork,
    RevealRecord,
    SealedKey,
    WrappedKey,
)
from tests.unit.inventory.samples import offer_listed


class Interrupted(Exception):
    """A simulated crash between deciding a move and writing it."""


@dataclass
class _Claim:
    key_id: str
    gen: int
    op: str
    target: PoolKey
    at: datetime
    applied: bool = False
    held: bool = False


class FakeKeyStore:
    def __init__(self, clock: ManualClock) -> None:
        self._clock = clock
        self.keys: dict[str, PoolKey] = {}
        self.rows: dict[str, NewKey] = {}
        self.claims: dict[str, _Claim] = {}
        # Ops whose next move is decided (claimed) and then "crashes" unwritten.
        self.interrupt: set[str] = set()

    async def add(self, keys: Sequence[NewKey]) -> None:
        for key in keys:
            taken = any(
                r.offer_id == key.offer_id and r.fingerprint == key.fingerprint
                for r in self.rows.values()
            )
            if key.key_id in self.rows or taken:
                continue
            self.rows[key.key_id] = key
            self.keys[key.key_id] = PoolKey(
                key.key_id, key.offer_id, KeyStatus.AVAILABLE, 0, key.expires_at
            )

    async def present(self, key_ids: Collection[str]) -> set[str]:
        return {k for k in key_ids if k in self.rows}

    async def holders(self, offer_id: str, fingerprints: Collection[str]) -> dict[str, str]:
        return {
            r.fingerprint: r.key_id
            for r in self.rows.values()
            if r.offer_id == offer_id and r.fingerprint in fingerprints
        }

    async def available(
        self, offer_id: str, expiring_after: datetime, exclude: Collection[str], limit: int
    ) -> list[PoolKey]:
        found = [
            k
            for k in self.keys.values()
            if k.offer_id == offer_id
            and k.status is KeyStatus.AVAILABLE
            and k.expires_at > expiring_after
            and k.key_id not in exclude
        ]
        return sorted(found, key=lambda k: (k.expires_at, k.key_id))[:limit]

    async def of_order(self, order_id: str, status: KeyStatus) -> list[PoolKey]:
        return [k for k in self.keys.values() if k.order_id == order_id and k.status is status]

    async def get(self, key_ids: Collection[str], *, settle: str | None = None) -> list[PoolKey]:
        current = []
        for key_id in key_ids:
            key = self.keys.get(key_id)
            if key is None:
                continue
            while (claim := self.claims.get(f"{key_id}@{key.gen}")) is not None:
                if claim.op == settle and not (claim.applied or claim.held):
                    self._apply(claim)
                key = claim.target
            current.append(key)
        return current

    async def get_sealed(self, key_ids: Collection[str]) -> list[tuple[PoolKey, SealedKey]]:
        sealed = {s.key_id: s for s in await self.sealed(key_ids)}
        return [(key, sealed[key.key_id]) for key in await self.get(key_ids)]

    async def move(
        self, key: PoolKey, transition: Transition, op: str, *, write: bool = True
    ) -> bool:
        if not transition.allows(key):
            return False
        claim_id = f"{key.key_id}@{key.gen}"
        existing = self.claims.get(claim_id)
        if existing is not None:
            if existing.op != op:
                return False
            if write:
                self._apply(existing)
            return True
        claim = _Claim(
            key.key_id, key.gen, op, transition.apply(key), self._clock(), held=not write
        )
        self.claims[claim_id] = claim
        if op in self.interrupt:
            self.interrupt.discard(op)
            raise Interrupted(op)
        if write:
            self._apply(claim)
        return True

    def _apply(self, claim: _Claim) -> None:
        if self.keys[claim.key_id].gen == claim.gen:
            self.keys[claim.key_id] = claim.target
        claim.applied = True

    async def moved_by(self, op: str) -> list[str]:
        return sorted({c.key_id for c in self.claims.values() if c.op == op})

    async def resume(self, op: str) -> None:
        for claim in list(self.claims.values()):
            if claim.op == op and not claim.applied:
                self._apply(claim)

    async def finish_stale_moves(self, older_than: timedelta) -> int:
        cutoff = self._clock() - older_than
        stale = [c for c in self.claims.values() if not (c.applied or c.held) and c.at <= cutoff]
        for claim in stale:
            self._apply(claim)
        return len(stale)

    async def sealed(self, key_ids: Collection[str]) -> list[SealedKey]:
        return [
            SealedKey(k, self.rows[k].offer_id, self.rows[k].sealed)
            for k in key_ids
            if k in self.rows
        ]

    async def stock(self, offer_id: str, now: datetime) -> StockLevels:
        expired = (await self.expired(now)).get(offer_id, 0)
        return replace(await self.counts(offer_id), expired=expired)

    async def live(self, offer_id: str) -> LiveStock:
        return (await self.counts(offer_id)).live

    async def counts(self, offer_id: str) -> StockLevels:
        pool = [k for k in self.keys.values() if k.offer_id == offer_id]

        def count(status: KeyStatus) -> int:
            return sum(1 for k in pool if k.status is status)

        return StockLevels(
            available=count(KeyStatus.AVAILABLE),
            reserved=count(KeyStatus.RESERVED),
            sold=count(KeyStatus.SOLD),
            blocked=count(KeyStatus.BLOCKED),
            voided=count(KeyStatus.VOIDED),
        )

    async def expired(self, now: datetime) -> dict[str, int]:
        expired: dict[str, int] = {}
        for k in self.keys.values():
            if k.status in (KeyStatus.AVAILABLE, KeyStatus.BLOCKED) and k.expires_at <= now:
                expired[k.offer_id] = expired.get(k.offer_id, 0) + 1
        return expired

    async def page(
        self, offer_id: str, status: KeyStatus | None, after: str | None, limit: int
    ) -> list[PoolKey]:
        found = sorted(
            (
                k
                for k in self.keys.values()
                if k.offer_id == offer_id
                and (status is None or k.status is status)
                and (after is None or k.key_id > after)
            ),
            key=lambda k: k.key_id,
        )
        return found[:limit]

    async def expiring(self, before: datetime, limit: int) -> list[PoolKey]:
        found = [
            k
            for k in self.keys.values()
            if k.status is KeyStatus.AVAILABLE and k.expires_at <= before
        ]
        return sorted(found, key=lambda k: k.expires_at)[:limit]

    # test helpers
    def status_of(self, key_id: str) -> KeyStatus:
        return self.keys[key_id].status

    def by_status(self, offer_id: str, status: KeyStatus) -> list[str]:
        return sorted(
            k.key_id for k in self.keys.values() if k.offer_id == offer_id and k.status is status
        )


class FakeOffers:
    def __init__(self) -> None:
        self.offers: dict[str, tuple[int, Offer]] = {}
        self.products: dict[str, tuple[int, Product]] = {}

    async def get(self, offer_id: str) -> Offer | None:
        entry = self.offers.get(offer_id)
        return entry[1] if entry else None

    async def of_seller(self, seller_id: str) -> list[Offer]:
        return sorted(
            (o for _, o in self.offers.values() if o.seller_id == seller_id),
            key=lambda o: o.offer_id,
        )

    async def record_offer(
        self,
        *,
        offer_id: str,
        seller_id: str,
        product_id: str,
        version: int,
        delivery_mode: DeliveryMode | None = None,
        listed: bool | None = None,
    ) -> None:
        entry = self.offers.get(offer_id)
        if entry is not None and entry[0] >= version:
            return
        before = entry[1] if entry else Offer(offer_id, seller_id, product_id, None, False)
        self.offers[offer_id] = (
            version,
            replace(
                before,
                seller_id=seller_id,
                product_id=product_id,
                delivery_mode=delivery_mode if delivery_mode is not None else before.delivery_mode,
                listed=listed if listed is not None else before.listed,
            ),
        )

    async def product(self, product_id: str) -> Product | None:
        entry = self.products.get(product_id)
        return entry[1] if entry else None

    async def record_product(self, product: Product, version: int) -> None:
        entry = self.products.get(product.product_id)
        if entry is None or entry[0] < version:
            self.products[product.product_id] = (version, product)


class FakeImports:
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], ImportRecord] = {}

    async def find(self, offer_id: str, import_id: str) -> ImportRecord | None:
        return self.records.get((offer_id, import_id))

    async def begin(self, record: ImportRecord) -> ImportRecord:
        return self.records.setdefault((record.offer_id, record.import_id), record)

    async def complete(self, offer_id: str, import_id: str, report: ImportReport) -> None:
        self.records[(offer_id, import_id)] = replace(
            self.records[(offer_id, import_id)], report=report
        )


class FakeReservations:
    def __init__(self) -> None:
        self.decisions: dict[str, Reservation] = {}
        self.attempts: set[str] = set()

    async def find(self, order_id: str) -> Reservation | None:
        return self.decisions.get(order_id)

    async def begin_attempt(self, order_id: str) -> bool:
        first = order_id not in self.attempts
        self.attempts.add(order_id)
        return first

    async def decide(self, reservation: Reservation) -> Reservation:
        return self.decisions.setdefault(reservation.order_id, reservation)


class FakeReplacements:
    def __init__(self) -> None:
        self.decisions: dict[str, Replacement] = {}
        self.replaced_by: dict[str, str] = {}

    async def find(self, ticket_id: str) -> Replacement | None:
        return self.decisions.get(ticket_id)

    async def decide(self, replacement: Replacement) -> Replacement:
        return self.decisions.setdefault(replacement.ticket_id, replacement)

    async def link(self, replacement: Replacement) -> None:
        for faulty, new in replacement.pairs().items():
            self.replaced_by.setdefault(faulty, new)

    async def replacing(self, key_id: str) -> str | None:
        return self.replaced_by.get(key_id)


class FakeWork:
    def __init__(self) -> None:
        self.entries: dict[str, tuple[PendingWork, bool]] = {}

    async def begin(self, work: PendingWork) -> PendingWork:
        return self.entries.setdefault(work.op, (work, False))[0]

    async def finish(self, op: str) -> None:
        self.entries[op] = (self.entries[op][0], True)

    async def stale(self, started_before: datetime, limit: int) -> list[PendingWork]:
        return [
            w for w, done in self.entries.values() if not done and w.started_at <= started_before
        ][:limit]


class FakeDataKeys:
    def __init__(self) -> None:
        self.keys: dict[str, WrappedKey] = {}

    async def get(self, offer_id: str) -> WrappedKey | None:
        return self.keys.get(offer_id)

    async def put_if_absent(self, offer_id: str, wrapped: WrappedKey) -> WrappedKey:
        return self.keys.setdefault(offer_id, wrapped)


class FakeStockBook:
    def __init__(self) -> None:
        self.pools: dict[str, BookedStock] = {}

    async def record(self, offer_id: str, version: int, stock: LiveStock) -> None:
        kept = self.pools.get(offer_id, BookedStock(0, StockLevels()))
        if kept.version < version or offer_id not in self.pools:
            levels = replace(kept.levels, available=stock.available, reserved=stock.reserved)
            self.pools[offer_id] = replace(kept, version=version, levels=levels)

    async def record_settled(self, offer_id: str, version: int, stock: StockLevels) -> None:
        kept = self.pools[offer_id]
        if kept.settled_version is None or kept.settled_version < version:
            levels = replace(
                kept.levels, sold=stock.sold, blocked=stock.blocked, voided=stock.voided
            )
            self.pools[offer_id] = replace(kept, levels=levels, settled_version=version)

    async def all(self) -> dict[str, BookedStock]:
        return dict(self.pools)


class FakeAudit:
    def __init__(self) -> None:
        self.entries: list[RevealRecord] = []

    async def record(self, entry: RevealRecord) -> None:
        self.entries.append(entry)


def new_cipher() -> KeyCipher:
    return KeyCipher(os.urandom(32), os.urandom(32))


def b64_key(size: int = 32) -> str:
    return base64.b64encode(os.urandom(size)).decode()


RULES = PoolRules(
    max_import_keys=50,
    max_key_length=40,
    timezone=ZoneInfo("Asia/Shanghai"),
    default_validity=timedelta(days=365),
    reservation=ReservationPolicy(grace=timedelta(minutes=2), expiry_margin=timedelta(days=1)),
    stale_after=timedelta(seconds=30),
    reveal_services=frozenset({"delivery"}),
)


async def _no_sleep(_: float) -> None:
    return None


@dataclass
class World:
    """An inventory on fakes, and handles on each fake for assertions."""

    clock: ManualClock = field(default_factory=ManualClock)
    rules: PoolRules = RULES

    def __post_init__(self) -> None:
        self.store = InMemoryEventStore(producer="inventory", clock=self.clock)
        self.keys = FakeKeyStore(self.clock)
        self.offers = FakeOffers()
        self.imports = FakeImports()
        self.reservations = FakeReservations()
        self.work = FakeWork()
        self.audit = FakeAudit()
        self.stock_book = FakeStockBook()
        self.data_keys = FakeDataKeys()
        self.replacements = FakeReplacements()
        self.inventory = Inventory(
            store=self.store,
            keys=self.keys,
            offers=self.offers,
            imports=self.imports,
            reservations=self.reservations,
            work=self.work,
            audit=self.audit,
            stock_book=self.stock_book,
            replacements=self.replacements,
            keyring=KeyRing(new_cipher(), self.data_keys),
            rules=self.rules,
            clock=self.clock,
            sleep=_no_sleep,
        )

    def events(self, offer_id: str | None = None) -> list[object]:
        return [
            e.payload
            for e in self.store.committed
            if offer_id is None or e.aggregate_id == offer_id
        ]

    def event_types(self, offer_id: str | None = None) -> list[str]:
        return [type(e).__name__ for e in self.events(offer_id)]

    async def list_offer(self, event: OfferListed, version: int = 1) -> None:
        await record_offer_listed(event, version, self.inventory)

    async def import_file(
        self,
        offer_id: str,
        content: str,
        *,
        import_id: str = "import-1",
        seller_id: str = "seller-a",
        file_format: FileFormat = FileFormat.CSV,
        expires_at: datetime | None = None,
    ) -> ImportReport:
        report, _ = await import_keys(
            ImportKeys(seller_id, offer_id, import_id, file_format, content, expires_at),
            self.inventory,
        )
        return report

    async def stock_pool(self, offer_id: str, days: list[int]) -> list[str]:
        """List the offer and import one key per entry of `days` (its expiry, in
        days from now); returns the key ids in that order."""
        await self.list_offer(offer_listed(offer_id))
        now = self.clock()
        content = "".join(
            f"{offer_id}-KEY-{n:04d},{(now + timedelta(days=d)).isoformat()}\n"
            for n, d in enumerate(days)
        )
        import_id = f"stock-{len(self.imports.records)}"
        report = await self.import_file(offer_id, content, import_id=import_id)
        assert report.imported == len(days), report
        return [key_id_for(offer_id, import_id, line) for line in range(1, len(days) + 1)]
