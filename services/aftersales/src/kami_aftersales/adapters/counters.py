"""Issue counters: per scope (`seller:<id>`, `offer:<id>`, `product:<id>`,
`platform`) and UTC day (or hour), one bucket each of
`kami_events.counters.RevisionCounters`, so a count is one insert whatever
the bucket holds and an event is counted once however often it comes.

Everything is read by `_id`: a window of N days (or hours) is N bucket
reads, which is why rates are kept per day (a 7-day window is 7 reads) and
only the platform-wide report also per hour (its last 24 hours).

Buckets counted before this layout (`issue_counters`, whose revisions carried
every event id of their day, so a count rewrote a list that grew with each
order) are read once, when a bucket has no revision of its own yet: their
counts are where the bucket's first revision starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from kami_events.counters import MAX_PROBE, Counted, RevisionCounters
from kami_events.mongo import Document

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
    def __init__(
        self,
        revisions: AsyncCollection[Document],
        heads: AsyncCollection[Document],
        legacy: AsyncCollection[Document] | None = None,
    ) -> None:
        self._legacy = legacy
        self._counters = RevisionCounters(revisions, heads, base=self._legacy_base)

    @classmethod
    def in_database(cls, db: AsyncDatabase[Document]) -> IssueCounters:
        return cls(db["issue_counts"], db["issue_count_heads"], db["issue_counters"])

    async def ensure_indexes(self) -> None:
        await self._counters.ensure_indexes()

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
        return await self._counters.add(bucket_id(scope, at, unit), event_id, counts)

    async def read(self, scope: str, at: datetime, unit: timedelta = DAY) -> dict[str, int]:
        return await self._counters.read(bucket_id(scope, at, unit))

    async def window(
        self, scope: str, now: datetime, buckets: int, unit: timedelta = DAY
    ) -> dict[str, int]:
        """The counts of the last `buckets` days (or hours), the current one included."""
        totals: dict[str, int] = {}
        for back in range(buckets):
            for name, n in (await self.read(scope, now - back * unit, unit)).items():
                totals[name] = totals.get(name, 0) + n
        return totals

    async def _legacy_base(self, bucket: str) -> Counted:
        """The bucket as the layout before counted it (nothing, without one)."""
        if self._legacy is None:
            return Counted()
        head = await self._legacy.find_one({"_id": bucket})
        rev = int(head["rev"]) if head else 0
        doc = await self._legacy.find_one({"_id": _legacy_revision(bucket, rev)}) if rev else None
        for _ in range(MAX_PROBE):
            following = await self._legacy.find_one({"_id": _legacy_revision(bucket, rev + 1)})
            if following is None:
                break
            rev, doc = rev + 1, following
        if doc is None or "counts" not in doc:
            return Counted()
        return Counted(
            {k: int(v) for k, v in doc["counts"].items()},
            frozenset(str(e) for e in doc.get("events", ())),
        )


def _legacy_revision(bucket: str, rev: int) -> str:
    return f"{bucket}|{rev:06d}"
