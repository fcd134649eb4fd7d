"""Password hashing with argon2id, off the event loop (a hash takes tens of ms)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError


@dataclass(frozen=True)
class Argon2Parameters:
    """Defaults are one of OWASP's equivalent argon2id recommendations (12 MiB,
    3 passes, 1 lane), as for payment passwords: a hash in flight holds 12 MiB,
    not 64. Hashes made with other parameters are redone at the next login."""

    time_cost: int = 3
    memory_cost_kib: int = 12 * 1024
    parallelism: int = 1


class PasswordHasher:
    def __init__(self, parameters: Argon2Parameters = Argon2Parameters()) -> None:
        self._argon2 = Argon2Hasher(
            time_cost=parameters.time_cost,
            memory_cost=parameters.memory_cost_kib,
            parallelism=parameters.parallelism,
            type=Type.ID,
        )
        # Checked when the phone has no account, so that "no such phone" takes
        # as long as "wrong password" and does not reveal which phones exist.
        self._decoy = self._argon2.hash("kami-decoy-password-0")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._argon2.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            await asyncio.to_thread(self._argon2.verify, password_hash or self._decoy, password)
        except (VerificationError, InvalidHashError):
            return False
        return password_hash is not None

    def needs_rehash(self, password_hash: str) -> bool:
        return self._argon2.check_needs_rehash(password_hash)
