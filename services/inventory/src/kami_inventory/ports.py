"""What the handlers need from storage, as protocols: the MongoDB adapters
implement them for real, the fakes in the unit tests in memory."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from kami_events.catalogue.common import DeliveryMode
from kami_inventory.domain.imports import ImportReport
from kami_inventory.domain.keys import KeyStatus, PoolKey, Transition
from kami_inventory.domain.offers import Offer, Product
from kami_inventory.domain.replacements import Replacement
from kami_inventory.domain.reservations import Reservation
from kami_inventory.domain.stock import BookedStock, LiveStock, StockLevels


@dataclass(frozen=True)
class WrappedKey:
    """A pool's data key, encrypted by the master key."""

    blob: bytes = field(repr=False)
    master_key_id: str


@dataclass(frozen=True)
class NewKey:
    key_id: str
    offer_id: str
    seller_id: str
    import_id: str
    line: int
    fingerprint: str
    sealed: bytes = field(repr=False)
    expires_at: datetime
    imported_at: datetime


@dataclass(frozen=True)
class SealedKey:
    key_id: str
    offer_id: str
    sealed: bytes = field(repr=False)


class KeyStore(Protocol):
    """The keys of every pool and their transitions.

    `move` is the only way a key changes state: it succeeds for exactly one
    caller per key generation, and it is idempotent per operation id `op` (a
    retry of the same operation that already moved the key gets True again).
    """

    async def add(self, keys: Sequence[NewKey]) -> None:
        """Insert keys; one whose id or (offer, fingerprint) is taken is skipped."""
        ...

    async def present(self, key_ids: Collection[str]) -> set[str]: ...

    async def holders(self, offer_id: str, fingerprints: Collection[str]) -> dict[str, str]:
        """Fingerprint → id of the pool's key that has it."""
        ...

    async def available(
        self, offer_id: str, expiring_after: datetime, exclude: Collection[str], limit: int
    ) -> list[PoolKey]:
        """Available keys that expire after `expiring_after`, soonest expiry first."""
        ...

    async def of_order(self, order_id: str, status: KeyStatus) -> list[PoolKey]: ...

    async def get(self, key_ids: Collection[str], *, settle: str | None = None) -> list[PoolKey]:
        """The keys' current states (unknown ids are left out). With `settle`,
        the moves of operation `settle` on these keys that a crashed attempt
        decided but did not write are written first (`resume`, for these keys;
        held moves excepted)."""
        ...

    async def get_sealed(self, key_ids: Collection[str]) -> list[tuple[PoolKey, SealedKey]]:
        """`get`, each key with its sealed secret, from one read of the key."""
        ...

    async def move(
        self, key: PoolKey, transition: Transition, op: str, *, write: bool = True
    ) -> bool:
        """Claim `key`'s next generation for `op` and write the move onto the key;
        False if the transition does not apply or another operation claimed it.
        With `write=False` the move is held: the key document keeps its old
        state (so `available` does not offer it) until `resume(op)` writes it,
        and `finish_stale_moves` leaves it alone; `get` already sees it."""
        ...

    async def moved_by(self, op: str) -> list[str]:
        """Ids of the keys operation `op` moved, in a stable order."""
        ...

    async def resume(self, op: str) -> None:
        """Write the moves of `op` that are claimed but not written: a crashed
        attempt's, or the held ones."""
        ...

    async def finish_stale_moves(self, older_than: timedelta) -> int: ...

    async def sealed(self, key_ids: Collection[str]) -> list[SealedKey]: ...

    async def stock(self, offer_id: str, now: datetime) -> StockLevels:
        """`counts` and the pool's keys past their expiry (a seller's view)."""
        ...

    async def counts(self, offer_id: str) -> StockLevels:
        """The pool's keys by state, `expired` left at 0, in one command that
        reads every key of the pool (sellers' views, the gauge's refresh)."""
        ...

    async def live(self, offer_id: str) -> LiveStock:
        """The pool's available and reserved keys: what a commit announces,
        reading only those keys."""
        ...

    async def expired(self, now: datetime) -> dict[str, int]:
        """Per offer, the keys past their expiry that were never sold (still
        available, or blocked); offers without any are left out."""
        ...

    async def page(
        self, offer_id: str, status: KeyStatus | None, after: str | None, limit: int
    ) -> list[PoolKey]:
        """A page of the pool's keys by id, after the id `after`."""
        ...

    async def expiring(self, before: datetime, limit: int) -> list[PoolKey]:
        """Available keys of any pool that expire at or before `before`."""
        ...


class OfferDirectory(Protocol):
    async def get(self, offer_id: str) -> Offer | None: ...

    async def of_seller(self, seller_id: str) -> list[Offer]: ...

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
        """Apply one offer event; `None` leaves a field as it was. Events older
        than the last one applied (by stream version) change nothing."""
        ...

    async def product(self, product_id: str) -> Product | None: ...

    async def record_product(self, product: Product, version: int) -> None: ...


@dataclass(frozen=True)
class ImportRecord:
    offer_id: str
    import_id: str
    seller_id: str
    digest: str
    started_at: datetime
    report: ImportReport | None = None


class ImportLog(Protocol):
    async def find(self, offer_id: str, import_id: str) -> ImportRecord | None: ...

    async def begin(self, record: ImportRecord) -> ImportRecord:
        """Record the import unless it is recorded already; returns the stored record."""
        ...

    async def complete(self, offer_id: str, import_id: str, report: ImportReport) -> None: ...


class ReservationBook(Protocol):
    async def find(self, order_id: str) -> Reservation | None: ...

    async def begin_attempt(self, order_id: str) -> bool:
        """Mark that an attempt to reserve for the order starts; False if one
        started before (a redelivery, a duplicate, or a retry after a crash)."""

    async def decide(self, reservation: Reservation) -> Reservation:
        """Record the order's reservation unless one is recorded; returns the stored one."""
        ...


class ReplacementBook(Protocol):
    async def find(self, ticket_id: str) -> Replacement | None: ...

    async def decide(self, replacement: Replacement) -> Replacement:
        """Record the ticket's replacement unless one is recorded; returns the stored one."""
        ...

    async def link(self, replacement: Replacement) -> None:
        """Remember which key replaced which (idempotent)."""
        ...

    async def replacing(self, key_id: str) -> str | None:
        """The key that replaced `key_id`, if one did."""
        ...


class WorkKind(StrEnum):
    SELLER_VOID = "seller_void"
    BLOCK = "block"


@dataclass(frozen=True)
class PendingWork:
    """A batch of moves on one pool and the event announcing them, journaled
    first so that a crash midway is finished by the maintenance job."""

    op: str
    kind: WorkKind
    offer_id: str
    key_ids: tuple[str, ...]
    reason: str
    started_at: datetime


class WorkJournal(Protocol):
    async def begin(self, work: PendingWork) -> PendingWork: ...

    async def finish(self, op: str) -> None: ...

    async def stale(self, started_before: datetime, limit: int) -> list[PendingWork]: ...


class DataKeyStore(Protocol):
    async def get(self, offer_id: str) -> WrappedKey | None: ...

    async def put_if_absent(self, offer_id: str, wrapped: WrappedKey) -> WrappedKey:
        """Store `wrapped` unless the pool has a key already; returns the stored one."""
        ...


@dataclass(frozen=True)
class RevealRecord:
    """Who was given which keys' secrets, and when. Never the secrets."""

    reveal_id: str
    order_id: str
    service: str
    revealed: tuple[str, ...]
    refused: tuple[str, ...]
    at: datetime


class RevealAudit(Protocol):
    async def record(self, entry: RevealRecord) -> None: ...


class StockBook(Protocol):
    """The latest key counts by state of each pool (not `expired`), one small
    document per offer: the `kami_inventory_keys` gauge reads these instead of
    counting the keys at every refresh."""

    async def record(self, offer_id: str, version: int, stock: LiveStock) -> None:
        """Keep the live counts committed at the pool's stream `version`;
        counts from an older version than the kept ones change nothing."""
        ...

    async def record_settled(self, offer_id: str, version: int, stock: StockLevels) -> None:
        """Keep the sold, blocked and voided counts of `stock`, counted once
        the pool's stream was at `version` (older counts change nothing)."""
        ...

    async def all(self) -> dict[str, BookedStock]: ...
