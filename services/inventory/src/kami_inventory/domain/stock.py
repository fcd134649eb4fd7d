"""Counts of a pool's keys by state."""

from __future__ import annotations

from dataclasses import dataclass, replace

from kami_events.catalogue.inventory import StockChanged


@dataclass(frozen=True)
class StockLevels:
    available: int = 0
    reserved: int = 0
    sold: int = 0
    blocked: int = 0
    voided: int = 0
    # Keys past their expiry that were never sold (still available, or blocked).
    expired: int = 0

    def released(self, count: int) -> StockLevels:
        """The levels once `count` of the reserved keys are back in the pool."""
        return replace(self, available=self.available + count, reserved=self.reserved - count)

    def changed(self, offer_id: str) -> StockChanged:
        return StockChanged(offer_id=offer_id, available=self.available, reserved=self.reserved)
