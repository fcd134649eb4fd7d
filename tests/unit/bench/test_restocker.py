"""Keys are imported a few seconds ahead of what each offer sells."""

from __future__ import annotations

from pathlib import Path

from kami_actors import Person
from kami_bench.market import BenchOffer, Restocker
from kami_local import Platform


def _offer(imported: int, ordered: int, tmp: Path) -> BenchOffer:
    seller = Person(Platform("", "", home=tmp), "13700000000")
    return BenchOffer("offer-1", seller, imported=imported, ordered=ordered)


def test_an_idle_offer_keeps_the_minimum(tmp_path: Path) -> None:
    offer = _offer(imported=10, ordered=0, tmp=tmp_path)
    restocker = Restocker([offer])
    assert restocker.wanted(offer, now=0.0) == 0
    offer.ordered = 5  # over 10 s: too slow to matter, but 5 left is under the minimum
    assert restocker.wanted(offer, now=10.0) == 2 * Restocker.MINIMUM - 5


def test_a_burst_within_a_moment_is_paced_over_a_second_at_least(tmp_path: Path) -> None:
    offer = _offer(imported=200, ordered=0, tmp=tmp_path)
    restocker = Restocker([offer])
    restocker.wanted(offer, now=0.0)
    offer.ordered = 20  # in 0.1 s: counted as 20 keys/s, not 200
    assert restocker.wanted(offer, now=0.1) == 0  # 180 left; 6 s at 20/s is 120
    offer.ordered = 30  # 30/s: 6 s is 180, and 170 are left
    assert restocker.wanted(offer, now=0.2) == 2 * 180 - 170


def test_a_busy_offer_is_kept_ahead_of_its_pace(tmp_path: Path) -> None:
    offer = _offer(imported=200, ordered=0, tmp=tmp_path)
    restocker = Restocker([offer])
    restocker.wanted(offer, now=0.0)
    offer.ordered = 100  # 50 keys/s over 2 s: 6 s ahead is 300 keys
    assert restocker.wanted(offer, now=2.0) == 2 * 300 - 100
    offer.imported += 500  # imported: 600 left, enough
    assert restocker.wanted(offer, now=2.5) == 0
