"""Markups, the reseller aggregate's rules, the order's ends, webhook retries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kami_events.catalogue.reseller import (
    ResellerCredentialIssued,
    ResellerMarkupSet,
    ResellerOrderClosed,
    ResellerOrderDelivered,
    ResellerOrderRequested,
    ResellerOrderState,
)
from kami_reseller.domain.order import ResellerOrder
from kami_reseller.domain.pricing import ResellerPrice, price_of
from kami_reseller.domain.reseller import Reseller, ResellerRefused
from kami_reseller.domain.webhooks import RetryPolicy, succeeded

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def approved(default_bp: int = 1000) -> Reseller:
    reseller = Reseller("r-1")
    reseller.approve("u-1", "op-1", default_bp)
    reseller.mark_committed()
    return reseller


# -- pricing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offer_price", "bp", "unit", "margin"),
    [(1000, 1000, 1100, 100), (999, 1000, 1099, 100), (1, 1, 2, 1), (1000, 0, 1000, 0)],
)
def test_the_markup_is_rounded_up_to_the_fen(
    offer_price: int, bp: int, unit: int, margin: int
) -> None:
    price = ResellerPrice(offer_price, bp)
    assert (price.unit_price, price.margin_per_unit) == (unit, margin)


def test_a_per_offer_markup_wins_over_the_default() -> None:
    assert price_of("o-1", 1000, 1000, {"o-1": 2500}).unit_price == 1250
    assert price_of("o-2", 1000, 1000, {"o-1": 2500}).unit_price == 1100
    with pytest.raises(ValueError, match="positive"):
        price_of("o-1", 0, 1000, {})


# -- the reseller ---------------------------------------------------------------------


def test_only_an_approved_reseller_gets_credentials_and_markups() -> None:
    reseller = Reseller("r-1")
    with pytest.raises(ResellerRefused) as refused:
        reseller.issue_credential("rk_1")
    assert refused.value.code == "not_approved"
    reseller = approved()
    reseller.issue_credential("rk_1")
    assert reseller.pending_events == (ResellerCredentialIssued(reseller_id="r-1", key_id="rk_1"),)
    assert reseller.may_sign_with("rk_1")
    assert not reseller.may_sign_with("rk_2")


def test_approving_twice_is_refused() -> None:
    with pytest.raises(ResellerRefused):
        approved().approve("u-1", "op-1", 0)


def test_a_revoked_credential_no_longer_signs() -> None:
    reseller = approved()
    reseller.issue_credential("rk_1")
    reseller.revoke_credential("rk_1", "op-1")
    assert not reseller.may_sign_with("rk_1")
    with pytest.raises(ResellerRefused):
        reseller.revoke_credential("rk_1", "op-1")


def test_markups_are_bounded_and_unchanged_ones_emit_nothing() -> None:
    reseller = approved(default_bp=1000)
    reseller.set_markup(None, 1000)
    assert list(reseller.pending_events) == []
    reseller.set_markup("o-1", 1500)
    assert list(reseller.pending_events) == [
        ResellerMarkupSet(reseller_id="r-1", offer_id="o-1", markup_bp=1500),
    ]
    assert reseller.markups == {"o-1": 1500}
    with pytest.raises(ResellerRefused) as refused:
        reseller.set_markup("o-1", -1)
    assert refused.value.code == "markup_out_of_range"


def test_the_aggregate_rebuilds_from_its_events() -> None:
    reseller = Reseller("r-1")
    reseller.approve("u-1", "op-1", 1000)
    reseller.issue_credential("rk_1")
    reseller.issue_credential("rk_2")
    reseller.revoke_credential("rk_1", "op-1")
    reseller.set_markup("o-1", 2000)
    reseller.set_markup(None, 500)
    reseller.set_webhook("https://shop.example/hook")
    rebuilt = Reseller.rehydrate("r-1", reseller.pending_events)
    assert rebuilt.version == 7
    assert rebuilt.user_id == "u-1"
    assert (rebuilt.default_markup_bp, rebuilt.markups) == (500, {"o-1": 2000})
    assert rebuilt.webhook_url == "https://shop.example/hook"
    assert not rebuilt.may_sign_with("rk_1")
    assert rebuilt.may_sign_with("rk_2")


# -- the order ------------------------------------------------------------------------


def requested() -> ResellerOrder:
    order = ResellerOrder("ord-1")
    order.request("r-1", "u-1", "o-1", 2, ResellerPrice(1000, 1500), "shop-42")
    return order


def test_an_order_books_the_margin_as_reseller_total_minus_total() -> None:
    (event,) = requested().pending_events
    assert isinstance(event, ResellerOrderRequested)
    assert (event.total, event.reseller_total, event.margin) == (2000, 2300, 300)
    assert event.reseller_unit_price == 1150


def test_delivery_then_refund_and_replays_change_nothing() -> None:
    order = requested()
    assert order.delivered(["k-1", "k-2"], NOW)
    assert not order.delivered(["k-1", "k-2"], NOW)
    assert not order.closed(ResellerOrderState.CANCELLED, "late", 0)
    assert order.closed(ResellerOrderState.REFUNDED, "claim_upheld", 2300)
    assert not order.closed(ResellerOrderState.REFUNDED, "claim_upheld", 2300)
    kinds = [type(e) for e in order.pending_events]
    assert kinds == [ResellerOrderRequested, ResellerOrderDelivered, ResellerOrderClosed]
    assert order.state is ResellerOrderState.REFUNDED
    assert order.refunded_amount == 2300


def test_a_cancelled_order_is_never_delivered() -> None:
    order = requested()
    assert order.closed(ResellerOrderState.CANCELLED, "out_of_stock", 0)
    assert not order.delivered(["k-1"], NOW)
    with pytest.raises(ValueError, match="does not close"):
        order.closed(ResellerOrderState.DELIVERED, None, 0)


# -- webhook retries ------------------------------------------------------------------


def test_retries_back_off_exponentially_up_to_a_cap_then_stop() -> None:
    policy = RetryPolicy(
        base_delay=timedelta(seconds=2), max_delay=timedelta(seconds=30), max_attempts=6
    )
    delays = [policy.delay_after(n).total_seconds() for n in range(1, 7)]
    assert delays == [2, 4, 8, 16, 30, 30]
    assert policy.next_attempt_at(1, NOW) == NOW + timedelta(seconds=2)
    assert policy.next_attempt_at(6, NOW) is None


@pytest.mark.parametrize(
    ("code", "ok"), [(200, True), (204, True), (301, False), (500, False), (None, False)]
)
def test_only_a_2xx_answer_delivers(code: int | None, ok: bool) -> None:
    assert succeeded(code) is ok
