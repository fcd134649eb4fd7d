"""Counters that are race-free on FerretDB 1.24 and cost one insert per count.

A counter *bucket* (`seller:<id>`, `offer:<id>|20261208`, ...) holds named
counts. They are never changed in place (`$inc` and conditional updates are
not atomic there, docs/storage.md): each event that counts inserts the
bucket's next *revision*, `<bucket>|<rev>`, carrying the bucket's running
counts and the key of the one event it adds. Two unique indexes make that
one insert both race-free and idempotent, as the ledger's lines are:

- `_id`: of two writers that read the same revision, exactly one gets the
  next; the other re-reads and tries the one after;
- `event_key`: an event lands in a bucket at most once, for ever, so a
  redelivery or a retry after a crash changes nothing.

A revision is small and never changed or deleted (a freed `_id` would let a
writer holding a stale read insert an orphan revision there), so a count
costs the same however many the bucket holds: no count ever reads a
bucket's history. The heads collection points at each bucket's newest
revision (a hint, moved every `POINT_EVERY` revisions: readers probe past it
by `_id`). A process remembers the last revision it wrote or read of each
bucket: a count tries the next one without reading first (a collision sends
it to read), and a read asks only whether a later one exists.

A bucket with no revision yet starts from its *base* (`Base`): what the
caller counted before it kept this bucket (its own records, or an older
layout), with the keys of the events already in it. A base must leave out
the effect of any event not yet counted here, so callers count an event
before they write its other effects.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from kami_events.mongo import Document, upsert_one

MAX_ATTEMPTS = 100
# A bucket is never this many revisions past its pointer unless something is
# badly wrong.
MAX_PROBE = 1000
# How often (in revisions) a bucket's pointer is moved on.
POINT_EVERY = 8
# Buckets whose last revision a process remembers.
REMEMBERED_BUCKETS = 10_000


@dataclass(frozen=True)
class Counted:
    """A bucket's counts where its own revisions start, and the keys of the
    events already in them."""

    counts: Mapping[str, int] = field(default_factory=dict)
    event_keys: frozenset[str] = frozenset()


Base = Callable[[str], Awaitable[Counted]]


async def nothing_counted(bucket: str) -> Counted:
    return Counted()


@dataclass(frozen=True)
class _Revision:
    number: int  # 0: the bucket has none of its own yet
    counts: Mapping[str, int]
    base_event_keys: frozenset[str] = frozenset()


class RevisionCounters:
    def __init__(
        self,
        revisions: AsyncCollection[Document],
        heads: AsyncCollection[Document],
        *,
        base: Base = nothing_counted,
    ) -> None:
        self._revisions = revisions
        self._heads = heads
        self._base = base
        # bucket -> its last revision known here
        self._known: OrderedDict[str, _Revision] = OrderedDict()

    async def ensure_indexes(self) -> None:
        await self._revisions.create_index("event_key", unique=True, name="event_key_unique")

    def forget(self) -> None:
        """Forget what this process knows of every bucket (after the
        collections were emptied: its next count must not guess on)."""
        self._known.clear()

    async def add(self, bucket: str, event_key: str, deltas: Mapping[str, int]) -> bool:
        """Count the event `event_key` once in `bucket`: add `deltas` to its
        counts. Returns False when it was counted before."""
        key = f"{bucket}|{event_key}"
        for attempt in range(MAX_ATTEMPTS):
            known = self._known.get(bucket) if attempt == 0 else None
            latest = known if known is not None else await self._latest(bucket)
            if event_key in latest.base_event_keys:
                return False
            merged = dict(latest.counts)
            for name, n in deltas.items():
                merged[name] = int(merged.get(name, 0)) + n
            number = latest.number + 1
            try:
                await self._revisions.insert_one(
                    {"_id": _revision(bucket, number), "event_key": key, "counts": merged}
                )
            except DuplicateKeyError:
                if await self._revisions.find_one({"event_key": key}, {"_id": 1}):
                    return False  # counted before (a redelivery, or a racing twin)
                continue  # another writer took this revision: re-read, retry
            self._remember(bucket, _Revision(number, merged))
            if number == 1 or number % POINT_EVERY == 0:
                await upsert_one(self._heads, {"_id": bucket}, {"$max": {"rev": number}})
            return True
        raise RuntimeError(f"{bucket}: no free revision after {MAX_ATTEMPTS} attempts")

    async def read(self, bucket: str) -> dict[str, int]:
        latest = await self._latest(bucket, self._known.get(bucket))
        return {k: int(v) for k, v in latest.counts.items()}

    async def _latest(self, bucket: str, known: _Revision | None = None) -> _Revision:
        """The bucket's newest revision: probed for past the one this process
        knows, else past the head's pointer (a bucket with none: its base)."""
        if known is None:
            head = await self._heads.find_one({"_id": bucket})
            number = int(head["rev"]) if head else 0
            doc = (
                await self._revisions.find_one({"_id": _revision(bucket, number)})
                if number
                else None
            )
            known = _Revision(number, doc["counts"]) if doc is not None else None
        latest = known
        number = known.number if known is not None else 0
        for _ in range(MAX_PROBE):
            following = await self._revisions.find_one({"_id": _revision(bucket, number + 1)})
            if following is None:
                break
            number += 1
            latest = _Revision(number, following["counts"])
        else:
            raise RuntimeError(f"{bucket}: revisions do not end")
        if latest is None:
            base = await self._base(bucket)
            latest = _Revision(0, base.counts, base.event_keys)
        self._remember(bucket, latest)
        return latest

    def _remember(self, bucket: str, revision: _Revision) -> None:
        self._known.pop(bucket, None)
        self._known[bucket] = revision
        while len(self._known) > REMEMBERED_BUCKETS:
            self._known.popitem(last=False)


def _revision(bucket: str, rev: int) -> str:
    return f"{bucket}|{rev:06d}"
