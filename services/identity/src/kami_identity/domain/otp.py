"""One-time codes that prove control of a phone number.

A challenge is stored with only a keyed hash of its code. It expires after
`ttl`, is used at most once, and locks the phone for `lock_duration` after
`max_attempts` wrong codes (the locking attempt included). A new code can be
sent only after `resend_cooldown` and never while locked.

`attempt` returns the challenge's next state together with the outcome, so
that a wrong code's counted attempt is saved before the rejection is raised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from kami_identity.domain.rejections import ChallengeFailed, Rejected, TooManyRequests

OTP_DIGITS = 6


@dataclass(frozen=True)
class OtpPolicy:
    ttl: timedelta = timedelta(minutes=5)
    max_attempts: int = 5
    resend_cooldown: timedelta = timedelta(seconds=60)
    lock_duration: timedelta = timedelta(minutes=15)


def _seconds_until(moment: datetime, now: datetime) -> int:
    return math.ceil((moment - now).total_seconds())


class OtpChallenge(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code_hash: str
    salt: str
    sent_at: datetime
    expires_at: datetime
    attempts: int = 0
    locked_until: datetime | None = None
    consumed: bool = False
    # When the store may delete it (Mongo TTL indexes are not available everywhere).
    discard_after: datetime

    @classmethod
    def issue(
        cls,
        previous: OtpChallenge | None,
        *,
        code_hash: str,
        salt: str,
        now: datetime,
        policy: OtpPolicy,
    ) -> OtpChallenge:
        if previous is not None:
            if previous.is_locked(now):
                assert previous.locked_until is not None
                raise TooManyRequests(
                    "otp_locked",
                    "Too many wrong codes for this phone; try again later.",
                    _seconds_until(previous.locked_until, now),
                )
            ready_at = previous.sent_at + policy.resend_cooldown
            if now < ready_at:
                raise TooManyRequests(
                    "otp_resend_too_soon",
                    "A code was sent moments ago; wait before asking for another.",
                    _seconds_until(ready_at, now),
                )
        return cls(
            code_hash=code_hash,
            salt=salt,
            sent_at=now,
            expires_at=now + policy.ttl,
            discard_after=now + max(policy.ttl, policy.resend_cooldown),
        )

    def is_locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def attempt(
        self, *, matches: bool, now: datetime, policy: OtpPolicy
    ) -> tuple[OtpChallenge, Rejected | None]:
        """The next state and, unless the code was right, why it was refused."""
        if self.is_locked(now):
            assert self.locked_until is not None
            return self, TooManyRequests(
                "otp_locked",
                "Too many wrong codes for this phone; try again later.",
                _seconds_until(self.locked_until, now),
            )
        if self.consumed:
            return self, no_pending_code()
        if now >= self.expires_at:
            return self, ChallengeFailed("otp_expired", "The code has expired; request a new one.")
        if matches:
            return self.model_copy(update={"consumed": True}), None
        attempts = self.attempts + 1
        if attempts >= policy.max_attempts:
            locked_until = now + policy.lock_duration
            locked = self.model_copy(
                update={
                    "attempts": attempts,
                    "locked_until": locked_until,
                    "discard_after": max(self.discard_after, locked_until),
                }
            )
            return locked, TooManyRequests(
                "otp_locked",
                "Too many wrong codes; this phone is locked for a while.",
                _seconds_until(locked_until, now),
            )
        left = policy.max_attempts - attempts
        return self.model_copy(update={"attempts": attempts}), ChallengeFailed(
            "otp_incorrect", f"The code is incorrect; {left} attempt(s) left."
        )


def no_pending_code() -> ChallengeFailed:
    return ChallengeFailed(
        "otp_not_requested", "No code is pending for this phone; request one first."
    )
