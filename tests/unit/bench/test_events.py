"""Each order's timeline from its events on Kafka: the latencies come from it."""

from __future__ import annotations

import json

import pytest

from kami_bench.events import timelines_of


def _message(event_type: str, order_id: str, occurred: str, published_ms: int) -> tuple[bytes, int]:
    envelope = {
        "event_id": f"{event_type}-{order_id}",
        "event_type": event_type,
        "occurred_at": occurred,
        "correlation_id": order_id,
        "payload": {},
    }
    return json.dumps(envelope).encode(), published_ms


BASE_MS = 1_800_000_000_000  # 2027-01-15T08:00:00Z in epoch milliseconds


def test_latencies_come_from_occurred_at_and_hops_from_the_publish_times() -> None:
    records = [
        _message("OrderPlaced", "o1", "2027-01-15T08:00:00.000Z", BASE_MS + 5),
        _message("PaymentConfirmed", "o1", "2027-01-15T08:00:01.000Z", BASE_MS + 1_010),
        _message("OrderPaid", "o1", "2027-01-15T08:00:01.030Z", BASE_MS + 1_045),
        _message("KeyDelivered", "o1", "2027-01-15T08:00:01.100Z", BASE_MS + 1_120),
        _message("StockChanged", "o1", "2027-01-15T08:00:01.200Z", BASE_MS + 1_300),
    ]
    timeline = timelines_of(records)["o1"]
    assert set(timeline.events) == {"OrderPlaced", "PaymentConfirmed", "OrderPaid", "KeyDelivered"}
    assert timeline.between("PaymentConfirmed", "KeyDelivered") == pytest.approx(0.100, abs=1e-6)
    assert timeline.between("OrderPlaced", "KeyDelivered") == pytest.approx(1.100, abs=1e-6)
    assert timeline.between("OrderPaid", "KeyDelivered") == pytest.approx(0.070, abs=1e-6)
    hops = timeline.hops()
    assert hops is not None
    assert list(hops.values()) == pytest.approx([0.010, 0.020, 0.015, 0.055], abs=1e-6)
    # The parts add up to payment→delivery.
    assert sum(hops.values()) == pytest.approx(0.100, abs=1e-6)


def test_a_republished_event_keeps_its_first_sighting() -> None:
    records = [
        _message("KeyDelivered", "o1", "2027-01-15T08:00:01.100Z", BASE_MS + 1_120),
        _message("KeyDelivered", "o1", "2027-01-15T08:00:01.100Z", BASE_MS + 9_000),
    ]
    seen = timelines_of(records)["o1"].events["KeyDelivered"]
    assert seen.published_at == pytest.approx((BASE_MS + 1_120) / 1000)


def test_an_unfinished_order_has_no_latency_and_garbage_is_skipped() -> None:
    records: list[tuple[bytes | None, int]] = [
        _message("OrderPlaced", "o2", "2027-01-15T08:00:00Z", BASE_MS),
        (b"not json", BASE_MS),
        (None, BASE_MS),
        (b'["a list"]', BASE_MS),
        (json.dumps({"event_type": "OrderPaid", "correlation_id": 7}).encode(), BASE_MS),
    ]
    timelines = timelines_of(records)
    assert list(timelines) == ["o2"]
    assert timelines["o2"].between("PaymentConfirmed", "KeyDelivered") is None
    assert timelines["o2"].hops() is None
