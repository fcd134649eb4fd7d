"""The figures of a run and where they are written."""

from __future__ import annotations

from pathlib import Path

import pytest

from kami_bench.driver import PhaseRun, Purchase
from kami_bench.events import OrderTimeline, Seen
from kami_bench.metrics import CommandCost
from kami_bench.report import (
    BEGIN,
    END,
    PhaseResult,
    RunReport,
    consumer_rows,
    deepest_backlog,
    figures,
    lane_waits,
    write_results,
)


def _timeline(order_id: str, start: float, pay_to_deliver: float) -> OrderTimeline:
    timeline = OrderTimeline(order_id)
    for event, at in (
        ("OrderPlaced", start),
        ("PaymentConfirmed", start + 0.5),
        ("OrderPaid", start + 0.52),
        ("KeyDelivered", start + 0.5 + pay_to_deliver),
    ):
        timeline.add(event, Seen(at, at + 0.001))
    return timeline


def _phase(name: str = "rate") -> tuple[PhaseResult, dict[str, OrderTimeline]]:
    """20 s of load from t=100: 10 delivered (one in the warm-up, one after
    the load ended), 2 compensated, 1 failed."""
    run = PhaseRun(name, started=100.0, load_ended=120.0, ended=125.0)
    timelines = {}
    for n in range(10):
        finished = 106.0 + n if n < 9 else 121.0
        if n == 0:
            finished = 103.0  # within the 4 s warm-up
        order = f"o{n}"
        run.purchases.append(
            Purchase(name, "phone", "offer", 100.0 + n, order, "delivered", "", finished)
        )
        timelines[order] = _timeline(order, 1_000.0 + n, 0.010 * (n + 1))
    run.purchases += [
        Purchase(name, "phone", "offer", 101.0, "c1", "compensated", "CANCELLED: out_of_stock"),
        Purchase(name, "phone", "offer", 101.0, "c2", "compensated", "CANCELLED: out_of_stock"),
        Purchase(name, "phone", "offer", 101.0, None, "failed", "place: 422 invalid"),
    ]
    return PhaseResult(run, "open loop, 50/s for 20 s", {}, {}, {}), timelines


def test_throughput_counts_deliveries_seen_between_the_warm_up_and_the_end_of_the_load() -> None:
    result, timelines = _phase()
    fig = figures(result, timelines)
    # Warm-up min(5 s, 20 % of 20 s) = 4 s: the window is 16 s, 8 deliveries in it.
    assert fig.window == pytest.approx(16.0)
    assert fig.throughput == pytest.approx(8 / 16)
    assert (fig.started, fig.delivered, fig.compensated, fig.failed) == (13, 10, 2, 1)
    assert fig.compensation_rate == pytest.approx(2 / 12)
    assert fig.reasons["CANCELLED: out_of_stock"] == 2


def test_latencies_are_the_events_not_the_client() -> None:
    result, timelines = _phase()
    fig = figures(result, timelines)
    assert fig.payment_to_delivery.count == 10
    assert fig.payment_to_delivery.p50 == pytest.approx(0.055)
    assert fig.payment_to_delivery.max == pytest.approx(0.100)
    assert fig.order_to_delivery.p50 == pytest.approx(0.555)


def test_the_burst_counts_the_rate_its_backlog_drained_at() -> None:
    result, timelines = _phase("burst")
    fig = figures(result, timelines)
    first_paid = 1_000.5
    last_delivered = 1_009.0 + 0.5 + 0.100
    assert fig.throughput == pytest.approx(10 / (last_delivered - first_paid))


def test_lane_waits_are_per_tier() -> None:
    result, timelines = _phase()
    result.run.purchases[1].tier = "advanced"
    waits = lane_waits(result.run.purchases, timelines)
    assert waits["advanced"].count == 1
    assert waits["advanced"].p50 == pytest.approx(0.020 - 0.02)
    assert waits["phone"].count == 9


def test_deepest_backlog_is_the_most_orders_paid_and_not_yet_delivered() -> None:
    assert deepest_backlog([]) == 0
    assert deepest_backlog([(0, 1), (1, 2), (2, 3)]) == 1  # one leaves as the next comes
    assert deepest_backlog([(0, 10), (1, 2), (1.5, 3), (5, 6)]) == 3


def test_the_targets_say_plainly_what_was_missed(tmp_path: Path) -> None:
    result, timelines = _phase()
    saturation, _ = _phase("saturation")
    report = RunReport(
        title="test",
        machine=["2 cores"],
        command="bench",
        settings=[],
        floor=None,
        phases=[result, saturation],
        timelines=timelines,
        services=["ordering"],
        peaks={"ordering": 200 * 1024 * 1024},
        profile="py-spy could not attach",
        tier_priority={"phone": 0},
    )
    text = report.markdown()
    assert "| ≥ 100 completed purchases/s at saturation (300 the goal) | 0.5/s | no |" in text
    assert "| every service ≤ 150 MB peak RSS | max 200 MB (ordering) | no |" in text
    # p99 under 100 ms, but 3 of the 13 purchases were not delivered.
    assert "| 99.1 ms, 10 of 13 delivered (open loop, 50/s for 20 s) | no |" in text
    assert "not measured in this run (`--replicas SERVICE=2`)" in text
    assert "No profile: py-spy could not attach." in text


def test_commands_per_purchase_leave_the_buyers_status_reads_apart() -> None:
    result, timelines = _phase("saturation")
    result.commands = {
        ("kami-ordering", "events", "find", "_id"): CommandCost(300, 0.3),
        ("kami-inventory", "keys", "insert", ""): CommandCost(100, 0.1),
    }
    result.status_requests, result.status_commands = 20, 100
    report = RunReport(
        title="test",
        machine=[],
        command="bench",
        settings=[],
        floor=None,
        phases=[result],
        timelines=timelines,
        services=["ordering"],
        peaks={},
        profile=None,
        tier_priority={},
    )
    text = report.markdown()
    # 400 commands, 100 of them status reads, over 10 delivered purchases.
    assert "| 30.0 at saturation, + 10.0 by status reads | yes |" in text
    assert "30.0 MongoDB commands per delivered purchase" in text
    assert "2.0 requests per purchase" in text


def test_the_replica_figure_is_saturation_with_the_replicas_over_without() -> None:
    single, timelines = _phase("saturation-one")
    replicated, _ = _phase("saturation")
    replicated.run.purchases += [
        Purchase("saturation", "phone", "offer", 101.0, f"x{n}", "delivered", "", 110.0)
        for n in range(8)
    ]
    replicated.processes = {"ordering": 2}
    report = RunReport(
        title="test",
        machine=[],
        command="bench",
        settings=[],
        floor=None,
        phases=[single, replicated],
        timelines=timelines,
        services=["ordering", "ordering-2"],
        peaks={},
        profile=None,
        tier_priority={},
        replicas={"ordering": 2},
    )
    assert report.replica_gain() == pytest.approx(2.0)  # 16 deliveries in the window, not 8
    text = report.markdown()
    assert "| 2 processes of ordering ≥ 1.6 × its throughput | 2.00 × | yes |" in text
    assert "| saturation | ordering ×2 | 1.0 |" in text
    assert "| saturation-one | ordering ×1 | 0.5 |" in text


def test_results_replace_the_marked_block_and_keep_the_prose(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Performance\n\nHow to run.\n\n{BEGIN}\nold figures\n{END}\n\nAfter.\n")
    write_results(doc, "new figures\n")
    text = doc.read_text()
    assert "old figures" not in text
    assert text.startswith("# Performance\n\nHow to run.\n\n")
    assert f"{BEGIN}\nnew figures\n{END}" in text
    assert text.endswith("After.\n")


def test_results_are_appended_with_their_markers_to_a_file_without_them(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n")
    write_results(doc, "figures")
    assert doc.read_text() == f"# Performance\n\n{BEGIN}\nfigures\n{END}\n"
    fresh = tmp_path / "new.md"
    write_results(fresh, "figures")
    assert fresh.read_text() == f"{BEGIN}\nfigures\n{END}\n"


def test_a_serial_consumer_busy_all_phase_long_is_a_ceiling() -> None:
    result, _ = _phase("saturation")  # 25 s from start to end
    result.consumers = {
        # 40 messages for 10 purchases, 0.5 s each: busy 20 of 25 s, at most 0.5 purchases/s.
        "ordering": (40.0, CommandCost(40, 20.0)),
        "catalog": (10.0, CommandCost(10, 0.1)),
        "identity": (0.0, CommandCost(0, 0.0)),
    }
    rows = consumer_rows(result, delivered=10)
    assert rows[0] == ["ordering", "40", "4.0", "500.0", "80%", "0.5"]
    assert rows[1] == ["catalog", "10", "1.0", "10.0", "0%", "100"]
    assert len(rows) == 2  # a consumer with no message says nothing
