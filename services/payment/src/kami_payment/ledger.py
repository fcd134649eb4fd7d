"""Applying ledger movements safely without multi-document transactions.

The problem: a movement changes several accounts, but MongoDB (and FerretDB
1.24 even more so) can only change one document atomically. A crash between
two writes must not lose or double money, concurrent debits must never
overdraw a wallet or a deposit, and submitting a movement twice must move the
money once.

The protocol (storage in `kami_payment.adapters.journal`):

1. **Record the movement** (`ledger_movements`, `_id` = its id, state
   `pending`). Its id says what it realises (`refund:<refund_id>:1`), so a
   retried request finds the movement already there and continues *that*
   one, with the postings it was first given.
2. **Apply each posting as one insert** of a journal line
   (`ledger_lines`): `_id` = `<movement>|<account>`, the account's next
   `seq`, and `balance_after` = the previous line's balance plus the amount.
   Two unique indexes make this one write both safe and idempotent:
   - `(account, seq)`: two writers that read the same last line both try
     line n+1; one wins, the other re-reads and tries n+2 with the new
     balance. So a guarded debit is checked against the balance it lands on,
     and a wallet can never be overdrawn, however many debits race;
   - `_id`: a posting lands at most once, for ever: a second attempt (a
     retry, the sweeper, a stale worker waking up) hits the existing line.
3. **Guarded debit first.** A movement has at most one debit on an account
   that may not go below zero, and it is applied first. If the balance cannot
   cover it, a *rejection* is inserted under the same line `_id`: whichever of
   "applied" and "refused" is written first wins, so the decision is made once
   even when workers race. A refused movement has moved nothing (its guarded
   posting came first), so nothing is ever undone.
4. **Record the follow-up** (the payment or deposit event the movement
   causes), for what its lines decided.
5. **Finish**: state `applied` (every posting has its line) or `rejected`,
   and `recorded`, in one write. A movement finished without its follow-up
   (an earlier attempt of a flow, `Ledger.complete`) is marked `recorded`
   once it is recorded.

Crash anywhere, and the movement stays `pending` or un-`recorded`; the
sweeper (`Ledger.unfinished`, run by the service's poller) and any retry of
the same request pick it up and run steps 2–5 again, which only add what is
missing. While a movement is half-applied the trial balance is off by its
missing postings; `count_in_flight` says how many such movements exist, and
the sweeper brings it back to zero.

Flows whose guarded debit may be refused and then planned again (a wallet
short of funds until a top-up, a deposit drawn by a concurrent refund) number
their attempts: `execute_attempts` walks `<base>:1`, `<base>:2`... finishing
any attempt it finds, stopping at the first applied one, so at most one
attempt of a flow ever moves money.

Balances are the `balance_after` of an account's last line, and its lines are
its statement. The sum of every applied posting per account type is the
trial balance; with no movement in flight it is zero.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

from kami_events.clock import Clock, utc_now
from kami_events.locks import KeyedLocks
from kami_payment.adapters.journal import (
    Journal,
    JournalLine,
    LineInsert,
    LineKind,
    MovementState,
    StoredMovement,
    line_id,
)
from kami_payment.domain.ledger import Account, AccountType, Movement, Posting
from kami_payment.metrics import LEDGER_IN_FLIGHT, LEDGER_TOTALS, MOVEMENTS


class LedgerBusy(Exception):
    """An account was contended beyond the retry budget; the movement stays
    pending and the sweeper finishes it."""


@dataclass(frozen=True)
class TrialBalance:
    totals: dict[AccountType, int]
    movements_in_flight: int

    @property
    def total(self) -> int:
        return sum(self.totals.values())

    @property
    def balanced(self) -> bool:
        return self.total == 0


PlanAttempt = Callable[[str], Awaitable[Movement | None]]


class Ledger:
    # Attempts of one flow (`execute_attempts`); each refused one means a
    # guard refused it, so a long chain means a bug, not a busy account.
    MAX_FLOW_ATTEMPTS = 50

    def __init__(
        self,
        journal: Journal,
        *,
        clock: Clock = utc_now,
        max_line_attempts: int = 200,
        crash_after_lines: int | None = None,
    ) -> None:
        self._journal = journal
        self._clock = clock
        self._max_line_attempts = max_line_attempts
        # Fault injection for tests: stop (as a crash would) after this many
        # lines of a movement were written.
        self._crash_after_lines = crash_after_lines
        # Postings of this process to one account take turns, so each guesses
        # the seq its predecessor just wrote instead of colliding with it (a
        # collision costs a failed insert and about four reads; the platform's
        # fee account takes a line in every settlement). Other processes'
        # postings are still decided by the unique `_id`.
        self._accounts = KeyedLocks()

    async def execute(self, movement: Movement, *, finish: bool = True) -> StoredMovement:
        """Apply `movement` once: a movement already stored under its id is
        finished instead (with its own postings). `finish=False` leaves its
        state pending, decided (`StoredMovement.decided`), for the write that
        records its follow-up (`finish(..., recorded=True)`)."""
        stored = await self._journal.insert_movement(movement, self._clock())
        return await self.complete(stored) if finish else await self.decide(stored)

    async def complete(self, stored: StoredMovement) -> StoredMovement:
        """Steps 2–3 and 5 of the protocol for a stored movement (its
        follow-up not recorded); safe to repeat."""
        if stored.state is not MovementState.PENDING:
            return stored
        return await self.finish(await self.decide(stored))

    async def decide(self, stored: StoredMovement) -> StoredMovement:
        """Steps 2–3: every posting's line, or the guarded one refused. The
        state stays as it is stored; `decided` says what the lines decided."""
        if stored.state is not MovementState.PENDING or stored.decided is not None:
            return stored
        movement = stored.movement
        outcome = MovementState.APPLIED
        for written, posting in enumerate(movement.in_application_order()):
            if self._crash_after_lines is not None and written >= self._crash_after_lines:
                raise SimulatedCrash(movement.id)
            async with self._accounts.hold(posting.account.id):
                applied = await self._apply(movement, posting, fresh=stored.fresh)
            if not applied:
                outcome = MovementState.REJECTED
                break
        return replace(stored, decided=outcome)

    async def finish(self, stored: StoredMovement, *, recorded: bool = False) -> StoredMovement:
        """Step 5: store the state the lines decided, and `recorded` (its
        follow-up done) in the same write."""
        stored = await self.decide(stored)
        if stored.decided is not None:
            if await self._journal.finish_movement(stored.id, stored.decided, recorded=recorded):
                MOVEMENTS.labels(stored.movement.purpose.value, stored.decided.value).inc()
                # This call finished it: nothing else of it changed meanwhile.
                return replace(
                    stored, state=stored.decided, decided=None, recorded=recorded, fresh=False
                )
            # Another worker finished it first, as the same lines decided.
            if recorded:
                await self._journal.mark_recorded(stored.id)
            return await self._reload(stored.id)
        if recorded and not stored.recorded:
            await self._journal.mark_recorded(stored.id)
            return replace(stored, recorded=True)
        return stored

    async def execute_attempts(
        self,
        base_id: str,
        plan: PlanAttempt,
        *,
        replan_on_rejection: bool,
        finish: bool = True,
        plan_first: bool = False,
    ) -> StoredMovement | None:
        """Run the first applicable attempt of a flow (`<base_id>:<n>`).

        Earlier attempts are finished first; an applied one ends the walk. A new
        attempt is planned by `plan(movement_id)` (None: nothing to move). When
        a new attempt is refused, plan again if `replan_on_rejection`, else
        return the refused attempt. `finish=False`: the attempt returned is
        left decided, as `execute(..., finish=False)` leaves it; those walked
        past are finished. `plan_first`: the first attempt is planned before
        it is looked for, and its insert finds it if it was stored before
        (one read fewer for a new flow), for plans with no effect that would
        matter when it was, and that plan nothing once it was applied.
        """
        for n in range(1, self.MAX_FLOW_ATTEMPTS + 1):
            movement_id = f"{base_id}:{n}"
            existing: StoredMovement | None = None
            new: StoredMovement | None = None
            if plan_first and n == 1:
                movement = await plan(movement_id)
                if movement is None:
                    existing = await self._journal.get_movement(movement_id)
                    if existing is None:
                        return None
                else:
                    stored = await self._journal.insert_movement(movement, self._clock())
                    new, existing = (stored, None) if stored.fresh else (None, stored)
            else:
                existing = await self._journal.get_movement(movement_id)
                if existing is None:
                    movement = await plan(movement_id)
                    if movement is None:
                        return None
                    new = await self._journal.insert_movement(movement, self._clock())
            if existing is not None:
                decided = await self.decide(existing)
                if decided.applied:
                    return await self.complete(decided) if finish else decided
                await self.complete(decided)
                continue
            assert new is not None
            stored = await self.complete(new) if finish else await self.decide(new)
            if stored.applied or not replan_on_rejection:
                return stored
            await self.complete(stored)
        raise LedgerBusy(f"{base_id}: {self.MAX_FLOW_ATTEMPTS} attempts refused")

    async def get(self, movement_id: str) -> StoredMovement | None:
        return await self._journal.get_movement(movement_id)

    async def unfinished(
        self, *, older_than_seconds: float | None = None, payment_id: str | None = None
    ) -> list[StoredMovement]:
        """Movements not yet recorded: the sweeper's work list (oldest first)."""
        created_before = None
        if older_than_seconds is not None:
            created_before = self._clock() - timedelta(seconds=older_than_seconds)
        return await self._journal.unrecorded(created_before=created_before, payment_id=payment_id)

    async def balance(self, account: Account) -> int:
        """The account's natural balance (a wallet's money as a positive number)."""
        last = await self._journal.last_line(account)
        return account.natural(last.balance_after) if last else 0

    async def statement(
        self, accounts: Sequence[Account], *, limit: int = 50, offset: int = 0
    ) -> list[JournalLine]:
        return await self._journal.lines(accounts, limit=limit, offset=offset)

    async def lines_after(self, account: Account, seq: int, limit: int = 500) -> list[JournalLine]:
        return await self._journal.lines_after(account, seq, limit)

    async def trial_balance(self) -> TrialBalance:
        totals = await self._journal.totals_by_type()
        trial = TrialBalance(
            totals={t: totals.get(t, 0) for t in AccountType},
            movements_in_flight=await self._journal.count_in_flight(),
        )
        for account_type, amount in trial.totals.items():
            LEDGER_TOTALS.labels(account_type.value).set(amount)
        LEDGER_IN_FLIGHT.set(trial.movements_in_flight)
        return trial

    async def _apply(self, movement: Movement, posting: Posting, *, fresh: bool) -> bool:
        """Write the posting's journal line; False if its guard refused it.

        The first try of a movement stored just now does not look for the
        posting's line, and every first try takes the account's last line
        this process knows without asking: the unique line id and
        `<account>#<seq>` refuse the insert if either guess was wrong, and the
        next try asks. Only a balance asked for can refuse a guarded debit."""
        lid = line_id(movement.id, posting.account)
        for attempt in range(self._max_line_attempts):
            if not (fresh and attempt == 0):
                kind = await self._journal.line_kind(lid)
                if kind is not None:
                    return kind is LineKind.POSTING
            guessed = attempt == 0
            last = await self._journal.last_line(posting.account, trust_remembered=guessed)
            before = last.balance_after if last else 0
            after = before + posting.amount
            if posting.guarded and posting.account.natural(after) < 0:
                if guessed:
                    continue  # a refusal is never decided on a remembered balance
                if await self._journal.insert_rejection(
                    lid, movement.id, posting.account, self._clock()
                ):
                    return False
                continue  # someone else decided this line first: read what they wrote
            outcome = await self._journal.insert_line(
                JournalLine(
                    line_id=lid,
                    movement_id=movement.id,
                    purpose=movement.purpose,
                    account=posting.account,
                    seq=(last.seq if last else 0) + 1,
                    amount=posting.amount,
                    balance_after=after,
                    at=self._clock(),
                    order_id=_text(movement.meta.get("order_id")),
                )
            )
            if outcome is LineInsert.INSERTED:
                return True
            if outcome is LineInsert.SEQ_TAKEN:
                # Lost the race for this seq: back off a little and re-read.
                await asyncio.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))  # noqa: S311
        raise LedgerBusy(f"{movement.id}: {posting.account} stayed contended")

    async def _reload(self, movement_id: str) -> StoredMovement:
        stored = await self._journal.get_movement(movement_id)
        if stored is None:  # pragma: no cover - it was stored before being applied
            raise LookupError(movement_id)
        return stored


class SimulatedCrash(Exception):
    """Raised by a `Ledger` built with `crash_after_lines`: tests of recovery."""


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
