"""Counts of a pool's keys by state."""

from __future__ import annotations

from dataclasses import dataclass, replace

from kami_events.catalogue.inventory import StockChanged


@dataclass(frozen=True)
class LiveStock:
    """The keys a pool can still sell or holds for orders: what every commit
    counts and announces (`StockChanged`). Counted apart from the sold, blocked
    and voided keys, which a busy pool gathers by the thousand and which a
    count of the live ones never reads."""

    available: int = 0
    reserved: int = 0

    def released(self, count: int) -> LiveStock:
        """The counts once `count` of the reserved keys are back in the pool."""
        return replace(self, available=self.available + count, reserved=self.reserved - count)

    def changed(self, offer_id: str) -> StockChanged:
        return StockChanged(offer_id=offer_id, available=self.available, reserved=self.reserved)


@dataclass(frozen=True)
class StockLevels:
    available: int = 0
    reserved: int = 0
    sold: int = 0
    blocked: int = 0
    voided: int = 0
    # Keys past their expiry that were never sold (still available, or blocked).
    expired: int = 0

    @property
    def live(self) -> LiveStock:
        return LiveStock(available=self.available, reserved=self.reserved)


@dataclass(frozen=True)
class BookedStock:
    """A pool's entry in the stock book: the live counts of its last commit
    (stream `version`), and its sold, blocked and voided keys as last counted,
    at `settled_version` (None: never)."""

    version: int
    levels: StockLevels
    settled_version: int | None = None

    @property
    def settled_behind(self) -> bool:
        return self.settled_version != self.version
