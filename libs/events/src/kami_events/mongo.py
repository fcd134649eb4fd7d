"""Opening MongoDB (or FerretDB) with the options every service needs."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

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
        appname=app_name,
        tz_aware=True,
        uuidRepresentation="standard",
        retryWrites=False,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        maxPoolSize=max_pool_size,
    )
