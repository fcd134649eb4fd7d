"""Where the ledger lives: movement records and the journal lines of every account.

Two collections, single-document writes only (see `kami_payment.ledger` for
the protocol built on them):

- `ledger_movements`: one document per movement (`_id` = movement id) with
  its postings, its state (`pending` → `applied` | `rejected`) and whether its
  follow-up (the payment or deposit event it causes) was `recorded`.
- `ledger_lines`: the journal. One document per posting applied to an
  account, `_id` = `<account id>#<seq>`: the account's lines are numbered by
  `seq` with the running `balance_after`, and the `_id` lets exactly one
  writer append line n+1 to an account. A unique index on `line_id`
  (`<movement id>|<account id>`) lets a posting be applied at most once, for
  ever. A refused guarded debit leaves a *rejection* document with the same
  `line_id` (`_id` = `rejected:<line id>`), so a posting is either applied or
  refused, never both. Rejections carry a private `account` value so
  statements never list them. A retry finds what became of a posting by its
  `line_id` (an index lookup on MongoDB and on FerretDB over PostgreSQL).

Why so: only an insert under a unique index decides a race on FerretDB
(docs/storage.md), and the journal grows with every posting. An account's
last line is found by walking `_id`s on from the last one this process saw.
(Until 2026-12 a `ledger_line_ids` collection mapped line ids to lines by
`_id`, for FerretDB on SQLite, which scans any other filter; it is no longer
written or read.)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from kami_events.mongo import Document
from kami_payment.domain.ledger import (
    Account,
    AccountType,
    MetaValue,
    Movement,
    MovementPurpose,
    Posting,
)


class MovementState(StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    REJECTED = "rejected"


@dataclass(frozen=True)
class StoredMovement:
    movement: Movement
    state: MovementState
    recorded: bool
    created_at: datetime
    # Stored by the call that returned it: none of its postings can have a
    # line unless another worker took it up since (the line ids decide then).
    fresh: bool = False
    # What its lines decided, when the call that returned it wrote them and
    # left its state pending for the write that records its follow-up
    # (`Ledger.finish`): applied or rejected.
    decided: MovementState | None = None

    @property
    def id(self) -> str:
        return self.movement.id

    @property
    def outcome(self) -> MovementState:
        return self.decided or self.state

    @property
    def applied(self) -> bool:
        return self.outcome is MovementState.APPLIED

    def meta_str(self, key: str) -> str:
        value = self.movement.meta.get(key)
        if not isinstance(value, str):
            raise KeyError(f"movement {self.id} has no text {key!r}")
        return value

    def meta_int(self, key: str) -> int:
        value = self.movement.meta.get(key)
        if not isinstance(value, int):
            raise KeyError(f"movement {self.id} has no number {key!r}")
        return value


class LineKind(StrEnum):
    POSTING = "posting"
    REJECTION = "rejection"


@dataclass(frozen=True)
class JournalLine:
    line_id: str
    movement_id: str
    purpose: MovementPurpose
    account: Account
    seq: int
    amount: int
    balance_after: int
    at: datetime
    order_id: str | None = None


class LineInsert(StrEnum):
    INSERTED = "inserted"
    # The posting was already applied or refused (by another worker).
    LINE_EXISTS = "line_exists"
    # Another posting took this seq of the account first: re-read and retry.
    SEQ_TAKEN = "seq_taken"


def line_id(movement_id: str, account: Account) -> str:
    return f"{movement_id}|{account.id}"


class Journal(Protocol):
    async def insert_movement(self, movement: Movement, now: datetime) -> StoredMovement:
        """Store a new movement as pending, or return the one already stored under its id."""

    async def get_movement(self, movement_id: str) -> StoredMovement | None: ...

    async def finish_movement(
        self, movement_id: str, state: MovementState, *, recorded: bool = False
    ) -> bool:
        """Pending → applied or rejected (and `recorded`, when its follow-up
        is); False if it was finished already."""

    async def mark_recorded(self, movement_id: str) -> None: ...

    async def unrecorded(
        self,
        *,
        created_before: datetime | None = None,
        payment_id: str | None = None,
        limit: int = 100,
    ) -> list[StoredMovement]:
        """Movements whose follow-up is not done, oldest first."""

    async def count_in_flight(self) -> int:
        """Movements not yet applied or rejected (half-applied ones included)."""

    async def line_kind(self, line_id: str) -> LineKind | None: ...

    async def last_line(
        self, account: Account, *, trust_remembered: bool = False
    ) -> JournalLine | None:
        """The account's last line. `trust_remembered`: the last line this
        process wrote or read will do, without asking (for a posting's first
        try: if another writer added a line since, the insert at the next seq
        collides and the posting asks again)."""

    async def insert_line(self, line: JournalLine) -> LineInsert: ...

    async def insert_rejection(
        self, line_id: str, movement_id: str, account: Account, now: datetime
    ) -> bool:
        """Record that a guarded posting was refused; False if the line exists already."""

    async def lines(
        self, accounts: Sequence[Account], *, limit: int, offset: int = 0
    ) -> list[JournalLine]:
        """The accounts' journal lines, newest first."""

    async def lines_after(self, account: Account, seq: int, limit: int) -> list[JournalLine]:
        """The account's lines numbered above `seq`, in order."""

    async def totals_by_type(self) -> dict[AccountType, int]:
        """The sum of every applied posting, per account type."""


class MongoJournal:
    # Accounts whose last line this process remembers (each entry one line).
    REMEMBERED_ACCOUNTS = 100_000

    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self._movements: AsyncCollection[Document] = database["ledger_movements"]
        self._lines: AsyncCollection[Document] = database["ledger_lines"]
        self._last: OrderedDict[str, JournalLine] = OrderedDict()

    async def ensure_indexes(self) -> None:
        await self._lines.create_index("line_id", unique=True, name="line_id_unique")
        await self._lines.create_index(
            [("account", ASCENDING), ("at", DESCENDING)], name="account_at"
        )
        await self._movements.create_index(
            [("recorded", ASCENDING), ("created_at", ASCENDING)], name="unrecorded"
        )
        await self._movements.create_index(
            [("payment_id", ASCENDING), ("recorded", ASCENDING)], name="payment_unrecorded"
        )
        await self._movements.create_index("state", name="state")

    async def insert_movement(self, movement: Movement, now: datetime) -> StoredMovement:
        document: Document = {
            "_id": movement.id,
            "purpose": movement.purpose.value,
            "postings": [{"account": p.account.id, "amount": p.amount} for p in movement.postings],
            "meta": dict(movement.meta),
            "payment_id": movement.meta.get("payment_id"),
            "state": MovementState.PENDING.value,
            "recorded": False,
            "created_at": now,
        }
        try:
            await self._movements.insert_one(document)
        except DuplicateKeyError:
            existing = await self.get_movement(movement.id)
            if existing is None:  # pragma: no cover - a duplicate key implies a document
                raise
            return existing
        return replace(_movement_from(document), fresh=True)

    async def get_movement(self, movement_id: str) -> StoredMovement | None:
        document = await self._movements.find_one({"_id": movement_id})
        return _movement_from(document) if document else None

    async def finish_movement(
        self, movement_id: str, state: MovementState, *, recorded: bool = False
    ) -> bool:
        finished: Document = {"state": state.value}
        if recorded:
            finished["recorded"] = True
        result = await self._movements.update_one(
            {"_id": movement_id, "state": MovementState.PENDING.value}, {"$set": finished}
        )
        return result.modified_count == 1

    async def mark_recorded(self, movement_id: str) -> None:
        await self._movements.update_one({"_id": movement_id}, {"$set": {"recorded": True}})

    async def unrecorded(
        self,
        *,
        created_before: datetime | None = None,
        payment_id: str | None = None,
        limit: int = 100,
    ) -> list[StoredMovement]:
        query: Document = {"recorded": False}
        if created_before is not None:
            query["created_at"] = {"$lt": created_before}
        if payment_id is not None:
            query["payment_id"] = payment_id
        cursor = self._movements.find(query).sort("created_at", ASCENDING).limit(limit)
        return [_movement_from(doc) async for doc in cursor]

    async def count_in_flight(self) -> int:
        return await self._movements.count_documents({"state": MovementState.PENDING.value})

    async def line_kind(self, line_id: str) -> LineKind | None:
        found = await self._lines.find_one({"line_id": line_id}, {"kind": 1})
        return LineKind(found["kind"]) if found is not None else None

    async def last_line(
        self, account: Account, *, trust_remembered: bool = False
    ) -> JournalLine | None:
        """Walk the account's `_id`s on from the last line this process saw:
        doubling the step, then halving back (seqs are dense), so a process
        that saw nothing of an account finds its end in about 2·log2(n) reads."""
        known = self._last.get(account.id)
        if known is not None and trust_remembered:
            return known
        low, low_line = (known.seq, known) if known else (0, None)
        step = 1
        while True:
            found = await self._line_at(account, low + step)
            if found is None:
                high = low + step
                break
            low, low_line = low + step, found
            step *= 2
        while high - low > 1:
            middle = (low + high) // 2
            found = await self._line_at(account, middle)
            if found is None:
                high = middle
            else:
                low, low_line = middle, found
        if low_line is not None:
            self._remember(low_line)
        return low_line

    async def insert_line(self, line: JournalLine) -> LineInsert:
        try:
            await self._lines.insert_one(
                {
                    "_id": _line_doc_id(line.account, line.seq),
                    "line_id": line.line_id,
                    "kind": LineKind.POSTING.value,
                    "movement_id": line.movement_id,
                    "purpose": line.purpose.value,
                    "account": line.account.id,
                    "account_type": line.account.type.value,
                    "owner": line.account.owner,
                    "seq": line.seq,
                    "amount": line.amount,
                    "balance_after": line.balance_after,
                    "order_id": line.order_id,
                    "at": line.at,
                }
            )
        except DuplicateKeyError:
            at_seq = await self._line_at(line.account, line.seq)
            if at_seq is not None and at_seq.line_id != line.line_id:
                return LineInsert.SEQ_TAKEN
            # The line was decided before: applied (at this seq or another) or refused.
            return LineInsert.LINE_EXISTS
        self._remember(line)
        return LineInsert.INSERTED

    async def insert_rejection(
        self, line_id: str, movement_id: str, account: Account, now: datetime
    ) -> bool:
        try:
            await self._lines.insert_one(
                {
                    "_id": _rejection_id(line_id),
                    "line_id": line_id,
                    "kind": LineKind.REJECTION.value,
                    "movement_id": movement_id,
                    # Never a real account: statements do not list rejections.
                    "account": f"rejected:{line_id}",
                    "seq": 0,
                    "refused_account": account.id,
                    "at": now,
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def _line_at(self, account: Account, seq: int) -> JournalLine | None:
        document = await self._lines.find_one({"_id": _line_doc_id(account, seq)})
        return _line_from(document) if document else None

    def _remember(self, line: JournalLine) -> None:
        known = self._last.pop(line.account.id, None)
        self._last[line.account.id] = line if known is None or known.seq < line.seq else known
        while len(self._last) > self.REMEMBERED_ACCOUNTS:
            self._last.popitem(last=False)

    async def lines(
        self, accounts: Sequence[Account], *, limit: int, offset: int = 0
    ) -> list[JournalLine]:
        cursor = (
            self._lines.find({"account": {"$in": [a.id for a in accounts]}})
            .sort([("at", DESCENDING), ("seq", DESCENDING)])
            .skip(offset)
            .limit(limit)
        )
        return [_line_from(doc) async for doc in cursor]

    async def lines_after(self, account: Account, seq: int, limit: int) -> list[JournalLine]:
        lines: list[JournalLine] = []
        while len(lines) < limit:
            found = await self._line_at(account, seq + len(lines) + 1)
            if found is None:
                break
            lines.append(found)
        return lines

    async def totals_by_type(self) -> dict[AccountType, int]:
        totals: dict[AccountType, int] = {}
        cursor = await self._lines.aggregate(
            [
                {"$match": {"kind": LineKind.POSTING.value}},
                {"$group": {"_id": "$account_type", "total": {"$sum": "$amount"}}},
            ]
        )
        async for row in cursor:
            totals[AccountType(row["_id"])] = int(row["total"])
        return totals


def _movement_from(document: Mapping[str, Any]) -> StoredMovement:
    meta: dict[str, MetaValue] = dict(document.get("meta") or {})
    return StoredMovement(
        movement=Movement(
            id=document["_id"],
            purpose=MovementPurpose(document["purpose"]),
            postings=tuple(
                Posting(Account.parse(p["account"]), int(p["amount"])) for p in document["postings"]
            ),
            meta=meta,
        ),
        state=MovementState(document["state"]),
        recorded=bool(document["recorded"]),
        created_at=document["created_at"],
    )


def _line_doc_id(account: Account, seq: int) -> str:
    return f"{account.id}#{seq:012d}"


def _rejection_id(line_id: str) -> str:
    return f"rejected:{line_id}"


def _line_from(document: Mapping[str, Any]) -> JournalLine:
    return JournalLine(
        line_id=document["line_id"],
        movement_id=document["movement_id"],
        purpose=MovementPurpose(document["purpose"]),
        account=Account.parse(document["account"]),
        seq=int(document["seq"]),
        amount=int(document["amount"]),
        balance_after=int(document["balance_after"]),
        at=document["at"],
        order_id=document.get("order_id"),
    )
