"""Price comparison: seller reliability and the best value."""

from __future__ import annotations

from kami_catalog.domain.comparison import (
    OfferLine,
    ReliabilityPolicy,
    SellerReliability,
    best_value,
)
from kami_events.catalogue.common import DeliveryMode

POLICY = ReliabilityPolicy()
GOOD = SellerReliability(
    deliveries_succeeded=200, deliveries_failed=1, rating_sum=48, rating_count=10
)


def line(
    offer_id: str, price: int, reliability: SellerReliability = GOOD, stock: int | None = 10
) -> OfferLine:
    return OfferLine(offer_id, f"seller-{offer_id}", price, stock, DeliveryMode.AUTO, reliability)


def test_rates_are_in_basis_points_and_ratings_in_thousandths() -> None:
    r = SellerReliability(
        deliveries_succeeded=197,
        deliveries_failed=3,
        tickets_opened=4,
        rating_sum=9,
        rating_count=2,
    )
    assert r.delivery_success_bp == 9_850
    assert r.ticket_rate_bp == 203
    assert r.rating_milli == 4_500
    fresh = SellerReliability()
    assert (fresh.delivery_success_bp, fresh.ticket_rate_bp, fresh.rating_milli) == (
        None,
        None,
        None,
    )
    assert fresh.reliable(POLICY)


def test_what_makes_a_seller_unreliable() -> None:
    assert GOOD.reliable(POLICY)
    assert not SellerReliability(deliveries_succeeded=90, deliveries_failed=10).reliable(POLICY)
    assert not SellerReliability(deliveries_succeeded=100, tickets_opened=6).reliable(POLICY)
    assert not SellerReliability(rating_sum=9, rating_count=3).reliable(POLICY)
    # Two bad reviews are not yet a verdict.
    assert SellerReliability(rating_sum=2, rating_count=2).reliable(POLICY)
    assert not SellerReliability(flagged="warning").reliable(POLICY)


def test_the_cheapest_reliable_offer_is_the_best_value() -> None:
    shady = SellerReliability(deliveries_succeeded=50, deliveries_failed=50)
    lines = [line("a", 9_800), line("b", 9_400, shady), line("c", 9_600)]
    assert best_value(lines, POLICY) == "c"


def test_with_no_reliable_seller_the_cheapest_offer_wins() -> None:
    shady = SellerReliability(deliveries_succeeded=50, deliveries_failed=50)
    assert best_value([line("a", 9_800, shady), line("b", 9_400, shady)], POLICY) == "b"
    assert best_value([], POLICY) is None


def test_ties_go_to_the_better_rated_then_the_better_stocked() -> None:
    better = SellerReliability(deliveries_succeeded=10, rating_sum=50, rating_count=10)
    assert best_value([line("a", 9_500), line("b", 9_500, better)], POLICY) == "b"
    assert best_value([line("a", 9_500, stock=3), line("b", 9_500, stock=30)], POLICY) == "b"
