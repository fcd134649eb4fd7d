"""Refresh-token families: one per login, rotated on every refresh.

A family remembers only its current generation. Presenting the current
generation's token rotates it (generation + 1); presenting an older one means
a token was copied and used twice, so the whole family is revoked and both
the thief and the user must log in again (reuse detection, RFC 9700 §4.14).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from kami_identity.domain.rejections import Rejected, Unauthenticated


def invalid_refresh_token() -> Unauthenticated:
    return Unauthenticated("invalid_refresh_token", "The refresh token is not valid; log in again.")


class RefreshFamily(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    family_id: str
    user_id: str
    generation: int = 1
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    discard_after: datetime

    @classmethod
    def start(cls, family_id: str, user_id: str, *, now: datetime, ttl: timedelta) -> RefreshFamily:
        return cls(
            family_id=family_id,
            user_id=user_id,
            created_at=now,
            expires_at=now + ttl,
            discard_after=now + ttl,
        )

    def rotate(
        self, presented_generation: int, *, now: datetime, ttl: timedelta
    ) -> tuple[RefreshFamily, Rejected | None]:
        if self.revoked_at is not None:
            return self, Unauthenticated("session_revoked", "This session has ended; log in again.")
        if presented_generation < self.generation:
            return self.revoke("reuse_detected", now), Unauthenticated(
                "refresh_token_reused",
                "This refresh token was already used; the session is revoked, log in again.",
            )
        if presented_generation > self.generation:
            return self, invalid_refresh_token()
        if now >= self.expires_at:
            return self, Unauthenticated(
                "refresh_token_expired", "The session has expired; log in again."
            )
        rotated = self.model_copy(
            update={
                "generation": self.generation + 1,
                "expires_at": now + ttl,
                "discard_after": now + ttl,
            }
        )
        return rotated, None

    def revoke(self, reason: str, now: datetime) -> RefreshFamily:
        if self.revoked_at is not None:
            return self
        return self.model_copy(update={"revoked_at": now, "revoked_reason": reason})
