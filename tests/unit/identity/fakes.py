"""In-memory stand-ins for identity's Mongo stores, with the same
compare-and-set and uniqueness behaviour, and a ready-wired `IdentityDeps`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Generic, TypeVar

from pydantic import BaseModel

from kami_events.clock import ManualClock
from kami_events.repository import AggregateRepository
from kami_events.testing import InMemoryEventStore
from kami_identity.adapters.crypto import FieldCipher, Keyring
from kami_identity.adapters.passwords import PasswordHasher
from kami_identity.adapters.ports import Account, IdClaim, Versioned
from kami_identity.adapters.verification_provider import (
    AdvancedCheck,
    ProviderAnswer,
    SimulatedVerificationProvider,
)
from kami_identity.domain.advanced import AdvancedStatus, AdvancedVerification
from kami_identity.domain.otp import OtpChallenge
from kami_identity.domain.seller_application import ApplicationStatus, SellerApplication
from kami_identity.domain.sessions import RefreshFamily
from kami_identity.domain.user import User
from kami_identity.handlers import IdentityDeps, IdentityPolicy
from kami_web.passwords import Argon2Parameters
from kami_web.testing import AuthKeys

T = TypeVar("T", bound=BaseModel)

KEYS = AuthKeys.generate()
HMAC_KEY = b"h" * 32
DATA_KEY = b"d" * 32
# Cheap argon2id for fast tests; production uses OWASP's (Argon2Parameters()).
FAST_ARGON2 = Argon2Parameters(time_cost=1, memory_cost_kib=8, parallelism=1)


class InMemoryVersionedStore(Generic[T]):
    def __init__(self) -> None:
        self.items: dict[str, Versioned[T]] = {}

    async def get(self, key: str) -> Versioned[T] | None:
        return self.items.get(key)

    async def put(self, key: str, value: T, expected_rev: int | None) -> bool:
        current = self.items.get(key)
        if (current.rev if current else None) != expected_rev:
            return False
        self.items[key] = Versioned(value, (expected_rev or 0) + 1)
        return True


class InMemoryRefreshFamilies(InMemoryVersionedStore[RefreshFamily]):
    async def revoke_all_for(self, user_id: str, reason: str, now: datetime) -> int:
        revoked = 0
        for key, stored in self.items.items():
            if stored.value.user_id == user_id and stored.value.revoked_at is None:
                self.items[key] = Versioned(stored.value.revoke(reason, now), stored.rev + 1)
                revoked += 1
        return revoked


class InMemoryAdvancedRequests(InMemoryVersionedStore[AdvancedVerification]):
    async def due(self, now: datetime, limit: int) -> list[AdvancedVerification]:
        pending = [
            s.value
            for s in self.items.values()
            if s.value.status is AdvancedStatus.PENDING and s.value.next_attempt_at <= now
        ]
        return sorted(pending, key=lambda r: r.next_attempt_at)[:limit]

    async def pending(self, limit: int) -> list[AdvancedVerification]:
        pending = [s.value for s in self.items.values() if s.value.status is AdvancedStatus.PENDING]
        return sorted(pending, key=lambda r: r.submitted_at)[:limit]


class InMemorySellerApplications(InMemoryVersionedStore[SellerApplication]):
    async def pending(self, limit: int) -> list[SellerApplication]:
        pending = [
            s.value for s in self.items.values() if s.value.status is ApplicationStatus.PENDING
        ]
        return sorted(pending, key=lambda a: a.submitted_at)[:limit]


class InMemorySuspensions:
    def __init__(self) -> None:
        self.at: dict[str, datetime] = {}

    async def remember(self, user_id: str, at: datetime) -> None:
        self.at[user_id] = at

    async def user_ids(self, limit: int) -> list[str]:
        return sorted(self.at, key=lambda user_id: self.at[user_id], reverse=True)[:limit]


class InMemoryAccounts:
    def __init__(self) -> None:
        self.by_number: dict[str, Account] = {}

    async def add(self, account: Account) -> bool:
        if account.phone in self.by_number:
            return False
        self.by_number[account.phone] = account
        return True

    async def by_phone(self, phone: str) -> Account | None:
        return self.by_number.get(phone)

    async def set_password_hash(self, phone: str, password_hash: str) -> None:
        account = self.by_number[phone]
        self.by_number[phone] = account.model_copy(update={"password_hash": password_hash})


class InMemoryIdClaims:
    def __init__(self) -> None:
        self.claims: dict[str, IdClaim] = {}

    async def claim(self, claim: IdClaim) -> IdClaim:
        held = self.claims.get(claim.fingerprint)
        if held is None or (held.user_id == claim.user_id and not held.confirmed):
            self.claims[claim.fingerprint] = claim
            return claim
        return held

    async def take_over(self, abandoned: IdClaim, claim: IdClaim) -> bool:
        held = self.claims.get(abandoned.fingerprint)
        if held is None or held != abandoned or held.confirmed:
            return False
        self.claims[claim.fingerprint] = claim
        return True

    async def confirm(self, fingerprint: str, user_id: str) -> None:
        held = self.claims.get(fingerprint)
        if held is not None and held.user_id == user_id:
            self.claims[fingerprint] = held.model_copy(update={"confirmed": True})

    async def release(self, fingerprint: str, user_id: str) -> None:
        held = self.claims.get(fingerprint)
        if held is not None and held.user_id == user_id and not held.confirmed:
            del self.claims[fingerprint]

    async def confirmed_for(self, user_id: str) -> IdClaim | None:
        return next((c for c in self.claims.values() if c.user_id == user_id and c.confirmed), None)


class InMemoryRateCounter:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    async def hit(self, key: str, window: int, expires_at: datetime) -> tuple[int, int]:
        current = self.counts.get(f"{key}#{window}", 0) + 1
        self.counts[f"{key}#{window}"] = current
        return current, self.counts.get(f"{key}#{window - 1}", 0)


@dataclass
class RecordingSms:
    sent: list[tuple[str, str]] = field(default_factory=list)

    async def send(self, phone: str, text: str) -> None:
        self.sent.append((phone, text))

    def last_code(self, phone: str) -> str:
        text = next(t for p, t in reversed(self.sent) if p == phone)
        found = re.search(r"(?<!\d)\d{6}(?!\d)", text)
        assert found, text
        return found.group()


class ScriptedProvider:
    """The simulated provider, recording what it was asked."""

    def __init__(self, timeouts_before_answer: int = 2) -> None:
        self.simulated = SimulatedVerificationProvider(
            timeouts_before_answer=timeouts_before_answer
        )
        self.checks: list[AdvancedCheck] = []

    async def verify(self, check: AdvancedCheck) -> ProviderAnswer:
        self.checks.append(check)
        return await self.simulated.verify(check)


@dataclass
class Harness:
    """Everything a unit test drives and inspects."""

    deps: IdentityDeps
    clock: ManualClock
    store: InMemoryEventStore
    sms: RecordingSms
    provider: ScriptedProvider
    accounts: InMemoryAccounts
    otps: InMemoryVersionedStore[OtpChallenge]
    sessions: InMemoryRefreshFamilies
    id_claims: InMemoryIdClaims
    advanced: InMemoryAdvancedRequests

    def events_of(self, user_id: str) -> list[BaseModel]:
        return [e.payload for e in self.store.committed if e.aggregate_id == user_id]

    def with_policy(self, policy: IdentityPolicy) -> Harness:
        return replace(self, deps=replace(self.deps, policy=policy))


def harness(policy: IdentityPolicy | None = None, *, start: datetime | None = None) -> Harness:
    # Access tokens are JWTs that PyJWT checks against the wall clock: start near it.
    clock = ManualClock(start or datetime.now(UTC).replace(microsecond=0))
    store = InMemoryEventStore(producer="identity", clock=clock)
    sms = RecordingSms()
    provider = ScriptedProvider()
    accounts = InMemoryAccounts()
    otps: InMemoryVersionedStore[OtpChallenge] = InMemoryVersionedStore()
    sessions = InMemoryRefreshFamilies()
    id_claims = InMemoryIdClaims()
    advanced = InMemoryAdvancedRequests()
    deps = IdentityDeps(
        users=AggregateRepository(store, User),
        accounts=accounts,
        otps=otps,
        sessions=sessions,
        id_claims=id_claims,
        advanced=advanced,
        rate_counter=InMemoryRateCounter(),
        sms=sms,
        provider=provider,
        passwords=PasswordHasher(FAST_ARGON2),
        keys=Keyring(HMAC_KEY),
        cipher=FieldCipher(DATA_KEY),
        signing_key_pem=KEYS.private_key_pem,
        policy=policy or IdentityPolicy(),
        clock=clock,
        seller_applications=InMemorySellerApplications(),
        suspensions=InMemorySuspensions(),
    )
    return Harness(deps, clock, store, sms, provider, accounts, otps, sessions, id_claims, advanced)
