"""The purchase benchmark (issues 8 and 13), with the priority lane's figure (issue 4).

    uv run python bench/purchases.py --quick            # about a minute, small figures
    uv run python bench/purchases.py                     # the full run (docs/performance.md)
    uv run python bench/purchases.py --help

Starts every service as a process against the local stack (its own ports,
databases and topic namespace), seeds a market through the public APIs, and
drives purchases over HTTP in three phases:

1. `rate`: open-loop arrivals at --rate purchases/s for --duration s;
2. `saturation`: --concurrency buyers buying back to back for
   --saturation-duration s;
3. `burst`: --burst orders reserved, then paid at one moment, by buyers of
   the three verification tiers: the delivery lane's priority under a backlog.

With `--replicas SERVICE=N` the saturation phase runs twice: first with one
process of every service (`saturation-one`), then, once the service's
further processes have started, with N of it.

Buyers wait for RESERVED and DELIVERED with ordering's long poll
(`GET /orders/{id}?wait_for=...`); `--poll` makes them poll instead.

Before the load it measures the floor (raw Kafka round trip, raw FerretDB
insert and `_id` find, an HTTP call, a payment-password check); after it,
it reads every purchase's events back from Kafka for the latencies, scrapes
each service's `/metrics` for the MongoDB commands, and reports CPU and RSS
of the services, FerretDB and Kafka. The results go to stdout and into
docs/performance.md. Every process it starts is stopped by pid at the end,
on failure and on Ctrl-C (unless --keep).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform as host
import random
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

sys.path[:0] = [
    str(Path(__file__).resolve().parent),
    str(Path(__file__).resolve().parents[1] / "deploy" / "local"),
]

import httpx  # noqa: E402
import psutil  # noqa: E402

from kami_bench import metrics  # noqa: E402
from kami_bench.driver import (  # noqa: E402
    Assignments,
    Pacing,
    Shop,
    burst,
    closed_loop,
    open_loop,
)
from kami_bench.events import OrderTimeline, read_namespace  # noqa: E402
from kami_bench.floor import Argon2Cost, measure_floor  # noqa: E402
from kami_bench.market import (  # noqa: E402
    DEFAULT_PRIORITY,
    TIERS,
    Buyer,
    Market,
    Restocker,
    build_market,
    market_state,
    restore_market,
    top_up_wallets,
    wait_for_tiers,
)
from kami_bench.processes import (  # noqa: E402
    ProcessWatch,
    backend_pid,
    listener_pid,
    usage_between,
)
from kami_bench.profile import Profile, record  # noqa: E402
from kami_bench.report import SINGLE, PhaseResult, RunReport, write_results  # noqa: E402
from kami_bench.stack import (  # noqa: E402
    OPERATOR_PHONE,
    STATE,
    BenchPlatform,
    create_run_topics,
    drop_data,
    forget_recorded,
    kafka_answers,
    mongo_answers,
    new_platform,
    recorded_platform,
    stop_pid,
)
from kami_local import REPO, available_services  # noqa: E402

PHASES = ("rate", "saturation", "burst")
DOC = REPO / "docs" / "performance.md"
# FerretDB's backend, its CPU counted with its backends' (one per connection).
POSTGRESQL = "PostgreSQL (server and backends)"


@dataclass(frozen=True)
class Plan:
    rate: float
    duration: float
    concurrency: int
    saturation_duration: float
    burst: int
    hold_delivery: float
    phases: tuple[str, ...]
    sellers: int
    offers_per_seller: int
    buyers_per_tier: int
    floor_samples: int
    profile_seconds: float
    poll_max: float
    poll: bool
    replicas: dict[str, int]
    partitions: int
    purchase_timeout: float
    max_in_flight: int
    settle_timeout: float
    cheap_hashing: bool
    keep: bool
    reuse: bool
    output: Path | None
    seed: int
    kafka: str
    mongodb: str
    quick: bool

    def expected_purchases(self) -> int:
        """A generous guess of the purchases of the run, to size the wallets."""
        total = 0
        if "rate" in self.phases:
            total += int(self.rate * self.duration * 1.5)
        if "saturation" in self.phases:
            total += int(self.saturation_duration * 600)
        if "burst" in self.phases:
            total += self.burst
        return total


def parse(argv: Sequence[str]) -> Plan | str:
    """The plan, or the word `down` for --down."""
    parser = argparse.ArgumentParser(
        prog="bench/purchases.py",
        description="Kami's purchase benchmark: throughput, latency against the physical floor, "
        "the priority lane under a backlog, CPU and memory; writes docs/performance.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    load = parser.add_argument_group("load")
    load.add_argument(
        "--quick",
        action="store_true",
        help="about a minute in all: rate 10/s for 12 s, 8 buyers for 12 s, a burst of 45, "
        "1 seller with 2 offers, 3 buyers per tier, 20 s purchase timeout (flags given "
        "explicitly still win)",
    )
    load.add_argument("--rate", type=float, default=50.0, help="open-loop arrivals per second")
    load.add_argument("--duration", type=float, default=60.0, help="seconds of the rate phase")
    load.add_argument("--concurrency", type=int, default=64, help="buyers of the saturation phase")
    load.add_argument("--saturation-duration", type=float, default=60.0, help="its seconds")
    load.add_argument("--burst", type=int, default=300, help="orders of the priority burst")
    load.add_argument(
        "--hold-delivery",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="pause (SIGSTOP) the delivery service this long while the burst is paid, as a "
        "stall of delivery would, so the paid orders reach the lane as a backlog even when "
        "payment confirms more slowly than delivery delivers; 0: the burst arrives as fast "
        "as payment confirms it",
    )
    load.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"which phases to run, in this order: a comma list of {', '.join(PHASES)}",
    )
    load.add_argument(
        "--max-in-flight", type=int, default=3000, help="open loop: cap of open purchases"
    )
    load.add_argument(
        "--poll",
        action="store_true",
        help="buyers poll GET /orders/{id} (from 50 ms, doubling up to --poll-max) instead of "
        "waiting with its long poll (?wait_for=RESERVED, then DELIVERED)",
    )
    load.add_argument(
        "--poll-max",
        type=float,
        default=1.0,
        help="the buyer app's longest poll interval (s), with --poll and while payment "
        "has not yet seen the reservation",
    )
    load.add_argument(
        "--purchase-timeout",
        type=float,
        default=60.0,
        help="seconds before a purchase counts as timed out",
    )
    load.add_argument(
        "--settle-timeout",
        type=float,
        default=60.0,
        help="before each phase, seconds to wait for every consumer and relay to catch up",
    )
    load.add_argument(
        "--seed", type=int, default=None, help="random seed of the arrivals (printed)"
    )
    market = parser.add_argument_group("market")
    market.add_argument("--sellers", type=int, default=2)
    market.add_argument("--offers-per-seller", type=int, default=4)
    market.add_argument(
        "--buyers-per-tier",
        type=int,
        default=20,
        help="buyers of each of phone, real_name, advanced",
    )
    measure = parser.add_argument_group("measurement")
    measure.add_argument(
        "--floor-samples", type=int, default=200, help="round trips per floor figure"
    )
    measure.add_argument(
        "--profile-seconds",
        type=float,
        default=10.0,
        help="py-spy the busiest service this long (0: no profile)",
    )
    measure.add_argument(
        "--cheap-hashing",
        action="store_true",
        help="argon2id of payment passwords at test cost (t=1, 8 MiB) instead of payment's "
        "production default (t=3, 12 MiB, 1 lane): shows what limits the platform past it",
    )
    measure.add_argument(
        "--output", type=Path, default=DOC, help="the Markdown file to write the results into"
    )
    measure.add_argument("--no-write", action="store_true", help="print the results only")
    platform = parser.add_argument_group("platform")
    platform.add_argument(
        "--kafka",
        default=os.environ.get("KAMI_KAFKA_BOOTSTRAP"),
        help="bootstrap servers (KAMI_KAFKA_BOOTSTRAP)",
    )
    platform.add_argument(
        "--mongodb",
        default=os.environ.get("KAMI_MONGODB_URI"),
        help="MongoDB/FerretDB URI (KAMI_MONGODB_URI)",
    )
    platform.add_argument(
        "--replicas",
        action="append",
        default=[],
        metavar="SERVICE=N",
        help="run N processes of SERVICE (one consumer group, own HTTP ports; repeatable); "
        "the saturation phase runs once with one process of it and once with N",
    )
    platform.add_argument(
        "--partitions",
        type=int,
        default=3,
        help="partitions of each of the run's topics (created before the services start); "
        "at least the largest --replicas, or a replica gets none",
    )
    platform.add_argument(
        "--keep", action="store_true", help="leave the services and data for --reuse"
    )
    platform.add_argument(
        "--reuse",
        action="store_true",
        help="run against the platform and market an earlier --keep left",
    )
    platform.add_argument(
        "--down", action="store_true", help="stop a kept platform, drop its data, and exit"
    )
    quick = {
        "rate": 10.0,
        "duration": 12.0,
        "concurrency": 8,
        "saturation_duration": 12.0,
        "burst": 45,
        "sellers": 1,
        "offers_per_seller": 2,
        "buyers_per_tier": 3,
        "floor_samples": 50,
        "profile_seconds": 3.0,
        "purchase_timeout": 20.0,
        "settle_timeout": 15.0,
    }
    # --quick changes the defaults; what is given explicitly still wins.
    if parser.parse_known_args(argv)[0].quick:
        parser.set_defaults(**quick)
    args = parser.parse_args(argv)
    if args.down:
        return "down"

    phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
    unknown = [p for p in phases if p not in PHASES]
    if unknown or not phases:
        parser.error(f"--phases takes a comma list of {', '.join(PHASES)}; got {args.phases!r}")
    if len(set(phases)) != len(phases):
        parser.error("--phases names a phase twice")
    checks: list[tuple[bool, str]] = [
        (args.rate > 0, "--rate must be above 0"),
        (args.rate <= 5000, "--rate above 5000/s is not a load one machine can send"),
        (args.duration > 0, "--duration must be above 0"),
        (args.saturation_duration > 0, "--saturation-duration must be above 0"),
        (args.concurrency >= 1, "--concurrency must be at least 1"),
        (args.concurrency <= 2000, "--concurrency above 2000 buyers is not sensible here"),
        (args.burst >= 1 or "burst" not in phases, "--burst must be at least 1"),
        (args.hold_delivery >= 0, "--hold-delivery cannot be negative"),
        (
            args.hold_delivery <= 9,
            "--hold-delivery above 9 s would let delivery's Kafka session expire",
        ),
        (args.sellers >= 1, "--sellers must be at least 1"),
        (args.offers_per_seller >= 1, "--offers-per-seller must be at least 1"),
        (args.buyers_per_tier >= 1, "--buyers-per-tier must be at least 1"),
        (args.floor_samples >= 10, "--floor-samples must be at least 10"),
        (args.profile_seconds >= 0, "--profile-seconds cannot be negative"),
        (args.poll_max >= 0.05, "--poll-max must be at least 0.05 s"),
        (args.purchase_timeout >= 5, "--purchase-timeout must be at least 5 s"),
        (args.max_in_flight >= 1, "--max-in-flight must be at least 1"),
        (args.settle_timeout >= 0, "--settle-timeout cannot be negative"),
        (bool(args.kafka), "set KAMI_KAFKA_BOOTSTRAP or --kafka (e.g. 127.0.0.1:19092)"),
        (bool(args.mongodb), "set KAMI_MONGODB_URI or --mongodb (e.g. mongodb://127.0.0.1:27018/)"),
    ]
    for ok, message in checks:
        if not ok:
            parser.error(message)
    if args.reuse and args.cheap_hashing:
        parser.error("--cheap-hashing is chosen when the platform starts; not with --reuse")
    replicas = parse_replicas(args.replicas, parser)
    if args.reuse and replicas:
        parser.error("--replicas is chosen when the platform starts; not with --reuse")
    if not 1 <= args.partitions <= 64:
        parser.error("--partitions must be between 1 and 64")
    if replicas and args.partitions < max(replicas.values()):
        parser.error(
            f"--partitions {args.partitions} is fewer than the {max(replicas.values())} "
            "processes of --replicas: some would consume nothing"
        )
    output = None if args.no_write else args.output
    if output is not None and not output.parent.is_dir():
        parser.error(f"--output: no directory {output.parent}")
    return Plan(
        rate=args.rate,
        duration=args.duration,
        concurrency=args.concurrency,
        saturation_duration=args.saturation_duration,
        burst=args.burst,
        hold_delivery=args.hold_delivery,
        phases=phases,
        sellers=args.sellers,
        offers_per_seller=args.offers_per_seller,
        buyers_per_tier=args.buyers_per_tier,
        floor_samples=args.floor_samples,
        profile_seconds=args.profile_seconds,
        poll_max=args.poll_max,
        poll=args.poll,
        replicas=replicas,
        partitions=args.partitions,
        purchase_timeout=args.purchase_timeout,
        max_in_flight=args.max_in_flight,
        settle_timeout=args.settle_timeout,
        cheap_hashing=args.cheap_hashing,
        keep=args.keep,
        reuse=args.reuse,
        output=output,
        seed=args.seed if args.seed is not None else random.SystemRandom().randrange(10**6),
        kafka=args.kafka,
        mongodb=args.mongodb,
        quick=args.quick,
    )


MAX_REPLICAS = 8


def parse_replicas(values: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, int]:
    """`--replicas SERVICE=N`, each service once, N from 2 to MAX_REPLICAS."""
    services = available_services()
    replicas: dict[str, int] = {}
    for value in values:
        service, equals, count = value.partition("=")
        if not equals or not count.isdigit():
            parser.error(f"--replicas takes SERVICE=N (e.g. ordering=2); got {value!r}")
        if service not in services:
            parser.error(f"--replicas: no service {service!r} (one of {', '.join(services)})")
        if service in replicas:
            parser.error(f"--replicas names {service} twice")
        if not 2 <= int(count) <= MAX_REPLICAS:
            parser.error(f"--replicas {value}: N must be from 2 to {MAX_REPLICAS}")
        replicas[service] = int(count)
    return replicas


def say(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> list[str]:
    memory = psutil.virtual_memory().total
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()
    return [
        f"machine: {os.cpu_count()} cores ({model}), {memory / 1024**3:.1f} GiB memory, "
        f"{host.system()} {host.release()}, Python {host.python_version()}",
        f"load average when the run started: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        "(other work on the machine makes every figure worse)",
    ]


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return out.stdout.strip()


class Run:
    """One benchmark run: the platform, the market, the phases, the report."""

    def __init__(
        self,
        plan: Plan,
        bench: BenchPlatform,
        helpers: list[int],
        *,
        command: str,
        machine: list[str],
    ) -> None:
        self.plan = plan
        self.bench = bench
        self.platform = bench.platform
        self.helpers = helpers  # pids of py-spy, stopped on the way out
        self.command = command
        self.machine = machine
        self.market: Market | None = None
        self.restocker: Restocker | None = None
        self.notes: list[str] = []
        # --replicas on a new platform: the further processes start after the
        # SINGLE phase (the platform starts with one process of each service).
        self.replicas_pending = bool(plan.replicas) and not plan.reuse
        self.partitions: int | None = None  # the fewest any of the run's topics has

    async def scrape(self, process: str) -> str:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(f"{self.platform.url(process)}/metrics")
            response.raise_for_status()
            return response.text

    def running(self) -> list[str]:
        """The platform's processes that run now (replicas join during the run)."""
        return list(self.bench.pids())

    async def snapshots(self) -> dict[str, metrics.Snapshot]:
        processes = self.running()
        texts = await asyncio.gather(*(self.scrape(p) for p in processes))
        return {p: metrics.parse(t) for p, t in zip(processes, texts, strict=True)}

    async def execute(self) -> RunReport:
        plan = self.plan
        pids = self.bench.pids()
        for name, port in (
            ("FerretDB", _port(plan.mongodb, 27017)),
            ("Kafka", _port(plan.kafka, 9092)),
        ):
            pid = listener_pid(port)
            if pid is not None:
                pids[name] = pid
            else:
                self.notes.append(f"{name}'s process was not found (port {port}): not measured")
        postgresql = backend_pid(pids["FerretDB"]) if "FerretDB" in pids else None
        if postgresql is not None:
            pids[POSTGRESQL] = postgresql
        # The load generator shares the machine: its own cost is part of the picture.
        pids["bench (this load generator)"] = os.getpid()
        watch = ProcessWatch(pids, trees=frozenset({POSTGRESQL}))
        stop = asyncio.Event()
        watching = asyncio.create_task(watch.run(stop))
        try:
            return await self._execute(watch)
        finally:
            stop.set()
            await watching

    async def _execute(self, watch: ProcessWatch) -> RunReport:
        plan = self.plan
        say("measuring the floor (Kafka round trip, FerretDB insert and find, HTTP, argon2)")
        argon2 = self.bench.payment_argon2()
        floor = await measure_floor(
            bootstrap=plan.kafka,
            topic=f"{self.bench.topic_prefix}.bench.floor.v1",
            mongo_uri=plan.mongodb,
            database=f"{self.bench.database_prefix}_bench_floor",
            http_url=self.platform.url("ordering"),
            argon2=argon2,
            samples=plan.floor_samples,
        )

        market = await self._market()
        offers = market.offers
        restocker = self.restocker = Restocker(offers)
        shop = Shop(
            self.platform,
            Pacing(
                poll_first=0.05,
                poll_max=plan.poll_max,
                timeout=plan.purchase_timeout,
                long_poll=not plan.poll,
            ),
            connections=max(100, plan.concurrency * 2, plan.burst),
        )
        if not self.replicas_pending:
            for service in self.bench.replicas():
                shop.spread(service, self.platform.urls(service))
        stop_restocking = asyncio.Event()
        restocking = asyncio.create_task(restocker.run(stop_restocking))
        phases: list[PhaseResult] = []
        profile: Profile | str | None = None
        watch.reset_peaks()
        schedule = list(plan.phases)
        if self.replicas_pending and "saturation" in schedule:
            schedule.insert(schedule.index("saturation"), SINGLE)
        try:
            for name in schedule:
                if name == "saturation" and self.replicas_pending:
                    await self._start_replicas(shop, watch)
                result, found = await self._phase(name, shop, market, watch)
                phases.append(result)
                profile = found or profile
        finally:
            stop_restocking.set()
            await restocking
            await shop.close()
        self.notes += [f"restocking failed: {failure}" for failure in restocker.failures]
        imported = sum(offer.imported for offer in offers)
        self.notes.append(
            f"the {len(offers)} offers' pools hold {imported} keys in all "
            f"({sum(offer.imports for offer in offers)} imports in this run); on FerretDB every "
            "reservation scans them all, sold ones included"
        )
        if plan.profile_seconds <= 0:
            profile = "turned off (--profile-seconds 0)"
        elif profile is None:
            profile = "the saturation phase did not run"

        say("reading every purchase's events back from Kafka")
        timelines = await read_namespace(plan.kafka, self.bench.topic_prefix)
        await self._check_timelines(phases, timelines)
        return RunReport(
            title=f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {git_commit()}"
            + (" (--quick)" if plan.quick else ""),
            machine=self.machine,
            command=self.command,
            settings=self._settings(),
            floor=floor,
            phases=phases,
            timelines=timelines,
            services=self.bench.processes(),
            peaks=watch.peaks(),
            profile=profile,
            tier_priority={tier: DEFAULT_PRIORITY[tier] for tier in TIERS},
            notes=self.notes,
            replicas=self.bench.replicas(),
        )

    async def _start_replicas(self, shop: Shop, watch: ProcessWatch) -> None:
        """Start the further processes of --replicas, wait until each consumes
        a share of the partitions, and spread the buyers' requests over them."""
        self.replicas_pending = False
        started = [r for s in self.bench.replicas() for r in self.platform.replicas(s)]
        say(f"starting the replicas: {', '.join(started)}")
        for process in started:
            await asyncio.to_thread(self.platform.start, process)
        for process in started:
            await asyncio.to_thread(self.platform.wait_ready, process)
            pid = self.platform.pid(process)
            if pid is not None:
                watch.add(process, pid)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        waiting = set(started)
        while waiting and loop.time() < deadline:
            for process in list(waiting):
                # Its lag gauge has a series per partition assigned to it.
                if "kami_consumer_lag_messages{" in await self.scrape(process):
                    waiting.discard(process)
            await asyncio.sleep(1.0)
        if waiting:
            self.notes.append(
                f"{', '.join(sorted(waiting))} had no partition after 60 s: the topics have "
                "fewer partitions than the service has processes, or the group did not rebalance"
            )
        for service in self.bench.replicas():
            shop.spread(service, self.platform.urls(service))

    def _settings(self) -> list[str]:
        plan = self.plan
        argon2 = self.bench.payment_argon2()
        topics = (
            f"{self.partitions} partitions each at least (created before the services started)"
            if self.partitions is not None
            else "as the kept platform made them"
        )
        replicated = self.bench.replicas()
        processes = (
            "; "
            + ", ".join(f"{service} as {count} processes" for service, count in replicated.items())
            + f" (after the {SINGLE} phase)"
            if replicated
            else ""
        )
        waiting = (
            f"buyer app polls GET /orders/{{id}} from 50 ms, doubling up to "
            f"{plan.poll_max * 1000:.0f} ms (--poll)"
            if plan.poll
            else "buyer app waits with GET /orders/{id}?wait_for=RESERVED, then DELIVERED "
            "(long polls of at most 20 s)"
        )
        hashing = (
            f"argon2id t={argon2.time_cost}, {argon2.memory_kib // 1024} MiB, "
            f"{argon2.parallelism} lane(s) "
            + ("(payment's production default)" if argon2 == Argon2Cost() else "(--cheap-hashing)")
        )
        return [
            f"platform: {len(self.bench.services)} services as processes "
            f"({', '.join(self.bench.services)}){processes}, Kafka {plan.kafka} (topics: "
            f"{topics}), FerretDB {plan.mongodb}",
            f"market: {plan.sellers} seller(s) × {plan.offers_per_seller} offer(s), "
            f"{plan.buyers_per_tier} buyers per tier ({', '.join(TIERS)}), one key per order; "
            "keys imported as the run needs them",
            f"payment password check: {hashing}",
            f"{waiting}; seed {plan.seed}",
        ]

    def _first_keys(self, phase: str) -> int:
        """Keys each offer holds when `phase` starts: its first six seconds
        (the restocker keeps up after), or the whole burst."""
        plan = self.plan
        offers = plan.sellers * plan.offers_per_seller
        if phase == "burst":
            return math.ceil(plan.burst / offers) + Restocker.MINIMUM
        per_second = plan.rate if phase == "rate" else plan.concurrency  # saturation: ~1/s each
        return max(Restocker.MINIMUM, math.ceil(per_second * Restocker.AHEAD_SECONDS / offers))

    async def _market(self) -> Market:
        plan = self.plan
        wallet = max(10_000, plan.expected_purchases() * 100 * 2 // (plan.buyers_per_tier * 3))
        stored = self.bench.market if self.plan.reuse else None
        if stored is not None:
            say("logging the kept market's people in again")
            market = await restore_market(self.platform, stored)
            await top_up_wallets(market, min(wallet, 5_000_000))
        else:
            market = await build_market(
                self.platform,
                operator_phone=OPERATOR_PHONE,
                sellers=plan.sellers,
                offers_per_seller=plan.offers_per_seller,
                keys_per_offer=0,
                buyers_per_tier=plan.buyers_per_tier,
                wallet=min(wallet, 5_000_000),
                say=say,
            )
        self.market = market
        say("waiting until delivery knows every buyer's tier")
        await wait_for_tiers(self.scrape)
        return market

    async def _phase(
        self, name: str, shop: Shop, market: Market, watch: ProcessWatch
    ) -> tuple[PhaseResult, Profile | str | None]:
        plan = self.plan
        assert self.restocker is not None
        await asyncio.gather(*self.restocker.top_up_now(self._first_keys(name)))
        await self._settle(name)
        before = await self.snapshots()
        cpu_before = watch.mark()
        profile: Profile | str | None = None
        rng = random.Random(plan.seed)  # noqa: S311 - arrival times, not secrets
        if name == "rate":
            description = f"open loop, {plan.rate:g}/s for {plan.duration:g} s"
            say(f"phase rate: {description}")
            run = await open_loop(
                shop,
                Assignments(market.buyers, market.offers),
                rate=plan.rate,
                duration=plan.duration,
                max_in_flight=plan.max_in_flight,
                rng=rng,
            )
        elif name in ("saturation", SINGLE):
            description = (
                f"closed loop, {plan.concurrency} buyers for {plan.saturation_duration:g} s"
            )
            if name == SINGLE:
                description += ", one process of every service"
            say(f"phase {name}: {description}")
            profiling = (
                asyncio.create_task(self._profile_busiest(watch, cpu_before))
                if name == "saturation"
                else None
            )
            run = await closed_loop(
                shop,
                Assignments(market.buyers, market.offers),
                concurrency=plan.concurrency,
                duration=plan.saturation_duration,
                name=name,
            )
            profile = await profiling if profiling else None
        else:
            description = (
                f"{plan.burst} orders from buyers of every tier in turn, reserved first, then "
                "paid at one moment"
                + (
                    f", delivery paused for {plan.hold_delivery:g} s meanwhile"
                    if plan.hold_delivery
                    else ""
                )
            )
            say(f"phase burst: {description}")
            run = await burst(
                shop,
                Assignments(_by_tier_in_turn(market), market.offers),
                size=plan.burst,
                while_paying=self._hold_delivery if plan.hold_delivery else None,
            )
        cpu = usage_between(cpu_before, watch.mark())
        after = await self.snapshots()
        deltas = {s: after[s].minus(before[s]) for s in after if s in before}
        done = sum(1 for p in run.purchases if p.outcome == "delivered")
        say(
            f"phase {name}: {done} of {len(run.purchases)} purchases delivered "
            f"in {run.ended - run.started:.1f}s"
        )
        commands = metrics.merge_commands(deltas)
        listed = self._write_commands(name, commands, done)
        say(f"phase {name}: every MongoDB command by count in {listed}")
        return (
            PhaseResult(
                run=run,
                description=description,
                cpu=cpu,
                commands=commands,
                queue_wait=deltas["delivery"].queue_wait if "delivery" in deltas else {},
                consumers={s: (d.consumed, d.handling) for s, d in deltas.items()},
                status_requests=sum(d.status_requests for d in deltas.values()),
                status_commands=sum(d.status_commands for d in deltas.values()),
                processes={s: len(self.platform.processes(s)) for s in self.bench.replicas()}
                if not self.replicas_pending
                else {},
            ),
            profile,
        )

    def _write_commands(
        self, phase: str, commands: dict[metrics.CommandShape, metrics.CommandCost], delivered: int
    ) -> Path:
        """Every command the phase made, most frequent first (the report
        shows only the costliest), as tab-separated lines per delivered purchase."""
        out = self.platform.home / "logs" / f"commands-{phase}-{int(time.time())}.tsv"
        rows = sorted(commands.items(), key=lambda item: -item[1].count)
        lines = ["service\tcollection\tcommand\tfilter\tcalls\tper purchase\ttotal s"]
        for (app, collection, command, shape), cost in rows:
            per = f"{cost.count / delivered:.2f}" if delivered else "-"
            lines.append(
                f"{app.removeprefix('kami-')}\t{collection}\t{command}\t{shape}\t"
                f"{cost.count:.0f}\t{per}\t{cost.seconds:.2f}"
            )
        out.write_text("\n".join(lines) + "\n")
        return out

    async def _settle(self, phase: str) -> None:
        """Before `phase`: wait until no service has an unconsumed message or
        an unpublished commit (twice in a row), so what seeding or the phase
        before left behind does not slow this one."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.plan.settle_timeout
        calm = 0
        while loop.time() < deadline:
            texts = await asyncio.gather(*(self.scrape(p) for p in self.running()))
            backlog = sum(
                metrics.counter_total(text, "kami_consumer_lag_messages")
                + metrics.counter_total(text, "kami_outbox_unpublished_commits")
                for text in texts
            )
            calm = calm + 1 if backlog == 0 else 0
            if calm >= 2:
                return
            await asyncio.sleep(1.0)
        self.notes.append(
            f"before the {phase} phase the platform still had unconsumed messages or "
            f"unpublished commits after {self.plan.settle_timeout:g} s; it started anyway"
        )

    async def _profile_busiest(
        self, watch: ProcessWatch, cpu_before: dict[str, float]
    ) -> Profile | str | None:
        plan = self.plan
        if plan.profile_seconds <= 0:
            return None
        # Let the load settle, then profile whichever service burnt most CPU so far.
        settle = max(
            1.0,
            min(plan.saturation_duration / 3, plan.saturation_duration - plan.profile_seconds - 1),
        )
        await asyncio.sleep(settle)
        spent = usage_between(cpu_before, watch.mark())
        services = {p: spent.get(p, 0.0) for p in self.running()}
        busiest = max(services, key=lambda s: services[s])
        pid = self.platform.pid(busiest)
        if pid is None:
            return f"{busiest} is not running"
        seconds = min(plan.profile_seconds, max(1.0, plan.saturation_duration - settle))
        say(f"profiling {busiest} (pid {pid}) with py-spy for {seconds:g}s")
        out = self.platform.home / "logs" / f"py-spy-{busiest}-{int(time.time())}.txt"
        return await record(busiest, pid, seconds, out, self.helpers)

    async def _hold_delivery(self) -> None:
        """Pause delivery while the burst's payments are confirmed, so their
        OrderPaid wait in Kafka and reach the lane together."""
        pid = self.platform.pid("delivery")
        if pid is None:
            return
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(self.plan.hold_delivery)
        finally:
            os.kill(pid, signal.SIGCONT)

    async def _check_timelines(
        self, phases: list[PhaseResult], timelines: dict[str, OrderTimeline]
    ) -> None:
        """Ordering's GET /orders/{id}/timeline must show the same instants the
        figures were computed from (a few orders: each request scans on FerretDB)."""
        sample = [
            p
            for result in phases
            for p in result.run.purchases
            if p.outcome == "delivered" and p.buyer is not None
        ][:3]
        agreed = 0
        for purchase in sample:
            assert purchase.buyer is not None and purchase.order_id is not None
            response = await purchase.buyer.person.call(
                "ordering", "GET", f"/orders/{purchase.order_id}/timeline"
            )
            if response.status_code != 200:
                continue
            shown = {e["event_type"]: e["occurred_at"] for e in response.json()["events"]}
            timeline = timelines.get(purchase.order_id)
            events = timeline.events if timeline else {}
            if (
                all(
                    kind in shown
                    and abs(
                        datetime.fromisoformat(shown[kind]).timestamp() - events[kind].occurred_at
                    )
                    < 0.001
                    for kind in ("PaymentConfirmed", "KeyDelivered")
                    if kind in events
                )
                and "KeyDelivered" in events
            ):
                agreed += 1
        if sample:
            self.notes.append(
                f"{agreed} of {len(sample)} sampled orders' GET /orders/{{id}}/timeline agree with "
                "the instants read from Kafka"
            )


def _by_tier_in_turn(market: Market) -> list[Buyer]:
    """Buyers interleaved phone, real_name, advanced, phone, ... so each tier
    places a third of the burst and none is ahead by arrival."""
    lists = [market.buyers_of(tier) for tier in TIERS]
    longest = max(len(buyers) for buyers in lists)
    return [buyers[i % len(buyers)] for i in range(longest) for buyers in lists if buyers]


def _port(address: str, default: int) -> int:
    hostport = address.removeprefix("mongodb://").split("/")[0].split(",")[0].rsplit("@", 1)[-1]
    _, _, port = hostport.rpartition(":")
    return int(port) if port.isdigit() else default


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _while_cleaning_up(signum: int, frame: FrameType | None) -> None:
    say("still stopping the run's processes; they will all be gone in a few seconds")


def choose_platform(plan: Plan) -> BenchPlatform | str:
    """The platform to run on, or why there is none."""
    recorded = recorded_platform()
    if recorded is not None:
        running = recorded.pids()
        if plan.reuse:
            lost = [s for s in recorded.services if s not in running]
            if lost:
                return (
                    f"the kept bench platform lost {', '.join(lost)}: "
                    "stop it with --down and start anew"
                )
            say(f"reusing the kept platform ({recorded.database_prefix}, {recorded.topic_prefix})")
            return recorded
        if running:
            listed = ", ".join(f"{s} pid {p}" for s, p in running.items())
            return f"a bench platform is running ({listed}): add --reuse, or stop it with --down"
        say(f"an earlier run left {recorded.database_prefix}_* behind: dropping it")
        say(asyncio.run(drop_data(recorded)))
        forget_recorded()
    elif plan.reuse:
        return f"no kept bench platform ({STATE} is missing): run once with --keep first"
    return new_platform(
        plan.kafka, plan.mongodb, cheap_payment_hashing=plan.cheap_hashing, replicas=plan.replicas
    )


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    plan = parse(arguments)
    if plan == "down":
        return down()
    assert isinstance(plan, Plan)
    for name, address, answers in (
        ("Kafka", plan.kafka, kafka_answers(plan.kafka)),
        ("MongoDB", plan.mongodb, asyncio.run(mongo_answers(plan.mongodb))),
    ):
        if not answers:
            print(
                f"bench: {name} does not answer at {address} (deploy/local/stack up?)",
                file=sys.stderr,
            )
            return 1
    bench = choose_platform(plan)
    if isinstance(bench, str):
        print(f"bench: {bench}", file=sys.stderr)
        return 1

    # Ctrl-C and SIGTERM both unwind through the `finally` below.
    signal.signal(signal.SIGTERM, _interrupt)
    helpers: list[int] = []
    run = Run(
        plan,
        bench,
        helpers,
        command=shlex.join(["uv", "run", "python", "bench/purchases.py", *arguments]),
        machine=machine(),
    )
    report: RunReport | None = None
    try:
        if not plan.reuse:
            bench.record()
            say(
                f"starting {len(bench.services)} services ({bench.database_prefix}, "
                f"{bench.topic_prefix}); logs in {bench.platform.home / 'logs'}"
            )
            run.partitions = asyncio.run(create_run_topics(bench, plan.partitions))
            bench.platform.up(bench.services, replicas=not run.replicas_pending)
        report = asyncio.run(run.execute())
    except KeyboardInterrupt:
        say("interrupted")
    except Exception as exc:
        say(f"the run failed: {type(exc).__name__}: {exc}")
        for service in bench.services:
            if bench.platform.pid(service) is None:
                say(f"{service} is not running; its log ends:\n{bench.platform.tail(service, 15)}")
        raise
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        signal.signal(signal.SIGINT, _while_cleaning_up)
        signal.signal(signal.SIGTERM, _while_cleaning_up)
        for pid in list(helpers):
            stop_pid(pid)
        if report is not None and plan.keep:
            bench.record(market_state(run.market) if run.market else None)
            say(f"the platform keeps running for --reuse (stop it with --down); state in {STATE}")
        else:
            # Unless a successful run was asked to keep it, the platform ends with the run.
            bench.stop()
            say("stopped every service of the run")
            try:
                say(asyncio.run(drop_data(bench)))
                forget_recorded()
            except Exception as exc:
                say(f"could not drop the run's data ({exc}); --down tries again")
    if report is None:
        return 130
    text = report.markdown()
    print(text)
    if plan.output is not None:
        write_results(plan.output, text)
        say(f"results written into {plan.output}")
    return 0


def down() -> int:
    """--down: stop a kept (or abandoned) bench platform and drop its data."""
    recorded = recorded_platform()
    if recorded is None:
        say(f"no bench platform is recorded in {STATE}: nothing to stop")
        return 0
    recorded.stop()
    say(asyncio.run(drop_data(recorded)))
    forget_recorded()
    say("the bench platform is stopped and its data dropped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
