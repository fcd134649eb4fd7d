"""Issue counters that are race-free on FerretDB 1.24 (docs/storage.md).

A bucket is one scope (`seller:<id>`, `offer:<id>`, `product:<id>`,
`platform`) for one UTC day or hour. Its counts are never changed in place (`$inc`
and conditional updates are not atomic there): each event that counts inserts
the bucket's next *revision*, `<bucket>|<rev>`, carrying the bucket's running
counts and the key of the one event it adds (`<bucket>|<event id>`). Two
unique indexes make that one insert both race-free and idempotent, as the
ledger's lines are:
- `_id`: of two writers that read the same revision, exactly one gets the
  next; the other re-reads and tries the one after;
- `event_key`: an event lands in a bucket at most once, for ever, so a
  redelivery or a retry after a crash changes nothing.
A revision is small and never changed or deleted (a freed `_id` would let a
writer holding a stale read insert an orphan revision there). Before, a
revision carried every event id of its bucket's day, so a busy seller's
count rewrote a list that grew with each order, and the superseded revision
was emptied by a second write.

`issue_count_heads` points at each bucket's newest revision (a hint, moved
every `POINT_EVERY` revisions: readers probe past it by `_id`). A writer
remembers the last revision it wrote or read of each bucket and tries the
next one without reading first: if another writer got there, the insert
collides and it reads.

Everything is read by `_id`: a window of N days (or hours) is N bucket
reads, which is why rates are kept per day (a 7-day window is 7 reads) and
only the platform-wide report also per hour (its last 24 hours).

Buckets counted before this layout (`issue_counters`, whose revisions carry
their event ids) are read once, when a bucket has no revision of its own yet:
their counts are where the bucket's first revision starts.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
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


HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def bucket_id(scope: str, at: datetime, unit: timedelta) -> str:
    moment = at.astimezone(UTC)
    if unit == DAY:
        return f"{scope}|{moment:%Y%m%d}"
    if unit == HOUR:
        return f"{scope}|{moment:%Y%m%d%H}"
    raise ValueError(f"buckets are a day or an hour, not {unit}")


@dataclass(frozen=True)
class _Revision:
    number: int  # 0: the bucket has none of its own yet
    counts: Mapping[str, int]
    # Events of the layout before, counted in the counts of revision 0.
    legacy_events: frozenset[str] = frozenset()


class IssueCounters:
    def __init__(
        self,
        revisions: AsyncCollection[Document],
        heads: AsyncCollection[Document],
        legacy: AsyncCollection[Document] | None = None,
    ) -> None:
        self._revisions = revisions
        self._heads = heads
        self._legacy = legacy
        # bucket -> its last revision known here
        self._known: OrderedDict[str, _Revision] = OrderedDict()

    @classmethod
    def in_database(cls, db: AsyncDatabase[Document]) -> IssueCounters:
        return cls(db["issue_counts"], db["issue_count_heads"], db["issue_counters"])

    async def ensure_indexes(self) -> None:
        await self._revisions.create_index("event_key", unique=True, name="event_key_unique")

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
        event_key = f"{bucket}|{event_id}"
        for attempt in range(MAX_ATTEMPTS):
            known = self._known.get(bucket) if attempt == 0 else None
            latest = known if known is not None else await self._latest(bucket)
            if event_id in latest.legacy_events:
                return False
            merged = dict(latest.counts)
            for name, n in counts.items():
                merged[name] = int(merged.get(name, 0)) + n
            number = latest.number + 1
            try:
                await self._revisions.insert_one(
                    {"_id": _revision(bucket, number), "event_key": event_key, "counts": merged}
                )
            except DuplicateKeyError:
                if await self._revisions.find_one({"event_key": event_key}, {"_id": 1}):
                    return False  # counted before (a redelivery, or a racing twin)
                continue  # another writer took this revision: re-read, retry
            self._remember(bucket, _Revision(number, merged))
            if number == 1 or number % POINT_EVERY == 0:
                await upsert_one(self._heads, {"_id": bucket}, {"$max": {"rev": number}})
            return True
        raise RuntimeError(f"{bucket}: no free revision after {MAX_ATTEMPTS} attempts")

    async def read(self, scope: str, at: datetime, unit: timedelta = DAY) -> dict[str, int]:
        latest = await self._latest(bucket_id(scope, at, unit))
        return {k: int(v) for k, v in latest.counts.items()}

    async def window(
        self, scope: str, now: datetime, buckets: int, unit: timedelta = DAY
    ) -> dict[str, int]:
        """The counts of the last `buckets` days (or hours), the current one included."""
        totals: dict[str, int] = {}
        for back in range(buckets):
            for name, n in (await self.read(scope, now - back * unit, unit)).items():
                totals[name] = totals.get(name, 0) + n
        return totals

    async def _latest(self, bucket: str) -> _Revision:
        head = await self._heads.find_one({"_id": bucket})
        number = int(head["rev"]) if head else 0
        doc = await self._revisions.find_one({"_id": _revision(bucket, number)}) if number else None
        for _ in range(MAX_PROBE):
            following = await self._revisions.find_one({"_id": _revision(bucket, number + 1)})
            if following is None:
                break
            number, doc = number + 1, following
        else:
            raise RuntimeError(f"{bucket}: revisions do not end")
        latest = (
            _Revision(number, doc["counts"]) if doc is not None else await self._legacy_base(bucket)
        )
        self._remember(bucket, latest)
        return latest

    async def _legacy_base(self, bucket: str) -> _Revision:
        """The bucket as the layout before counted it (nothing, without one)."""
        if self._legacy is None:
            return _Revision(0, {})
        head = await self._legacy.find_one({"_id": bucket})
        rev = int(head["rev"]) if head else 0
        doc = await self._legacy.find_one({"_id": _revision(bucket, rev)}) if rev else None
        for _ in range(MAX_PROBE):
            following = await self._legacy.find_one({"_id": _revision(bucket, rev + 1)})
            if following is None:
                break
            rev, doc = rev + 1, following
        if doc is None or "counts" not in doc:
            return _Revision(0, {})
        return _Revision(0, doc["counts"], frozenset(str(e) for e in doc.get("events", ())))

    def _remember(self, bucket: str, revision: _Revision) -> None:
        self._known.pop(bucket, None)
        self._known[bucket] = revision
        while len(self._known) > REMEMBERED_BUCKETS:
            self._known.popitem(last=False)


def _revision(bucket: str, rev: int) -> str:
    return f"{bucket}|{rev:06d}"
