"""Reading the services' Prometheus endpoints: the MongoDB command timings
and the delivery lane's queue-wait histogram, as snapshots whose difference
covers one phase of the run."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

MONGO_COMMANDS = "kami_mongo_command_seconds"
QUEUE_WAIT = "kami_delivery_queue_wait_seconds"
HANDLERS = "kami_event_handler_seconds"
CONSUMED = "kami_events_consumed_total"
# Ordering's GET /orders/{id}: its requests, and the MongoDB commands they made
# (counted in MONGO_COMMANDS too, so the report takes them out of the saga's).
STATUS_REQUESTS = "kami_order_status_requests_total"
STATUS_COMMANDS = "kami_order_status_read_commands_total"

# (app, collection, command, filter) of kami_mongo_command_seconds.
CommandShape = tuple[str, str, str, str]


@dataclass(frozen=True)
class CommandCost:
    count: float
    seconds: float


@dataclass
class Snapshot:
    """What one scrape of one service said, reduced to what the report uses."""

    commands: dict[CommandShape, CommandCost] = field(default_factory=dict)
    # priority -> upper bound -> cumulative count
    queue_wait: dict[str, dict[float, float]] = field(default_factory=dict)
    # The service's consumer: messages it finished, and its handlers' calls and time.
    consumed: float = 0.0
    handling: CommandCost = CommandCost(0, 0)
    # The buyers' status reads: requests, and their MongoDB commands.
    status_requests: float = 0.0
    status_commands: float = 0.0

    def minus(self, earlier: Snapshot) -> Snapshot:
        """What happened between `earlier` and this scrape (same process)."""
        commands = {}
        for shape, cost in self.commands.items():
            before = earlier.commands.get(shape, CommandCost(0, 0))
            if cost.count - before.count > 0:
                commands[shape] = CommandCost(
                    cost.count - before.count, cost.seconds - before.seconds
                )
        waits = {}
        for priority, buckets in self.queue_wait.items():
            before_buckets = earlier.queue_wait.get(priority, {})
            waits[priority] = {
                bound: count - before_buckets.get(bound, 0.0) for bound, count in buckets.items()
            }
        handling = CommandCost(
            self.handling.count - earlier.handling.count,
            self.handling.seconds - earlier.handling.seconds,
        )
        return Snapshot(
            commands,
            waits,
            self.consumed - earlier.consumed,
            handling,
            self.status_requests - earlier.status_requests,
            self.status_commands - earlier.status_commands,
        )


def parse(text: str) -> Snapshot:
    snapshot = Snapshot()
    sums: dict[CommandShape, float] = {}
    counts: dict[CommandShape, float] = {}
    waits: dict[str, dict[float, float]] = defaultdict(dict)
    handler_seconds = handler_calls = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == MONGO_COMMANDS:
            for sample in family.samples:
                labels = sample.labels
                shape = (labels["app"], labels["collection"], labels["command"], labels["filter"])
                if sample.name.endswith("_sum"):
                    sums[shape] = sample.value
                elif sample.name.endswith("_count"):
                    counts[shape] = sample.value
        elif family.name == HANDLERS:
            for sample in family.samples:
                if sample.name.endswith("_sum"):
                    handler_seconds += sample.value
                elif sample.name.endswith("_count"):
                    handler_calls += sample.value
        elif family.name == CONSUMED.removesuffix("_total"):
            snapshot.consumed += sum(s.value for s in family.samples if s.name == CONSUMED)
        elif family.name == STATUS_REQUESTS.removesuffix("_total"):
            snapshot.status_requests += sum(
                s.value for s in family.samples if s.name == STATUS_REQUESTS
            )
        elif family.name == STATUS_COMMANDS.removesuffix("_total"):
            snapshot.status_commands += sum(
                s.value for s in family.samples if s.name == STATUS_COMMANDS
            )
        elif family.name == QUEUE_WAIT:
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    bound = float(sample.labels["le"])
                    waits[sample.labels["priority"]][bound] = sample.value
    for shape, count in counts.items():
        snapshot.commands[shape] = CommandCost(count, sums.get(shape, 0.0))
    snapshot.queue_wait = {p: b for p, b in waits.items() if math.inf in b}
    snapshot.handling = CommandCost(handler_calls, handler_seconds)
    return snapshot


def merge_commands(snapshots: Mapping[str, Snapshot]) -> dict[CommandShape, CommandCost]:
    """Every service's command costs in one table (the app label names the service)."""
    merged: dict[CommandShape, CommandCost] = {}
    for snapshot in snapshots.values():
        for shape, cost in snapshot.commands.items():
            before = merged.get(shape, CommandCost(0, 0))
            merged[shape] = CommandCost(before.count + cost.count, before.seconds + cost.seconds)
    return merged


def counter_total(text: str, sample_name: str, **labels: str) -> float:
    """The sum of `sample_name`'s samples whose labels include `labels`."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                total += sample.value
    return total
