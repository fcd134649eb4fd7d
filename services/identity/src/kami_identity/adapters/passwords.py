"""Login passwords: argon2id on the bounded pool every Kami password shares
(`kami_web.passwords`), with a decoy check for phones that have no account."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from kami_web.passwords import Argon2Parameters, CheckPoolLimits, PasswordCheckMetrics
from kami_web.passwords import PasswordHasher as BoundedHasher


class PasswordHasher:
    def __init__(
        self,
        parameters: Argon2Parameters | None = None,
        limits: CheckPoolLimits | None = None,
        metrics: PasswordCheckMetrics | None = None,
    ) -> None:
        self._pool = BoundedHasher(
            parameters or Argon2Parameters(), limits or CheckPoolLimits(), metrics
        )
        # Checked when the phone has no account, so that "no such phone" takes
        # as long as "wrong password" and does not reveal which phones exist.
        self._decoy = self._pool.hash_at_start("kami-decoy-password-0")

    def admitted(self) -> AbstractAsyncContextManager[None]:
        """A place among the requests about to hash or check, or `PasswordChecksBusy`."""
        return self._pool.admitted()

    async def hash(self, password: str) -> str:
        return await self._pool.hash(password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        matches = await self._pool.verify(password_hash or self._decoy, password)
        return matches and password_hash is not None

    def needs_rehash(self, password_hash: str) -> bool:
        return self._pool.needs_rehash(password_hash)
