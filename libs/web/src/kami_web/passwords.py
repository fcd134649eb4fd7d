"""Password hashing with argon2id, in a bounded pool off the event loop.

Identity's login passwords and payment's payment passwords both use it. Each
argon2id check allocates its whole memory cost for its duration, so the
number of checks running at once is what bounds a service's memory. They run
in a dedicated thread pool of `concurrency` threads (whoever calls). A
request is admitted only while fewer than `concurrency + max_queued` hold a
place and the checks already on the pool would not keep it waiting longer
than `max_wait_seconds` (estimated from recent check times); otherwise it is
refused before it starts (`PasswordChecksBusy`, a 429 with Retry-After):
nothing has changed, and the buyer may send the same request again.

Admission is a separate step (`admitted()`) from running a check, so a
handler can be refused *before* it claims a password attempt slot: a refusal
never costs the buyer an attempt.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal, TypeVar

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError
from prometheus_client import Counter, Gauge, Histogram

T = TypeVar("T")


@dataclass(frozen=True)
class PasswordCheckMetrics:
    """The pool's gauges, refusals and check times, named for the service
    (`kami_<service>_password_check...`) and what its passwords are."""

    in_flight: Gauge
    queued: Gauge
    rejected: Counter
    seconds: Histogram

    @classmethod
    def named(cls, service: str, passwords: str) -> PasswordCheckMetrics:
        prefix = f"kami_{service}_password_check"
        return cls(
            in_flight=Gauge(
                f"{prefix}s_in_flight",
                f"{passwords} checks (argon2id) admitted to the pool's threads now",
            ),
            queued=Gauge(
                f"{prefix}s_queued",
                f"{passwords} checks admitted and waiting for a thread of the pool",
            ),
            rejected=Counter(
                f"{prefix}s_rejected_total",
                f"{passwords} checks refused with 429 before they started, by reason "
                "(queue_full, wait_too_long)",
                ["reason"],
            ),
            seconds=Histogram(
                f"{prefix}_seconds",
                "Time one argon2id hash or verification took on a thread of the pool",
                buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0),
            ),
        )


@dataclass(frozen=True)
class Argon2Parameters:
    """Defaults are one of OWASP's equivalent argon2id recommendations (12 MiB,
    3 passes, 1 lane): about 21 ms of one core per check here, and less memory
    than its 19 MiB / 2 passes (25 ms) for the same strength (docs/performance.md).
    Hashes made with other parameters are redone at their next success."""

    time_cost: int = 3
    memory_cost_kib: int = 12 * 1024
    parallelism: int = 1


@dataclass(frozen=True)
class CheckPoolLimits:
    """How many checks run at once (one per core is the most that helps), how
    many may wait, and the longest estimated wait still worth queueing for."""

    concurrency: int = 2
    max_queued: int = 64
    max_wait_seconds: float = 2.0


class PasswordChecksBusy(Exception):
    """Too many password checks at once: retry after `retry_after` seconds."""

    def __init__(self, reason: Literal["queue_full", "wait_too_long"], retry_after: int) -> None:
        super().__init__(f"password checks busy ({reason}); retry after {retry_after} s")
        self.reason = reason
        self.retry_after = retry_after


class PasswordHasher:
    def __init__(
        self,
        parameters: Argon2Parameters = Argon2Parameters(),
        limits: CheckPoolLimits = CheckPoolLimits(),
        metrics: PasswordCheckMetrics | None = None,
    ) -> None:
        self._argon2 = Argon2Hasher(
            time_cost=parameters.time_cost,
            memory_cost=parameters.memory_cost_kib,
            parallelism=parameters.parallelism,
            type=Type.ID,
        )
        self._limits = limits
        self._metrics = metrics
        self._executor = ThreadPoolExecutor(
            max_workers=limits.concurrency, thread_name_prefix="argon2"
        )
        self._admitted = 0  # requests holding a place (checking, or about to)
        self._on_pool = 0  # computations submitted to the threads, running or queued
        # Seconds per check, a moving average; starts from a guess at the defaults.
        self._check_seconds = 0.03

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """A place among the requests about to check a password, or
        `PasswordChecksBusy`: at most `concurrency + max_queued` hold one, and
        none is given when the checks already on the pool would keep this one
        waiting longer than `max_wait_seconds`."""
        # Where this request's check would queue on the pool now (0: it runs at
        # once), and how long the checks before it take on the pool's threads.
        position = max(0, self._on_pool - self._limits.concurrency + 1)
        wait = position * self._check_seconds / self._limits.concurrency
        if self._admitted >= self._limits.concurrency + self._limits.max_queued:
            self._reject("queue_full", max(wait, self._check_seconds))
        if wait > self._limits.max_wait_seconds:
            self._reject("wait_too_long", wait)
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    def _reject(self, reason: Literal["queue_full", "wait_too_long"], wait: float) -> None:
        if self._metrics is not None:
            self._metrics.rejected.labels(reason).inc()
        raise PasswordChecksBusy(reason, retry_after=max(1, math.ceil(wait)))

    def _set_gauges(self) -> None:
        if self._metrics is not None:
            running = min(self._on_pool, self._limits.concurrency)
            self._metrics.in_flight.set(running)
            self._metrics.queued.set(self._on_pool - running)

    async def _run(self, work: Callable[[], T]) -> T:
        """Run one argon2 computation on the pool's threads: their number is
        what bounds the memory, whoever calls."""

        def timed() -> tuple[T, float]:
            started = time.perf_counter()
            result = work()
            return result, time.perf_counter() - started

        self._on_pool += 1
        self._set_gauges()
        try:
            result, elapsed = await asyncio.get_running_loop().run_in_executor(
                self._executor, timed
            )
        finally:
            self._on_pool -= 1
            self._set_gauges()
        if self._metrics is not None:
            self._metrics.seconds.observe(elapsed)
        self._check_seconds = 0.8 * self._check_seconds + 0.2 * elapsed
        return result

    async def hash(self, password: str) -> str:
        return await self._run(lambda: self._argon2.hash(password))

    def hash_at_start(self, password: str) -> str:
        """A hash made on the caller's thread, for set-up before any request
        (e.g. a decoy to check against): it blocks, and bypasses the pool."""
        return self._argon2.hash(password)

    async def verify(self, password_hash: str, password: str) -> bool:
        def check() -> bool:
            try:
                return self._argon2.verify(password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

        return await self._run(check)

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether a hash was made with other parameters than today's."""
        try:
            return self._argon2.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True
