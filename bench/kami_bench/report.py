"""The figures of a run, and their Markdown (printed, and written into
docs/performance.md between two markers, so the prose around stays)."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kami_bench.driver import PhaseRun, Purchase
from kami_bench.events import OrderTimeline
from kami_bench.floor import Floor
from kami_bench.metrics import CommandCost, CommandShape
from kami_bench.profile import Profile
from kami_bench.stats import Summary, histogram_quantile, percentile

BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"

# Issue 13's targets.
TARGET_THROUGHPUT = 100.0  # completed purchases per second at saturation
GOAL_THROUGHPUT = 300.0  # ...and where it should get to
TARGET_P99 = 0.100  # payment→delivery p99 at 50 purchases/s, seconds, all delivered
TARGET_RATE = 50.0
TARGET_RSS = 150 * 1024 * 1024  # per service process
TARGET_COMMANDS = 30.0  # MongoDB commands per delivered purchase, status reads apart
TARGET_REPLICA_GAIN = 1.6  # throughput with 2 processes of a service over 1

# The saturation phase again before the replicas start (--replicas).
SINGLE = "saturation-one"

# The hops payment→delivery crosses (kami_bench.events.OrderTimeline.hops).
KAFKA_HOPS = (
    "PaymentConfirmed: payment's relay → Kafka → ordering",
    "OrderPaid: ordering's relay → Kafka → delivery",
)
STORE_WRITES = (
    "payment appends PaymentConfirmed",
    "ordering appends OrderPaid",
    "delivery appends KeyDelivered",
)
STORE_READS = ("ordering loads the order", "delivery reads the order it queued")


@dataclass
class PhaseResult:
    run: PhaseRun
    description: str
    cpu: dict[str, float]  # CPU seconds of each process during the phase
    commands: dict[CommandShape, CommandCost]  # every service's MongoDB commands in the phase
    queue_wait: dict[str, dict[float, float]]  # delivery's histogram, this phase's share
    # Each process's consumer in the phase: messages finished, handler calls and seconds.
    consumers: dict[str, tuple[float, CommandCost]] = field(default_factory=dict)
    # The buyers' GET /orders/{id}: requests, and the MongoDB commands they made
    # (these are in `commands` too).
    status_requests: float = 0.0
    status_commands: float = 0.0
    # Processes of each service that ran replicated in this phase.
    processes: dict[str, int] = field(default_factory=dict)

    def saga_commands(self) -> float:
        """The platform's MongoDB commands, the buyers' status reads taken out."""
        return sum(c.count for c in self.commands.values()) - self.status_commands


@dataclass(frozen=True)
class Figures:
    started: int
    delivered: int
    compensated: int
    failed: int
    timed_out: int
    dropped: int
    throughput: float  # delivered purchases per second over the measured window
    window: float
    payment_to_delivery: Summary
    order_to_delivery: Summary
    client_end_to_end: Summary
    compensation_rate: float | None
    reasons: Counter[str]


def warmup_of(duration: float) -> float:
    return min(5.0, 0.2 * duration)


def figures(result: PhaseResult, timelines: Mapping[str, OrderTimeline]) -> Figures:
    run = result.run
    purchases = run.purchases
    delivered = [p for p in purchases if p.outcome == "delivered"]
    compensated = [p for p in purchases if p.outcome == "compensated"]
    failed = [p for p in purchases if p.outcome == "failed"]
    timed_out = [p for p in purchases if p.outcome in ("timeout", "pending")]

    if run.name == "burst":
        # All paid at one moment: the rate at which the backlog drained.
        paid = [_at(timelines, p, "PaymentConfirmed") for p in purchases]
        done = [_at(timelines, p, "KeyDelivered") for p in purchases]
        known = [(a, b) for a, b in zip(paid, done, strict=True) if a is not None and b is not None]
        window = (max(b for _, b in known) - min(a for a, _ in known)) if known else 0.0
        throughput = len(known) / window if window > 0 else 0.0
    else:
        duration = run.load_ended - run.started
        warmup = warmup_of(duration)
        window = duration - warmup
        counted = [
            p
            for p in delivered
            if p.finished is not None and run.started + warmup <= p.finished <= run.load_ended
        ]
        throughput = len(counted) / window if window > 0 else 0.0

    def span(start: str, end: str) -> Summary:
        # Every order the events show delivered, also those the client gave up on.
        samples = []
        for p in purchases:
            timeline = timelines.get(p.order_id or "")
            took = timeline.between(start, end) if timeline else None
            if took is not None:
                samples.append(took)
        return Summary.of(samples)

    ended = len(delivered) + len(compensated)
    reasons = Counter(p.detail for p in [*compensated, *failed, *timed_out])
    return Figures(
        started=len(purchases),
        delivered=len(delivered),
        compensated=len(compensated),
        failed=len(failed),
        timed_out=len(timed_out),
        dropped=run.dropped,
        throughput=throughput,
        window=window,
        payment_to_delivery=span("PaymentConfirmed", "KeyDelivered"),
        order_to_delivery=span("OrderPlaced", "KeyDelivered"),
        client_end_to_end=Summary.of(
            [p.finished - p.started for p in delivered if p.finished is not None]
        ),
        compensation_rate=len(compensated) / ended if ended else None,
        reasons=reasons,
    )


def _at(timelines: Mapping[str, OrderTimeline], p: Purchase, event: str) -> float | None:
    timeline = timelines.get(p.order_id or "")
    seen = timeline.events.get(event) if timeline else None
    return seen.occurred_at if seen else None


def lane_waits(
    purchases: Iterable[Purchase], timelines: Mapping[str, OrderTimeline]
) -> dict[str, Summary]:
    """Per buyer tier: OrderPaid → KeyDelivered, what the lane's histogram observes."""
    by_tier: dict[str, list[float]] = {}
    for p in purchases:
        timeline = timelines.get(p.order_id or "")
        took = timeline.between("OrderPaid", "KeyDelivered") if timeline else None
        if took is not None:
            by_tier.setdefault(p.tier, []).append(took)
    return {tier: Summary.of(samples) for tier, samples in by_tier.items()}


def deepest_backlog(intervals: Iterable[tuple[float, float]]) -> int:
    """The most orders paid and not yet delivered at any one moment."""
    moments = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
        # At a tie a delivery leaves before a payment joins.
        key=lambda moment: (moment[0], moment[1]),
    )
    depth = deepest = 0
    for _, change in moments:
        depth += change
        deepest = max(deepest, depth)
    return deepest


def paid_intervals(
    purchases: Iterable[Purchase], timelines: Mapping[str, OrderTimeline]
) -> list[tuple[float, float]]:
    intervals = []
    for p in purchases:
        paid, done = _at(timelines, p, "OrderPaid"), _at(timelines, p, "KeyDelivered")
        if paid is not None and done is not None:
            intervals.append((paid, done))
    return intervals


def hop_medians(
    purchases: Iterable[Purchase], timelines: Mapping[str, OrderTimeline]
) -> dict[str, float]:
    parts: dict[str, list[float]] = {}
    for p in purchases:
        timeline = timelines.get(p.order_id or "")
        hops = timeline.hops() if timeline else None
        for name, took in (hops or {}).items():
            parts.setdefault(name, []).append(took)
    return {name: percentile(samples, 0.5) or 0.0 for name, samples in parts.items()}


# -- rendering ------------------------------------------------------------------------


def ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.1f}"


def mb(size: int | None) -> str:
    return "–" if size is None else f"{size / 1024 / 1024:.0f}"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def triple(summary: Summary) -> str:
    return f"{ms(summary.p50)} / {ms(summary.p95)} / {ms(summary.p99)}"


@dataclass
class RunReport:
    title: str
    machine: list[str]
    command: str
    settings: list[str]
    floor: Floor | None
    phases: list[PhaseResult]
    timelines: dict[str, OrderTimeline]
    services: list[str]
    peaks: dict[str, int]
    profile: Profile | str | None
    tier_priority: dict[str, int]
    notes: list[str] = field(default_factory=list)
    # --replicas: processes of each replicated service.
    replicas: dict[str, int] = field(default_factory=dict)

    def phase(self, name: str) -> PhaseResult | None:
        return next((p for p in self.phases if p.run.name == name), None)

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines += [f"- {line}" for line in self.machine]
        lines += [f"- command: `{self.command}`"]
        lines += [f"- {line}" for line in self.settings]
        lines += ["", *self._targets(), "", *self._phases(), "", *self._resources()]
        if self.replicas:
            lines += ["", *self._replicas()]
        lines += ["", *self._floor(), "", *self._priority(), "", *self._limits()]
        if self.notes:
            lines += ["", "Notes:", "", *(f"- {note}" for note in self.notes)]
        return "\n".join(lines) + "\n"

    def _consumers(self, result: PhaseResult) -> list[str]:
        delivered = figures(result, self.timelines).delivered
        return [
            f"Consumers in the {result.run.name} phase, per process. Each takes its messages "
            "in batches and runs different keys at once (kami_events.consumer), so 'busy' "
            "adds up the handlers' time and may pass 100 %; at one message at a time, the "
            "last column is the purchases per second its pace would allow "
            "(`kami_events_consumed_total`, `kami_event_handler_seconds`):",
            "",
            *table(
                [
                    "process",
                    "messages",
                    "per purchase",
                    "mean handler ms",
                    "busy",
                    "purchases/s at most",
                ],
                consumer_rows(result, delivered),
            ),
        ]

    def _targets(self) -> list[str]:
        rows = []
        saturation = self.phase("saturation")
        if saturation:
            got = figures(saturation, self.timelines).throughput
            met = "yes" if got >= TARGET_THROUGHPUT else "no"
            if got >= GOAL_THROUGHPUT:
                met += f" (the goal of {GOAL_THROUGHPUT:.0f}/s too)"
            rows.append(
                [
                    f"≥ {TARGET_THROUGHPUT:.0f} completed purchases/s at saturation "
                    f"({GOAL_THROUGHPUT:.0f} the goal)",
                    f"{got:.1f}/s",
                    met,
                ]
            )
        rate = self.phase("rate")
        if rate:
            fig = figures(rate, self.timelines)
            p99 = fig.payment_to_delivery.p99
            at = rate.description
            all_delivered = fig.delivered == fig.started and not fig.dropped
            if p99 is None:
                verdict = "no data"
            elif not rate.description.startswith(f"open loop, {TARGET_RATE:g}/s"):
                verdict = f"not comparable (the target is at {TARGET_RATE:g}/s)"
            else:
                verdict = "yes" if p99 <= TARGET_P99 and all_delivered else "no"
            rows.append(
                [
                    f"payment→delivery p99 ≤ {TARGET_P99 * 1000:.0f} ms at {TARGET_RATE:g} "
                    "purchases/s, every purchase delivered",
                    f"{ms(p99)} ms, {fig.delivered} of {fig.started} delivered ({at})",
                    verdict,
                ]
            )
        service_peaks = {s: self.peaks[s] for s in self.services if s in self.peaks}
        if service_peaks:
            worst = max(service_peaks, key=lambda s: service_peaks[s])
            verdict = "yes" if service_peaks[worst] <= TARGET_RSS else "no"
            rows.append(
                [
                    f"every service ≤ {TARGET_RSS // 1024 // 1024} MB peak RSS",
                    f"max {mb(service_peaks[worst])} MB ({worst})",
                    verdict,
                ]
            )
        if saturation:
            delivered = figures(saturation, self.timelines).delivered
            if delivered:
                per = saturation.saga_commands() / delivered
                rows.append(
                    [
                        f"≤ {TARGET_COMMANDS:.0f} MongoDB commands per delivered purchase "
                        "(buyers' status reads apart)",
                        f"{per:.1f} at saturation, + "
                        f"{saturation.status_commands / delivered:.1f} by status reads",
                        "yes" if per <= TARGET_COMMANDS else "no",
                    ]
                )
        for service, count in self.replicas.items():
            ratio = self.replica_gain()
            rows.append(
                [
                    f"{count} processes of {service} ≥ {TARGET_REPLICA_GAIN:g} × its throughput",
                    "not measured (no saturation phase)" if ratio is None else f"{ratio:.2f} ×",
                    "–" if ratio is None else "yes" if ratio >= TARGET_REPLICA_GAIN else "no",
                ]
            )
        if not self.replicas:
            rows.append(
                [
                    f"2 processes of the busiest service ≥ {TARGET_REPLICA_GAIN:g} × its "
                    "throughput",
                    "not measured in this run (`--replicas SERVICE=2`)",
                    "–",
                ]
            )
        return ["#### Targets of issue 13", "", *table(["target", "reached", "met"], rows)]

    def replica_gain(self) -> float | None:
        """Saturation throughput with the replicas over that with one process each."""
        single, replicated = self.phase(SINGLE), self.phase("saturation")
        if single is None or replicated is None:
            return None
        one = figures(single, self.timelines).throughput
        many = figures(replicated, self.timelines).throughput
        return many / one if one > 0 else None

    def _replicas(self) -> list[str]:
        listed = ", ".join(f"{service} ×{count}" for service, count in self.replicas.items())
        rows = []
        for result in self.phases:
            fig = figures(result, self.timelines)
            processes = ", ".join(
                f"{service} ×{result.processes.get(service, 1)}" for service in self.replicas
            )
            rows.append([result.run.name, processes, f"{fig.throughput:.1f}"])
        gain = self.replica_gain()
        lines = [
            "#### Replicas",
            "",
            f"`--replicas` ran {listed}: separate processes in one consumer group, sharing the "
            "topics' partitions (one holds the outbox relay's lease), and the buyers' requests "
            "to an HTTP-facing service go to its processes in turn. The replicas started after "
            f"the `{SINGLE}` phase (the saturation phase with one process of every service).",
            "",
            *table(["phase", "processes", "completed/s"], rows),
        ]
        if gain is not None:
            lines += ["", f"Saturation with the replicas: **{gain:.2f} ×** that with one process."]
        return lines

    def _phases(self) -> list[str]:
        rows = []
        for result in self.phases:
            fig = figures(result, self.timelines)
            rate = "–" if fig.compensation_rate is None else f"{fig.compensation_rate:.1%}"
            lost = fig.failed + fig.timed_out
            rows.append(
                [
                    result.run.name,
                    result.description,
                    fig.started,
                    fig.delivered,
                    f"{fig.compensated} ({rate})",
                    f"{lost}" + (f", {fig.dropped} dropped" if fig.dropped else ""),
                    f"{fig.throughput:.1f}",
                    triple(fig.payment_to_delivery),
                    triple(fig.order_to_delivery),
                    triple(fig.client_end_to_end),
                ]
            )
        lines = [
            "#### Purchases",
            "",
            *table(
                [
                    "phase",
                    "load",
                    "started",
                    "delivered",
                    "compensated (rate)",
                    "failed / timed out",
                    "completed/s",
                    "payment→delivery p50/p95/p99 ms",
                    "order→delivery p50/p95/p99 ms",
                    "buyer's app, order→DELIVERED seen p50/p95/p99 ms",
                ],
                rows,
            ),
            "",
            "payment→delivery is `PaymentConfirmed` → `KeyDelivered` and order→delivery is "
            "`OrderPlaced` → `KeyDelivered`, by the events' own `occurred_at` (read back from "
            "Kafka); the buyer's app column is the client's view: from placing the order to "
            "the answer that showed it DELIVERED (long polls, or polling with --poll). "
            "completed/s counts purchases the client saw DELIVERED after a warm-up of "
            "min(5 s, 20 %) of the phase; for the burst it is the rate the backlog drained at.",
        ]
        for result in self.phases:
            reasons = figures(result, self.timelines).reasons
            if reasons:
                listed = ", ".join(f"{reason or '?'} ×{n}" for reason, n in reasons.most_common(6))
                lines += ["", f"{result.run.name}: not delivered — {listed}"]
            lines += [f"{result.run.name}: {note}" for note in result.run.notes]
        return lines

    def _resources(self) -> list[str]:
        names = [*self.services, *(n for n in self.peaks if n not in self.services)]
        header = ["process"]
        for result in self.phases:
            header.append(f"CPU s ({result.run.name})")
        saturation = self.phase("saturation")
        if saturation:
            header.append("CPU ms / purchase (saturation)")
        header.append("peak RSS MB")
        delivered = figures(saturation, self.timelines).delivered if saturation else 0
        rows = []
        for name in names:
            row: list[object] = [name]
            row += [f"{result.cpu.get(name, 0.0):.1f}" for result in self.phases]
            if saturation:
                per = saturation.cpu.get(name, 0.0) / delivered * 1000 if delivered else None
                row.append("–" if per is None else f"{per:.1f}")
            row.append(mb(self.peaks.get(name)))
            rows.append(row)
        lines = ["#### Resources", "", *table(header, rows)]
        platform_cpu = sum(
            seconds
            for name, seconds in (saturation.cpu.items() if saturation else ())
            if not name.startswith("bench")
        )
        if saturation and delivered and platform_cpu > 0:
            total = platform_cpu / delivered
            lines += [
                "",
                f"The platform (services, FerretDB and its PostgreSQL, Kafka) spent "
                f"{total * 1000:.1f} CPU ms per "
                f"delivered purchase at saturation: on {os.cpu_count()} cores that alone caps it "
                f"near {(os.cpu_count() or 1) / total:.0f} purchases/s. The servers serve "
                "anything else on the machine too, so their share is an upper bound; "
                "PostgreSQL's RSS is its server process's (its backends share its buffers).",
            ]
        return lines

    def _floor(self) -> list[str]:
        floor = self.floor
        if floor is None:
            return ["#### The floor", "", "(not measured)"]
        lines = [
            "#### The floor (same machine, same run, nothing of Kami in between)",
            "",
            *table(
                ["what", "p50 ms", "p95 ms"],
                [
                    [
                        "Kafka produce (idempotent, acks=all) → consumed",
                        ms(floor.kafka_round_trip.p50),
                        ms(floor.kafka_round_trip.p95),
                    ],
                    ["FerretDB insert_one", ms(floor.mongo_insert.p50), ms(floor.mongo_insert.p95)],
                    [
                        f"FerretDB find_one by _id ({floor.mongo_collection_size} documents)",
                        ms(floor.mongo_find_id.p50),
                        ms(floor.mongo_find_id.p95),
                    ],
                    [
                        "FerretDB find_one by another field "
                        f"(a scan, {floor.mongo_collection_size} documents)",
                        ms(floor.mongo_find_field.p50),
                        ms(floor.mongo_find_field.p95),
                    ],
                    [
                        "HTTP GET /healthz of a service",
                        ms(floor.http_round_trip.p50),
                        ms(floor.http_round_trip.p95),
                    ],
                    [
                        "argon2id payment-password check (payment's parameters, one CPU)",
                        ms(floor.argon2_verify.p50),
                        ms(floor.argon2_verify.p95),
                    ],
                ],
            ),
        ]
        rate = self.phase("rate") or (self.phases[0] if self.phases else None)
        if rate is None:
            return lines
        fig = figures(rate, self.timelines)
        p50 = fig.payment_to_delivery.p50
        kafka = floor.kafka_round_trip.p50
        if p50 is None or kafka is None:
            return lines
        hops = len(KAFKA_HOPS)
        physical = (
            hops * kafka
            + (floor.http_round_trip.p50 or 0)
            + len(STORE_WRITES) * (floor.mongo_insert.p50 or 0)
            + len(STORE_READS) * (floor.mongo_find_id.p50 or 0)
        )
        lines += [
            "",
            f"payment→delivery p50 in the {rate.run.name} phase: {ms(p50)} ms = "
            f"**{p50 / (hops * kafka):.1f} × ({hops} hops × Kafka round trip)** "
            f"({' ; '.join(KAFKA_HOPS)}).",
            f"Counting also the one HTTP call (delivery → inventory reveal), the "
            f"{len(STORE_WRITES)} appends ({', '.join(STORE_WRITES)}) and the "
            f"{len(STORE_READS)} `_id` reads ({', '.join(STORE_READS)}), the floor is "
            f"{ms(physical)} ms: payment→delivery p50 is **{p50 / physical:.1f} ×** that.",
            "",
            "Where payment→delivery goes (p50 of each part, from the events' `occurred_at` and "
            "their Kafka timestamps, i.e. when each relay published):",
            "",
            *table(
                ["part", "p50 ms"],
                [
                    [name, ms(took)]
                    for name, took in hop_medians(rate.run.purchases, self.timelines).items()
                ],
            ),
        ]
        return lines

    def _priority(self) -> list[str]:
        burst = self.phase("burst")
        lines = ["#### Priority lane under a backlog (issue 4)", ""]
        if burst is None:
            return [*lines, "(no burst phase in this run)"]
        waits = lane_waits(burst.run.purchases, self.timelines)
        depth = deepest_backlog(paid_intervals(burst.run.purchases, self.timelines))
        rows = []
        for tier, priority in self.tier_priority.items():
            summary = waits.get(tier, Summary.of([]))
            buckets = burst.queue_wait.get(str(priority), {})
            rows.append(
                [
                    tier,
                    priority,
                    summary.count,
                    ms(summary.p50),
                    ms(summary.p95),
                    ms(summary.max),
                    ms(histogram_quantile(buckets, 0.5) if buckets else None),
                    ms(histogram_quantile(buckets, 0.95) if buckets else None),
                ]
            )
        lines += [
            f"{burst.description}. At most {depth} orders were paid and not yet delivered at "
            "once (a backlog when that exceeds the lane's workers, 4 by default).",
            "",
            *table(
                [
                    "buyer tier",
                    "priority",
                    "orders",
                    "queue wait p50 ms",
                    "p95 ms",
                    "max ms",
                    "histogram p50 ms",
                    "histogram p95 ms",
                ],
                rows,
            ),
            "",
            "Queue wait is `OrderPaid` → `KeyDelivered` per order (events); the histogram "
            "columns interpolate delivery's `kami_delivery_queue_wait_seconds{priority}` "
            "buckets (0.1 s, 0.25 s, 0.5 s, 1 s, ...) over the burst.",
        ]
        return lines

    def _limits(self) -> list[str]:
        lines = ["#### What limits it", ""]
        saturation = self.phase("saturation") or (self.phases[-1] if self.phases else None)
        if saturation is not None and saturation.commands:
            delivered = figures(saturation, self.timelines).delivered
            top = sorted(saturation.commands.items(), key=lambda item: -item[1].seconds)[:30]
            lines += [
                f"MongoDB commands by total time in the {saturation.run.name} phase, every service "
                "(`kami_mongo_command_seconds`; on FerretDB 1.24 any filter but exactly `_id` "
                "scans the collection, decoding each document in Go):",
                "",
                *table(
                    [
                        "service",
                        "collection",
                        "command",
                        "filter",
                        "calls",
                        "per purchase",
                        "total s",
                        "mean ms",
                    ],
                    [
                        [
                            app.removeprefix("kami-"),
                            collection,
                            command,
                            f"`{shape}`" if shape else "",
                            f"{cost.count:.0f}",
                            f"{cost.count / delivered:.1f}" if delivered else "–",
                            f"{cost.seconds:.1f}",
                            ms(cost.seconds / cost.count if cost.count else None),
                        ]
                        for (app, collection, command, shape), cost in top
                    ],
                ),
            ]
            if delivered:
                requests = saturation.status_requests
                lines += [
                    "",
                    f"{saturation.saga_commands() / delivered:.1f} MongoDB commands per delivered "
                    "purchase in all services, the buyers' status reads apart; those "
                    f"(`GET /orders/{{id}}`, {requests / delivered:.1f} requests per purchase) "
                    f"made {saturation.status_commands / delivered:.1f} more, all of them in "
                    "ordering's `events` `find` by `_id` above "
                    "(`kami_order_status_read_commands_total`).",
                ]
                by_service: dict[str, float] = {}
                for (app, _collection, _command, _shape), cost in saturation.commands.items():
                    service = app.removeprefix("kami-")
                    by_service[service] = by_service.get(service, 0.0) + cost.count
                lines += [
                    "",
                    "Per service, commands per delivered purchase (status reads included): "
                    + ", ".join(
                        f"{service} {count / delivered:.1f}"
                        for service, count in sorted(by_service.items(), key=lambda kv: -kv[1])
                    )
                    + ".",
                ]
        if saturation is not None and saturation.consumers:
            lines += ["", *self._consumers(saturation)]
        if isinstance(self.profile, Profile):
            profile = self.profile
            busy = profile.busy or 1
            lines += [
                "",
                f"py-spy on {profile.service}, the busiest service by CPU, for "
                f"{profile.seconds:.0f} s: {profile.busy} of {profile.samples} samples busy "
                f"(the rest waiting in select or an idle thread); raw stacks in "
                f"`{profile.raw_file}`. Shares are of the busy samples.",
                "",
                *table(
                    ["innermost frame", "share", "Kami function on the stack", "share"],
                    [
                        [
                            f"`{own[0]}`" if own else "",
                            f"{own[1] / busy:.0%}" if own else "",
                            f"`{on[0]}`" if on else "",
                            f"{on[1] / busy:.0%}" if on else "",
                        ]
                        for own, on in _zip_longest(profile.top_self, profile.top_kami)
                    ],
                ),
            ]
        elif isinstance(self.profile, str):
            lines += ["", f"No profile: {self.profile}."]
        return lines


def consumer_rows(result: PhaseResult, delivered: int) -> list[list[object]]:
    """Per service: messages per purchase, mean handler time, how much of the
    phase its one-at-a-time consumer spent in handlers, and the purchases per
    second that consumer could take at most at that pace."""
    seconds = result.run.ended - result.run.started
    rows: list[list[object]] = []
    for service, (consumed, handling) in sorted(
        result.consumers.items(), key=lambda item: -item[1][1].seconds
    ):
        if consumed <= 0:
            continue
        per_purchase = consumed / delivered if delivered else None
        mean = handling.seconds / handling.count if handling.count else None
        ceiling = 1 / (per_purchase * mean) if per_purchase and mean else None
        rows.append(
            [
                service,
                f"{consumed:.0f}",
                "–" if per_purchase is None else f"{per_purchase:.1f}",
                ms(mean),
                f"{handling.seconds / seconds:.0%}" if seconds > 0 else "–",
                "–" if ceiling is None else f"{ceiling:.1f}" if ceiling < 10 else f"{ceiling:.0f}",
            ]
        )
    return rows


def _zip_longest(
    a: Sequence[tuple[str, int]], b: Sequence[tuple[str, int]]
) -> list[tuple[tuple[str, int] | None, tuple[str, int] | None]]:
    n = max(len(a), len(b))
    return [(a[i] if i < len(a) else None, b[i] if i < len(b) else None) for i in range(n)]


def write_results(path: Path, results: str) -> None:
    """Put `results` between the markers of `path` (appended with them when
    the file has none), leaving the rest of the file as it is."""
    text = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{results.rstrip()}\n{END}"
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + block + "\n"
    path.write_text(text)
