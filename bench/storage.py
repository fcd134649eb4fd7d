"""What a MongoDB command costs on a storage engine, and which races it decides.

    uv run python bench/storage.py --target sqlite=mongodb://127.0.0.1:27228/ \\
        --target postgresql=mongodb://127.0.0.1:27218/
    uv run python bench/storage.py --target ... --json /tmp/storage.json
    uv run python bench/storage.py --from-json /tmp/storage.json --write docs/storage.md

For each target (a name and a MongoDB URI: a FerretDB of the local stack on
either backend, or a MongoDB), one after the other so they never share the
CPU:

- the costs: at 1k, 10k and 100k documents of about 1 KB, shaped like
  Kami's event-store commits, sequential `insert_one`, `find_one` by `_id`,
  `find_one` by an indexed field (`stream_id`) and `update_one` by `_id`
  (median and p95 of up to --samples commands, at most --sample-seconds of
  them per figure, so a scanning engine still finishes);
- the races, 40 concurrent writers (one connection each): a conditional
  `find_one_and_update` on `{status: "available"}` over 10 keys and over
  one key (each writer takes until none is left), 10 `$inc`s each of one
  counter, and `insert_one` of one `_id` under the unique index. A race
  is decided when it never has more winners than there is to win (and
  `$inc` loses no increment).

It prints the tables; --write replaces what is between the markers in
docs/storage.md. Each target gets its own database, dropped at the end. A
timing tool, not a test: run it on a quiet machine and say how quiet.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

Document = dict[str, Any]

BEGIN = "<!-- bench/storage.py:begin -->"
END = "<!-- bench/storage.py:end -->"
DEFAULT_SIZES = (1_000, 10_000, 100_000)
OPERATIONS = ("insert_one", "find_one by _id", "find_one by stream_id", "update_one by _id")
WRITERS = 40
INCREMENTS = 10  # per writer and round


def say(text: str) -> None:
    print(f"storage: {text}", file=sys.stderr, flush=True)


def commit_document(n: int, payload: str) -> Document:
    """An event-store commit as `kami_events.store` writes it, about 1 KB."""
    stream = f"order-{uuid.UUID(int=n)}"
    return {
        "_id": f"{stream}@1",
        "stream_id": stream,
        "version": 1,
        "position": n,
        "aggregate_type": "order",
        "published": False,
        "tracking": None,
        "events": [
            {
                "event_id": str(uuid.UUID(int=n + 1)),
                "type": "ordering.OrderPlaced",
                "schema_version": 1,
                "occurred_at": "2025-01-01T00:00:00+00:00",
                "correlation_id": str(uuid.UUID(int=n + 2)),
                "payload": {
                    "buyer_id": f"buyer-{n % 997}",
                    "offer_id": f"offer-{n % 31}",
                    "quantity": 1,
                    "unit_price": "10.00",
                    "note": payload,
                },
            }
        ],
    }


@dataclass
class Cost:
    operation: str
    documents: int
    samples: int
    median_ms: float
    p95_ms: float


@dataclass
class Race:
    race: str
    rounds: int
    to_win: int
    most_winners: int
    total_winners: int
    errors: int
    decided: bool
    seen: str


@dataclass
class Result:
    target: str
    uri: str
    server: str
    costs: list[Cost] = field(default_factory=list)
    races: list[Race] = field(default_factory=list)
    load: str = ""


async def timed(
    make: Callable[[int], Awaitable[object]], samples: int, budget_s: float
) -> list[float]:
    """Latencies (ms) of `make(i)` run one after the other: up to `samples`
    of them, stopping after `budget_s` once there are at least 5."""
    out: list[float] = []
    started = time.perf_counter()
    for i in range(samples):
        t = time.perf_counter()
        await make(i)
        out.append((time.perf_counter() - t) * 1000)
        if len(out) >= 5 and time.perf_counter() - started > budget_s:
            break
    return out


def cost(operation: str, documents: int, latencies: list[float]) -> Cost:
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return Cost(operation, documents, len(ordered), statistics.median(ordered), p95)


async def fill(collection: AsyncCollection[Document], start: int, stop: int, payload: str) -> None:
    for first in range(start, stop, 1000):
        batch = [commit_document(n, payload) for n in range(first, min(stop, first + 1000))]
        await collection.insert_many(batch, ordered=False)


async def measure_costs(
    collection: AsyncCollection[Document], sizes: tuple[int, ...], samples: int, budget_s: float
) -> list[Cost]:
    payload = "x" * 420  # brings a commit to about 1 KB of BSON
    await collection.create_index("stream_id")
    await collection.create_index([("stream_id", 1), ("version", 1)], unique=True)
    out: list[Cost] = []
    have = 0
    extra = 10_000_000  # ids of the inserted samples, past the filled ones
    for size in sizes:
        say(f"  filling to {size} documents ...")
        await fill(collection, have, size, payload)
        have = size
        rng = random.Random(size)  # noqa: S311 (picks documents, not secrets)
        picks = [rng.randrange(size) for _ in range(samples)]

        async def insert(i: int, first: int = extra + size) -> None:
            await collection.insert_one(commit_document(first + i, payload))

        async def by_id(i: int, picks: list[int] = picks) -> None:
            found = await collection.find_one({"_id": f"order-{uuid.UUID(int=picks[i])}@1"})
            assert found is not None

        async def by_field(i: int, picks: list[int] = picks) -> None:
            found = await collection.find_one({"stream_id": f"order-{uuid.UUID(int=picks[i])}"})
            assert found is not None

        async def update(i: int, picks: list[int] = picks) -> None:
            done = await collection.update_one(
                {"_id": f"order-{uuid.UUID(int=picks[i])}@1"}, {"$set": {"published": True}}
            )
            assert done.matched_count == 1

        makers: tuple[Callable[[int], Awaitable[None]], ...] = (insert, by_id, by_field, update)
        for operation, make in zip(OPERATIONS, makers, strict=True):
            latencies = await timed(make, samples, budget_s)
            out.append(cost(operation, size, latencies))
            say(
                f"  {size:>7} {operation:<24} median {out[-1].median_ms:8.2f} ms "
                f"p95 {out[-1].p95_ms:8.2f} ms ({len(latencies)} samples)"
            )
        # The sampled inserts stay: the next size counts them among its documents.
    return out


async def race_conditional(
    collections: list[AsyncCollection[Document]], keys: int, rounds: int
) -> Race:
    """40 writers take keys with `find_one_and_update({status: available})`,
    each until none is left: more takes than keys is a key taken twice."""
    most = total = errors = 0
    for r in range(rounds):
        offer = f"offer-{r}-{uuid.uuid4().hex[:6]}"
        await collections[0].insert_many(
            [{"_id": f"{offer}-{k}", "offer_id": offer, "status": "available"} for k in range(keys)]
        )

        async def take(w: int, offer: str = offer) -> int:
            """Takes keys until there is none left; how many it got."""
            nonlocal errors
            got = 0
            while True:
                try:
                    taken = await collections[w].find_one_and_update(
                        {"offer_id": offer, "status": "available"},
                        {"$set": {"status": "taken", "by": w}},
                        return_document=ReturnDocument.AFTER,
                    )
                except PyMongoError:
                    errors += 1
                    continue
                if taken is None:
                    return got
                got += 1

        won = sum(await asyncio.gather(*(take(w) for w in range(WRITERS))))
        most, total = max(most, won), total + won
    label = f'`find_one_and_update` on `{{status: "available"}}`, {keys} key{"s" * (keys > 1)}'
    return Race(
        label,
        rounds,
        keys,
        most,
        total,
        errors,
        most <= keys,
        f"most keys taken in a round {most} for {keys}",
    )


async def race_inc(collections: list[AsyncCollection[Document]], rounds: int) -> Race:
    """40 writers `$inc` one counter 10 times each: 400 increments a round."""
    lost_most = 0
    errors = 0
    finals: list[int] = []
    for r in range(rounds):
        counter = f"counter-{r}-{uuid.uuid4().hex[:6]}"
        await collections[0].insert_one({"_id": counter, "n": 0})

        async def bump(w: int, counter: str = counter) -> None:
            nonlocal errors
            for _ in range(INCREMENTS):
                try:
                    await collections[w].update_one({"_id": counter}, {"$inc": {"n": 1}})
                except PyMongoError:
                    errors += 1

        await asyncio.gather(*(bump(w) for w in range(WRITERS)))
        final = await collections[0].find_one({"_id": counter})
        n = int(final["n"]) if final else 0
        finals.append(n)
        lost_most = max(lost_most, WRITERS * INCREMENTS - errors - n)
    return Race(
        f"`$inc` of one counter, {INCREMENTS} each",
        rounds,
        WRITERS * INCREMENTS,
        max(finals),
        sum(finals),
        errors,
        lost_most == 0,
        f"counter ended at {min(finals)}–{max(finals)} of {WRITERS * INCREMENTS}",
    )


async def race_unique(collections: list[AsyncCollection[Document]], rounds: int) -> Race:
    """40 writers insert one `_id`; the unique index must let exactly one in."""
    most = total = errors = 0
    for r in range(rounds):
        claim = f"claim-{r}-{uuid.uuid4().hex[:6]}"

        async def insert(w: int, claim: str = claim) -> bool:
            nonlocal errors
            try:
                await collections[w].insert_one({"_id": claim, "by": w})
            except DuplicateKeyError:
                return False
            except PyMongoError:
                errors += 1
                return False
            return True

        won = sum(await asyncio.gather(*(insert(w) for w in range(WRITERS))))
        most, total = max(most, won), total + won
    return Race(
        "`insert_one` of one `_id` (unique index)",
        rounds,
        1,
        most,
        total,
        errors,
        most <= 1,
        f"most winners in a round {most} for 1",
    )


async def measure(
    name: str, uri: str, sizes: tuple[int, ...], samples: int, budget_s: float, rounds: int
) -> Result:
    database = f"bench_storage_{uuid.uuid4().hex[:8]}"
    client: AsyncMongoClient[Document] = AsyncMongoClient(uri, serverSelectionTimeoutMS=10_000)
    # One client a writer: 40 connections, as 40 service processes would hold.
    writers: list[AsyncMongoClient[Document]] = [
        AsyncMongoClient(uri, maxPoolSize=1) for _ in range(WRITERS)
    ]
    try:
        info = await client.admin.command("buildInfo")
        server = f"{info.get('version', '?')}" + (
            f" (FerretDB {info['ferretdb']['version']})" if "ferretdb" in info else ""
        )
        result = Result(name, uri, server, load=_load())
        say(f"{name}: {uri}, server {server}, load {result.load}")
        result.costs = await measure_costs(client[database]["commits"], sizes, samples, budget_s)
        say(f"{name}: races, {WRITERS} writers, {rounds} rounds each ...")
        collections = [w[database]["races"] for w in writers]
        await collections[0].create_index("offer_id")
        for w in writers:  # connect every writer before the first race
            await w.admin.command("ping")
        result.races = [
            await race_conditional(collections, 10, rounds),
            await race_conditional(collections, 1, rounds),
            await race_inc(collections, rounds),
            await race_unique(collections, rounds),
        ]
        for race in result.races:
            say(f"  {race.race}: {race.seen}, errors {race.errors}, decided {race.decided}")
        return result
    finally:
        await client.drop_database(database)
        await client.close()
        for w in writers:
            await w.close()


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f} on {os.cpu_count()} cores"


def render(results: list[Result]) -> str:
    names = [r.target for r in results]
    lines = [
        BEGIN,
        "",
        "Written by `bench/storage.py` (its docstring says how to run it). "
        "Median (p95) milliseconds of one command, sequential, on documents of "
        "about 1 KB shaped like event-store commits, `stream_id` indexed:",
        "",
        "| command | documents | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    sizes = sorted({c.documents for r in results for c in r.costs})
    for operation in OPERATIONS:
        for size in sizes:
            cells = []
            for r in results:
                c = next(
                    (c for c in r.costs if c.operation == operation and c.documents == size), None
                )
                cells.append(f"{c.median_ms:.2f} ({c.p95_ms:.2f})" if c else "–")
            lines.append(f"| `{operation}` | {size:,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Races, {WRITERS} concurrent writers (one connection each); "
        "*decided* = never more winners than there is to win, no lost `$inc`:",
        "",
        "| race | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for i, race in enumerate(results[0].races):
        cells = []
        for r in results:
            x = r.races[i]
            verdict = "**decided**" if x.decided else "**not decided**"
            cells.append(
                f"{verdict}: {x.seen} ({x.rounds} rounds"
                + (f", {x.errors} errors)" if x.errors else ")")
            )
        lines.append(f"| {race.race} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Servers: " + "; ".join(f"{r.target} = {r.server} at load {r.load}" for r in results) + ".",
        "",
        END,
    ]
    return "\n".join(lines)


def write_between_markers(path: Path, text: str) -> None:
    doc = path.read_text()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} markers to write between")
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(head + text + tail)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME=URI",
        help="a server to measure (repeatable), e.g. postgresql=mongodb://...",
    )
    parser.add_argument("--samples", type=int, default=200, help="commands per figure")
    parser.add_argument(
        "--sample-seconds",
        type=float,
        default=8.0,
        help="at most this long per figure (at least 5 commands)",
    )
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, DEFAULT_SIZES)),
        help="collection sizes to measure at, comma-separated",
    )
    parser.add_argument("--rounds", type=int, default=10, help="rounds of each race")
    parser.add_argument("--json", type=Path, help="also save the results here")
    parser.add_argument(
        "--from-json",
        type=Path,
        action="append",
        default=[],
        help="render saved results instead of measuring (repeatable)",
    )
    parser.add_argument("--write", type=Path, help="replace the figures in this doc")
    args = parser.parse_args()
    sizes = tuple(int(n) for n in args.sizes.split(","))
    results: list[Result] = []
    for saved in args.from_json:
        for raw in json.loads(saved.read_text()):
            results.append(
                Result(
                    raw["target"],
                    raw["uri"],
                    raw["server"],
                    [Cost(**c) for c in raw["costs"]],
                    [Race(**x) for x in raw["races"]],
                    raw["load"],
                )
            )
    for target in args.target:
        name, _, uri = target.partition("=")
        if not uri:
            parser.error(f"--target {target}: want NAME=URI")
        results.append(
            await measure(name, uri, sizes, args.samples, args.sample_seconds, args.rounds)
        )
    if not results:
        parser.error("nothing to do: give --target or --from-json")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    text = render(results)
    print(text)
    if args.write:
        write_between_markers(args.write, text)
        say(f"wrote the figures into {args.write}")


if __name__ == "__main__":
    asyncio.run(main())
