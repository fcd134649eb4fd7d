"""Issue counters that are race-free on FerretDB 1.24 (docs/storage.md).

A bucket is one scope (`seller:<id>`, `offer:<id>`, `product:<id>`,
`platform`) for one UTC day or hour. Its counts are never changed in place (`$inc`
and conditional updates are not atomic there): each event that counts writes
a new *revision* of the bucket, `<bucket>|<rev>`, by `insert_one` under the
`_id` index, so of two racing writers exactly one gets a revision and the
other re-reads and tries the next. A revision carries the ids of the events
it counts, so counting an event twice (a redelivery, a retry after a crash)
changes nothing. A superseded revision is emptied to a small stub, never
deleted: a freed `_id` would let a writer holding a stale read insert an
orphan revision there (the ABA race, seen on FerretDB in the integration
test). A `<bucket>` document points at the newest revision (a hint: readers
probe past it).

A writer remembers the last revision it wrote or read of each bucket and
tries the next one without reading first: if another writer got there, the
insert collides and it reads. The `<bucket>` pointer is moved every
`POINT_EVERY` revisions, so a reader probes at most that many past it.

Everything is read by `_id`: a window of N days (or hours) is N bucket
reads, which is why rates are kept per day (a 7-day window is 7 reads) and
only the platform-wide report also per hour (its last 24 hours).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from kami_events.mongo import Document, upsert_one

MAX_ATTEMPTS = 100
# Revisions deleted by a writer are skipped over while probing; a bucket never
# has this many deleted ones in a row unless something is badly wrong.
MAX_PROBE = 1000
# How often (in revisions) a bucket's pointer is moved on.
POINT_EVERY = 8
# Buckets whose last revision a process remembers.
REMEMBERED_BUCKETS = 10_000


HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def bucket_id(scope: str, at: datetime, unit: timedelta) -> str:
    moment = at.astimezone(UTC)
    if unit == DAY:
        return f"{scope}|{moment:%Y%m%d}"
    if unit == HOUR:
        return f"{scope}|{moment:%Y%m%d%H}"
    raise ValueError(f"buckets are a day or an hour, not {unit}")


class IssueCounters:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._docs = collection
        # bucket -> (its last revision known here, that revision's document)
        self._known: OrderedDict[str, tuple[int, Document]] = OrderedDict()

    async def add(
        self,
        scope: str,
        at: datetime,
        event_id: str,
        counts: Mapping[str, int],
        unit: timedelta = DAY,
    ) -> bool:
        """Count `event_id` once in `scope`'s bucket for the day (or hour) of
        `at`. Returns False when it was counted before."""
        bucket = bucket_id(scope, at, unit)
        for attempt in range(MAX_ATTEMPTS):
            known = self._known.get(bucket) if attempt == 0 else None
            rev, doc = known if known is not None else await self._latest(bucket)
            events: list[str] = list(doc["events"]) if doc else []
            if event_id in events:
                return False
            merged = dict(doc["counts"]) if doc else {}
            for name, n in counts.items():
                merged[name] = int(merged.get(name, 0)) + n
            written: Document = {
                "_id": _revision(bucket, rev + 1),
                "counts": merged,
                "events": [*events, event_id],
            }
            try:
                await self._docs.insert_one(written)
            except DuplicateKeyError:
                continue  # another writer took this revision: re-read, retry
            self._remember(bucket, rev + 1, written)
            if rev + 1 == 1 or (rev + 1) % POINT_EVERY == 0:
                await upsert_one(self._docs, {"_id": bucket}, {"$max": {"rev": rev + 1}})
            if rev:
                await self._docs.update_one(
                    {"_id": _revision(bucket, rev)},
                    {"$set": {"superseded": True}, "$unset": {"counts": "", "events": ""}},
                )
            return True
        raise RuntimeError(f"{bucket}: no free revision after {MAX_ATTEMPTS} attempts")

    async def read(self, scope: str, at: datetime, unit: timedelta = DAY) -> dict[str, int]:
        _, doc = await self._latest(bucket_id(scope, at, unit))
        return {k: int(v) for k, v in doc["counts"].items()} if doc else {}

    async def window(
        self, scope: str, now: datetime, buckets: int, unit: timedelta = DAY
    ) -> dict[str, int]:
        """The counts of the last `buckets` days (or hours), the current one included."""
        totals: dict[str, int] = {}
        for back in range(buckets):
            for name, n in (await self.read(scope, now - back * unit, unit)).items():
                totals[name] = totals.get(name, 0) + n
        return totals

    async def _latest(self, bucket: str) -> tuple[int, Document | None]:
        head = await self._docs.find_one({"_id": bucket})
        rev = int(head["rev"]) if head else 0
        doc = await self._docs.find_one({"_id": _revision(bucket, rev)}) if rev else None
        for _ in range(MAX_PROBE):
            following = await self._docs.find_one({"_id": _revision(bucket, rev + 1)})
            if following is not None:
                rev, doc = rev + 1, following
            elif doc is not None and doc.get("superseded"):
                # Emptied after its successor was inserted; the successor was
                # just read as missing: a stale read. Read this one again.
                doc = await self._docs.find_one({"_id": _revision(bucket, rev)})
                continue
            else:
                if doc is not None:
                    self._remember(bucket, rev, doc)
                return rev, doc
        raise RuntimeError(f"{bucket}: revisions do not end")

    def _remember(self, bucket: str, rev: int, doc: Document) -> None:
        self._known.pop(bucket, None)
        self._known[bucket] = (rev, doc)
        while len(self._known) > REMEMBERED_BUCKETS:
            self._known.popitem(last=False)


def _revision(bucket: str, rev: int) -> str:
    return f"{bucket}|{rev:06d}"
