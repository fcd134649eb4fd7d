"""What the handlers need from storage, as protocols: `adapters.mongo` has the
real ones, the unit tests have in-memory fakes.

Most state is a small document changed by compare-and-set: `get` returns the
value with its revision, `put` writes only if the revision is still the one
read (or, with `expected_rev=None`, only if there is none yet). A handler
that loses the race reads again and decides again. The Mongo store does this
with unique inserts, which are atomic on MongoDB and on FerretDB alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from kami_identity.domain.advanced import AdvancedVerification
from kami_identity.domain.seller_application import SellerApplication
from kami_identity.domain.sessions import RefreshFamily

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class Versioned(Generic[T]):
    value: T
    rev: int


class VersionedStore(Protocol[T]):
    async def get(self, key: str) -> Versioned[T] | None: ...

    async def put(self, key: str, value: T, expected_rev: int | None) -> bool:
        """Write if the stored revision is `expected_rev` (None: if absent)."""
        ...


class RefreshFamilies(VersionedStore[RefreshFamily], Protocol):
    async def revoke_all_for(self, user_id: str, reason: str, now: datetime) -> int:
        """Revoke every live family of the user; returns how many."""
        ...


class AdvancedRequests(VersionedStore[AdvancedVerification], Protocol):
    async def due(self, now: datetime, limit: int) -> list[AdvancedVerification]:
        """Pending requests whose next attempt is due, oldest first."""
        ...

    async def pending(self, limit: int) -> list[AdvancedVerification]:
        """Every pending request (the operators' verification queue), oldest first."""
        ...


class SellerApplications(VersionedStore[SellerApplication], Protocol):
    async def pending(self, limit: int) -> list[SellerApplication]:
        """Applications waiting for an operator, oldest first."""
        ...


class Suspensions(Protocol):
    """Which users were ever suspended: an index for the operators' list, written
    before the suspension's event; the user's stream says whether it holds."""

    async def remember(self, user_id: str, at: datetime) -> None: ...

    async def user_ids(self, limit: int) -> list[str]:
        """Most recently suspended first."""
        ...


class Account(BaseModel):
    """A phone's account: the login identifier and the password hash. Written
    once, before the user's registration events (see `handlers.register`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    phone: str
    user_id: str
    password_hash: str
    created_at: datetime


class Accounts(Protocol):
    async def add(self, account: Account) -> bool:
        """False if the phone already has an account (one atomic insert)."""
        ...

    async def by_phone(self, phone: str) -> Account | None: ...

    async def set_password_hash(self, phone: str, password_hash: str) -> None: ...


class IdClaim(BaseModel):
    """An ID number taken by one user, keyed by its HMAC fingerprint.

    `sealed` is the encrypted `{"legal_name", "id_number"}`; the masked forms
    are what profiles show. `confirmed` is set once the user's `IdentityVerified`
    is committed; an unconfirmed claim whose user never got verified is
    abandoned after a grace period and may be taken over.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    fingerprint: str
    user_id: str
    sealed: bytes
    id_number_masked: str
    legal_name_masked: str
    claimed_at: datetime
    confirmed: bool = False


class IdClaims(Protocol):
    async def claim(self, claim: IdClaim) -> IdClaim:
        """Insert the claim; if the fingerprint is taken, return the holder's claim
        (or the caller's own earlier unconfirmed claim, refreshed with these values)."""
        ...

    async def take_over(self, abandoned: IdClaim, claim: IdClaim) -> bool:
        """Replace `abandoned` if it is still unconfirmed and still its user's."""
        ...

    async def confirm(self, fingerprint: str, user_id: str) -> None: ...

    async def release(self, fingerprint: str, user_id: str) -> None:
        """Drop the user's unconfirmed claim (its verification was refused)."""
        ...

    async def confirmed_for(self, user_id: str) -> IdClaim | None: ...


class RateCounter(Protocol):
    async def hit(self, key: str, window: int, expires_at: datetime) -> tuple[int, int]:
        """Count one hit in `window` of `key`; returns the counts of that window
        (this hit included) and of the window before it."""
        ...
