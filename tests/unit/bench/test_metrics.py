"""Reading the services' /metrics: MongoDB command costs and the lane's waits
per phase, as differences of two scrapes."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from kami_bench.metrics import CommandCost, counter_total, merge_commands, parse


def _registry() -> tuple[CollectorRegistry, Histogram, Histogram, Counter]:
    registry = CollectorRegistry()
    commands = Histogram(
        "kami_mongo_command_seconds",
        "MongoDB commands",
        ["app", "collection", "command", "filter"],
        registry=registry,
    )
    waits = Histogram(
        "kami_delivery_queue_wait_seconds",
        "queue wait",
        ["priority"],
        buckets=(0.1, 0.5, 1),
        registry=registry,
    )
    consumed = Counter(
        "kami_events_consumed", "consumed", ["service", "event_type", "outcome"], registry=registry
    )
    return registry, commands, waits, consumed


def test_a_phase_is_the_difference_of_two_scrapes() -> None:
    registry, commands, waits, _ = _registry()
    commands.labels("kami-ordering", "events", "find", "_id").observe(0.002)
    waits.labels("0").observe(0.05)
    before = parse(generate_latest(registry).decode())

    commands.labels("kami-ordering", "events", "find", "_id").observe(0.004)
    commands.labels("kami-inventory", "keys", "find", "offer_id,status").observe(0.3)
    waits.labels("0").observe(0.7)
    waits.labels("2").observe(0.2)
    after = parse(generate_latest(registry).decode())

    phase = after.minus(before)
    by_id = phase.commands[("kami-ordering", "events", "find", "_id")]
    assert by_id.count == 1
    assert by_id.seconds == pytest.approx(0.004)
    assert phase.commands[("kami-inventory", "keys", "find", "offer_id,status")].count == 1
    # Priority 0: only the 0.7 s wait is this phase's (bucket 1 s and +Inf).
    assert phase.queue_wait["0"] == {0.1: 0.0, 0.5: 0.0, 1.0: 1.0, math.inf: 1.0}
    assert phase.queue_wait["2"][0.5] == 1.0


def test_commands_of_all_services_merge_by_shape() -> None:
    registry, commands, _, _ = _registry()
    commands.labels("kami-payment", "events", "insert", "").observe(0.01)
    one = parse(generate_latest(registry).decode())
    merged = merge_commands({"payment": one, "again": one})
    assert merged[("kami-payment", "events", "insert", "")] == CommandCost(2, 0.02)


def test_counter_total_sums_the_samples_whose_labels_match() -> None:
    registry, _, _, consumed = _registry()
    consumed.labels("delivery", "IdentityVerified", "handled").inc(3)
    consumed.labels("delivery", "IdentityVerified", "duplicate").inc(1)
    consumed.labels("delivery", "OrderPaid", "handled").inc(7)
    text = generate_latest(registry).decode()
    assert counter_total(text, "kami_events_consumed_total", event_type="IdentityVerified") == 4
    assert counter_total(text, "kami_events_consumed_total") == 11
    assert counter_total(text, "kami_events_consumed_total", event_type="Nothing") == 0


def test_a_consumers_messages_and_handler_time_per_phase() -> None:
    registry = CollectorRegistry()
    handler = Histogram(
        "kami_event_handler_seconds", "handling", ["service", "event_type"], registry=registry
    )
    consumed = Counter(
        "kami_events_consumed", "consumed", ["service", "event_type", "outcome"], registry=registry
    )
    handler.labels("ordering", "KeyReserved").observe(0.5)
    consumed.labels("ordering", "KeyReserved", "handled").inc()
    before = parse(generate_latest(registry).decode())
    handler.labels("ordering", "KeyReserved").observe(0.25)
    handler.labels("ordering", "PaymentConfirmed").observe(0.125)
    consumed.labels("ordering", "KeyReserved", "handled").inc()
    consumed.labels("ordering", "PaymentConfirmed", "handled").inc()
    consumed.labels("ordering", "StockChanged", "ignored").inc()
    phase = parse(generate_latest(registry).decode()).minus(before)
    assert phase.consumed == 3
    assert phase.handling == CommandCost(2, 0.375)


def test_the_buyers_status_reads_are_read_apart() -> None:
    registry = CollectorRegistry()
    requests = Counter("kami_order_status_requests", "r", ["waited"], registry=registry)
    reads = Counter(
        "kami_order_status_read_commands", "c", ["collection", "command"], registry=registry
    )
    requests.labels("true").inc()
    reads.labels("events", "find").inc(2)
    before = parse(generate_latest(registry).decode())
    requests.labels("true").inc(2)
    requests.labels("false").inc()
    reads.labels("events", "find").inc(5)
    phase = parse(generate_latest(registry).decode()).minus(before)

    assert (phase.status_requests, phase.status_commands) == (3, 5)
