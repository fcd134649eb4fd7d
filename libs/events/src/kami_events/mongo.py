"""Opening MongoDB (or FerretDB) with the options every service needs."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from kami_events.metrics import MONGO_COMMAND_SECONDS

Document = dict[str, Any]


def connect(
    uri: str, *, app_name: str, timeout_ms: int = 10_000, max_pool_size: int = 10
) -> AsyncMongoClient[Document]:
    """An async client that returns timezone-aware datetimes in UTC.

    Retryable writes are off because FerretDB 1.24 does not support them;
    every write Kami makes is idempotent on its own (unique ids, conditional
    updates), so a caller-level retry is safe on MongoDB too. The pool is
    small: under a burst, requests queue in the service rather than pile
    onto the database (FerretDB's SQLite backend corrupted a database under
    hundreds of concurrent connections here; see docs/storage.md).
    """
    return AsyncMongoClient(
        uri,
        event_listeners=[CommandTimer(app_name)],
        appname=app_name,
        tz_aware=True,
        uuidRepresentation="standard",
        retryWrites=False,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        maxPoolSize=max_pool_size,
    )


async def upsert_one(
    collection: AsyncCollection[Document], query: Mapping[str, Any], update: Mapping[str, Any]
) -> None:
    """`update_one(..., upsert=True)` that survives a racing upsert.

    Two upserts of a missing document race to insert it: MongoDB retries the
    loser itself, FerretDB on PostgreSQL reports E11000 instead. The document
    exists by then, so one retry is a plain update."""
    try:
        await collection.update_one(query, update, upsert=True)
    except DuplicateKeyError:
        await collection.update_one(query, update, upsert=True)


async def write_newer(
    collection: AsyncCollection[Document],
    doc_id: str,
    version: int,
    fields: Mapping[str, Any],
    on_insert: Mapping[str, Any] | None = None,
    *,
    guard: str = "version",
) -> bool:
    """Set `fields` and `version` (under the name `guard`) on the document
    unless it already holds `version` or a later one: a late or replayed
    older write changes nothing. False: a newer one stands. One command, by
    `_id`.

    FerretDB decides no update race (docs/storage.md): of two writes that
    overlap in time, the older may still land last. Callers whose writers can
    overlap check afterwards (ordering's `sync_views`); the others have one
    writer per document at a time (one partition's events, in order).

    Upserting a document that holds a newer version collides on `_id`. So
    does an upsert that lost a race to insert a missing document; the
    document exists then, so one more try decides which of the two it was."""
    update: Document = {"$set": {**fields, guard: version}}
    if on_insert:
        update["$setOnInsert"] = dict(on_insert)
    for _attempt in range(2):
        try:
            await collection.update_one(
                # `$not $gte` rather than `$lt`: a document without the
                # guard yet (written by another of its writers) is older too.
                {"_id": doc_id, guard: {"$not": {"$gte": version}}},
                update,
                upsert=True,
            )
            return True
        except DuplicateKeyError:
            continue
    return False


# Where each command keeps its filter.
_FILTER_KEYS = {"find": "filter", "count": "query", "findAndModify": "query"}


class CommandTimer(monitoring.CommandListener):
    """Times every command by collection and filter shape (the sorted field
    names of its filter), so an operator sees which queries cost what."""

    def __init__(self, app: str) -> None:
        self._app = app
        self._started: dict[int, tuple[str, str, str]] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command_name
        collection = event.command.get(command)
        if not isinstance(collection, str):
            return
        self._started[event.request_id] = (collection, command, _filter_shape(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._observe(event.request_id, event.duration_micros)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._observe(event.request_id, event.duration_micros)

    def _observe(self, request_id: int, micros: int) -> None:
        labels = self._started.pop(request_id, None)
        if labels is not None:
            MONGO_COMMAND_SECONDS.labels(self._app, *labels).observe(micros / 1e6)


def _filter_shape(command: Mapping[str, Any]) -> str:
    name = next(iter(command))
    query: Any
    if name in ("update", "delete"):
        statements = command.get("updates") or command.get("deletes") or []
        query = statements[0].get("q", {}) if statements else {}
    elif (key := _FILTER_KEYS.get(name)) is not None:
        query = command.get(key) or {}
    else:
        return ""
    if not isinstance(query, dict):
        return ""
    return ",".join(sorted(query)) or "(none)"


class InsertGroup:
    """Single-document inserts into one collection, made concurrently by
    different handlers, written together: one `insert_many` (unordered) for
    whatever waited on the write before it.

    Each document is still decided alone by the collection's unique indexes:
    `insert` raises `DuplicateKeyError` for its own document only, as
    `insert_one` would. A lone insert costs what `insert_one` does.
    """

    MAX_BATCH = 200

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection
        self._waiting: list[tuple[Document, asyncio.Future[bool]]] = []
        self._lock = asyncio.Lock()

    async def insert(self, document: Document) -> None:
        accepted: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((document, accepted))
        async with self._lock:
            if not accepted.done():
                batch = self._waiting[: self.MAX_BATCH]
                del self._waiting[: len(batch)]
                # Shielded: a cancelled caller must not cut the others' write short.
                await asyncio.shield(self._write(batch))
        if not await accepted:
            raise DuplicateKeyError(f"{self.collection.name}: {document.get('_id')!r} exists")

    async def _write(self, batch: list[tuple[Document, asyncio.Future[bool]]]) -> None:
        refused: set[int] = set()
        try:
            try:
                await self.collection.insert_many([doc for doc, _ in batch], ordered=False)
            except BulkWriteError as exc:
                for error in exc.details.get("writeErrors", []):
                    if error.get("code") != DUPLICATE_KEY:
                        raise
                    refused.add(int(error["index"]))
        except Exception as exc:
            for _, accepted in batch:
                if not accepted.done():
                    accepted.set_exception(exc)
            return
        for index, (_, accepted) in enumerate(batch):
            accepted.set_result(index not in refused)


DUPLICATE_KEY = 11000
