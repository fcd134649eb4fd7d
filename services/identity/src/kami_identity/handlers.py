"""Identity's command handlers: load, decide, save.

Each handler is a plain function of `IdentityDeps` and the command's values.
Rules live in `domain`; handlers fetch what the rules need, persist what they
decide (events through the event store, whose commit is also the outbox),
and raise a `Rejected` subclass when a rule says no.

Registration runs in three steps, each proving something:

1. `request_code(phone)` sends a 6-digit code by SMS;
2. `verify_phone(phone, code)` checks it and returns a phone proof (a signed,
   short-lived token saying "the bearer controls this phone");
3. `register(proof, password)` creates the account. An account exists only
   for a phone proven by a code, so nobody can squat someone else's number.

Nothing here logs a phone number in full, a code, a password, a token or an
ID number.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from uuid import uuid4

from kami_events.catalogue.identity import KycTier, Role, SuspensionReason
from kami_events.clock import Clock
from kami_events.repository import AggregateRepository
from kami_events.store import CommitContext, ConcurrencyError
from kami_identity.adapters.crypto import FieldCipher, Keyring
from kami_identity.adapters.passwords import PasswordHasher
from kami_identity.adapters.ports import (
    Account,
    Accounts,
    AdvancedRequests,
    IdClaim,
    IdClaims,
    RateCounter,
    RefreshFamilies,
    SellerApplications,
    Suspensions,
    VersionedStore,
)
from kami_identity.adapters.sms import SmsSender
from kami_identity.adapters.verification_provider import (
    AdvancedCheck,
    AdvancedVerificationProvider,
    ProviderAnswer,
    Verdict,
)
from kami_identity.domain.advanced import AdvancedStatus, AdvancedVerification, RetryPolicy
from kami_identity.domain.credentials import check_password, normalise_legal_name
from kami_identity.domain.otp import OTP_DIGITS, OtpChallenge, OtpPolicy, no_pending_code
from kami_identity.domain.phone import Phone
from kami_identity.domain.rate_limits import RateLimit
from kami_identity.domain.rejections import (
    Conflict,
    Forbidden,
    NotFound,
    Rejected,
    TooManyRequests,
    Unauthenticated,
)
from kami_identity.domain.resident_id import ResidentId, mask_name
from kami_identity.domain.seller_application import ApplicationStatus, SellerApplication
from kami_identity.domain.sessions import RefreshFamily, invalid_refresh_token
from kami_identity.domain.tiers import TierTable, TierTerms, tier_rank
from kami_identity.domain.user import User
from kami_web.auth import issue_user_token
from kami_web.passwords import PasswordChecksBusy

log = logging.getLogger(__name__)

CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")

# A compare-and-set that keeps losing means heavy contention on one record.
_MAX_RACES = 10


_MINUTE = timedelta(minutes=1)
_HOUR = timedelta(hours=1)
_DEFAULT_LIMITS = {
    "otp_per_phone": RateLimit("otp-phone", 5, _HOUR),
    "otp_per_ip": RateLimit("otp-ip", 30, _HOUR),
    "login_per_phone": RateLimit("login-phone", 10, 15 * _MINUTE),
    "login_per_ip": RateLimit("login-ip", 100, 15 * _MINUTE),
    "register_per_ip": RateLimit("register-ip", 20, _HOUR),
}
_FIFTEEN_MINUTES = 15 * _MINUTE
_FIVE_MINUTES = 5 * _MINUTE
_TEN_MINUTES = 10 * _MINUTE
_THIRTY_DAYS = timedelta(days=30)
_TEN_SECONDS = timedelta(seconds=10)


@dataclass(frozen=True)
class IdentityPolicy:
    tiers: TierTable = field(default_factory=TierTable)
    otp: OtpPolicy = field(default_factory=OtpPolicy)
    phone_proof_ttl: timedelta = _FIFTEEN_MINUTES
    access_token_ttl: timedelta = _FIVE_MINUTES
    refresh_token_ttl: timedelta = _THIRTY_DAYS
    # Registration with one of these phones grants these roles besides buyer.
    staff_roles: Mapping[str, frozenset[Role]] = field(default_factory=dict)
    otp_per_phone: RateLimit = _DEFAULT_LIMITS["otp_per_phone"]
    otp_per_ip: RateLimit = _DEFAULT_LIMITS["otp_per_ip"]
    login_per_phone: RateLimit = _DEFAULT_LIMITS["login_per_phone"]
    login_per_ip: RateLimit = _DEFAULT_LIMITS["login_per_ip"]
    register_per_ip: RateLimit = _DEFAULT_LIMITS["register_per_ip"]
    advanced_retry: RetryPolicy = field(default_factory=RetryPolicy)
    provider_timeout: timedelta = _TEN_SECONDS
    id_claim_grace: timedelta = _TEN_MINUTES


@dataclass(frozen=True)
class IdentityDeps:
    users: AggregateRepository[User]
    accounts: Accounts
    otps: VersionedStore[OtpChallenge]
    sessions: RefreshFamilies
    id_claims: IdClaims
    advanced: AdvancedRequests
    rate_counter: RateCounter
    sms: SmsSender
    provider: AdvancedVerificationProvider
    passwords: PasswordHasher
    keys: Keyring
    cipher: FieldCipher
    signing_key_pem: str = field(repr=False)
    policy: IdentityPolicy
    clock: Clock
    seller_applications: SellerApplications
    suspensions: Suspensions


@dataclass(frozen=True)
class CodeSent:
    expires_in_seconds: int
    resend_after_seconds: int


@dataclass(frozen=True)
class PhoneProof:
    token: str = field(repr=False)
    expires_at: datetime


@dataclass(frozen=True)
class TokenPair:
    user_id: str
    access_token: str = field(repr=False)
    expires_in_seconds: int
    refresh_token: str = field(repr=False)
    refresh_expires_at: datetime


@dataclass(frozen=True)
class Profile:
    user_id: str
    phone_masked: str | None
    roles: frozenset[Role]
    tier: KycTier | None
    terms: TierTerms | None
    shop_name: str | None
    legal_name_masked: str | None
    id_number_masked: str | None
    advanced_verification: AdvancedVerification | None
    seller_category: str | None = None
    seller_application: SellerApplication | None = None


@dataclass(frozen=True)
class Applicant:
    """A pending application with what the stream says of its user now."""

    application: SellerApplication
    phone_masked: str | None
    tier: KycTier | None
    suspended: bool


@dataclass(frozen=True)
class PendingVerification:
    request: AdvancedVerification
    phone_masked: str | None
    tier: KycTier | None


@dataclass(frozen=True)
class SuspendedUser:
    user_id: str
    phone_masked: str | None
    roles: frozenset[Role]
    reason: SuspensionReason
    detail: str | None
    suspended_by: str
    until: datetime | None


# Phone codes and registration ----------------------------------------------


async def request_code(deps: IdentityDeps, raw_phone: str, client_ip: str) -> CodeSent:
    """Send a fresh code to the phone, within the per-IP and per-phone limits."""
    phone = Phone.parse(raw_phone)
    await _count_hit(deps, deps.policy.otp_per_ip, client_ip)
    await _count_hit(deps, deps.policy.otp_per_phone, phone.number)
    code = f"{secrets.randbelow(10**OTP_DIGITS):0{OTP_DIGITS}d}"
    salt = secrets.token_hex(8)
    policy = deps.policy.otp
    for _ in range(_MAX_RACES):
        now = deps.clock()
        stored = await deps.otps.get(phone.number)
        challenge = OtpChallenge.issue(
            stored.value if stored else None,
            code_hash=deps.keys.otp_hash(phone.number, salt, code),
            salt=salt,
            now=now,
            policy=policy,
        )
        if await deps.otps.put(phone.number, challenge, stored.rev if stored else None):
            break
    else:
        raise Conflict("concurrent_update", "Another request for this phone is in progress.")
    minutes = max(1, int(policy.ttl.total_seconds()) // 60)
    await deps.sms.send(
        phone.number, f"【Kami】验证码 {code}，{minutes} 分钟内有效。请勿告诉任何人。"
    )
    log.info("verification code sent to %s", phone.masked)
    return CodeSent(
        expires_in_seconds=int(policy.ttl.total_seconds()),
        resend_after_seconds=int(policy.resend_cooldown.total_seconds()),
    )


async def verify_phone(deps: IdentityDeps, raw_phone: str, code: str) -> PhoneProof:
    """Check the code (counting a wrong one, locking after too many) and hand
    out a proof that the caller controls the phone."""
    phone = Phone.parse(raw_phone)
    for _ in range(_MAX_RACES):
        now = deps.clock()
        stored = await deps.otps.get(phone.number)
        if stored is None:
            raise no_pending_code()
        challenge = stored.value
        matches = secrets.compare_digest(
            deps.keys.otp_hash(phone.number, challenge.salt, code), challenge.code_hash
        )
        after, rejection = challenge.attempt(matches=matches, now=now, policy=deps.policy.otp)
        if after != challenge and not await deps.otps.put(phone.number, after, stored.rev):
            continue  # a concurrent attempt changed it: decide again on the new state
        if rejection is not None:
            log.info("verification code for %s refused: %s", phone.masked, rejection.code)
            raise rejection
        expires_at = now + deps.policy.phone_proof_ttl
        return PhoneProof(deps.keys.phone_proof(phone, expires_at), expires_at)
    raise Conflict("concurrent_update", "Another request for this phone is in progress.")


async def register(deps: IdentityDeps, proof: str, password: str, client_ip: str) -> User:
    """Create the account of a proven phone.

    The account document (phone -> user id, password hash) is inserted first:
    its unique `_id` decides which registration of a phone wins, in one
    atomic write. The registration events follow. Should the process die in
    between, the account is complete but its events are missing; the next
    login appends them (`_registered_user`), so nothing is lost.
    """
    await _count_hit(deps, deps.policy.register_per_ip, client_ip)
    now = deps.clock()
    phone = deps.keys.open_phone_proof(proof, now)
    check_password(password)
    async with _password_work_admitted(deps):
        password_hash = await deps.passwords.hash(password)
    account = Account(
        phone=phone.number, user_id=str(uuid4()), password_hash=password_hash, created_at=now
    )
    if not await deps.accounts.add(account):
        raise Conflict("phone_taken", "This phone number already has an account; log in instead.")
    user = await _registered_user(deps, account)
    log.info("user %s registered with %s", user.id, phone.masked)
    return user


async def _registered_user(deps: IdentityDeps, account: Account) -> User:
    """The account's user, appending its registration events if they are missing."""
    phone = Phone(account.phone)
    for _ in range(_MAX_RACES):
        user = await deps.users.get(account.user_id)
        if user is not None:
            return user
        user = User.register(
            account.user_id, phone, deps.policy.staff_roles.get(phone.number, ()), deps.policy.tiers
        )
        try:
            await deps.users.save(user, CommitContext(correlation_id=account.user_id))
        except ConcurrencyError:
            continue  # another request completed this registration first: read it
        return user
    raise Conflict("concurrent_update", "The account changed meanwhile; retry.")


# Sessions ----------------------------------------------------------------


async def log_in(deps: IdentityDeps, raw_phone: str, password: str, client_ip: str) -> TokenPair:
    phone = Phone.parse(raw_phone)
    # Admitted before the attempt is counted: a busy refusal costs nothing.
    async with _password_work_admitted(deps):
        await _count_hit(deps, deps.policy.login_per_ip, client_ip)
        await _count_hit(deps, deps.policy.login_per_phone, phone.number)
        account = await deps.accounts.by_phone(phone.number)
        if not await deps.passwords.verify(account.password_hash if account else None, password):
            log.info("failed login for %s", phone.masked)
            raise Unauthenticated("invalid_credentials", "The phone number or password is wrong.")
        assert account is not None
        if deps.passwords.needs_rehash(account.password_hash):
            rehashed = await deps.passwords.hash(password)
            await deps.accounts.set_password_hash(phone.number, rehashed)
    user = await _registered_user(deps, account)
    now = deps.clock()
    user.ensure_active(now)
    family = RefreshFamily.start(uuid4().hex, user.id, now=now, ttl=deps.policy.refresh_token_ttl)
    await deps.sessions.put(family.family_id, family, None)
    log.info("user %s logged in (session %s)", user.id, family.family_id)
    return _token_pair(deps, user, family, now)


async def refresh(deps: IdentityDeps, refresh_token: str) -> TokenPair:
    """Rotate the session's refresh token and mint a new access token with the
    user's current roles and tier. An already used token revokes the session."""
    opened = deps.keys.open_refresh_token(refresh_token)
    if opened is None:
        raise invalid_refresh_token()
    family_id, generation = opened
    for _ in range(_MAX_RACES):
        now = deps.clock()
        stored = await deps.sessions.get(family_id)
        if stored is None:
            raise invalid_refresh_token()
        family, rejection = stored.value.rotate(
            generation, now=now, ttl=deps.policy.refresh_token_ttl
        )
        if family != stored.value and not await deps.sessions.put(family_id, family, stored.rev):
            continue  # the same token raced itself: the loser sees it as reused
        if rejection is not None:
            if rejection.code == "refresh_token_reused":
                log.warning(
                    "refresh token reuse on session %s of user %s: session revoked",
                    family_id,
                    family.user_id,
                )
            raise rejection
        user = await _load_user(deps, family.user_id)
        if user.is_suspended(now):
            await _revoke_session(deps, family_id, "suspended")
            raise Forbidden("account_suspended", "This account is suspended.")
        return _token_pair(deps, user, family, now)
    raise Conflict("concurrent_update", "The session changed meanwhile; retry.")


async def log_out(deps: IdentityDeps, refresh_token: str) -> None:
    """End the session: every token of its family stops refreshing."""
    opened = deps.keys.open_refresh_token(refresh_token)
    if opened is None:
        raise invalid_refresh_token()
    await _revoke_session(deps, opened[0], "logout")


async def _revoke_session(deps: IdentityDeps, family_id: str, reason: str) -> None:
    for _ in range(_MAX_RACES):
        stored = await deps.sessions.get(family_id)
        if stored is None:
            raise invalid_refresh_token()
        revoked = stored.value.revoke(reason, deps.clock())
        if revoked == stored.value or await deps.sessions.put(family_id, revoked, stored.rev):
            return
    raise Conflict("concurrent_update", "The session changed meanwhile; retry.")


def _token_pair(deps: IdentityDeps, user: User, family: RefreshFamily, now: datetime) -> TokenPair:
    ttl = deps.policy.access_token_ttl
    access = issue_user_token(
        deps.signing_key_pem,
        user.id,
        user.roles,
        tier=user.tier.value if user.tier else None,
        now=now,
        ttl=ttl,
    )
    return TokenPair(
        user_id=user.id,
        access_token=access,
        expires_in_seconds=int(ttl.total_seconds()),
        refresh_token=deps.keys.refresh_token(family.family_id, family.generation),
        refresh_expires_at=family.expires_at,
    )


# Verification tiers ------------------------------------------------------


def china_today(now: datetime) -> date:
    return now.astimezone(CHINA_STANDARD_TIME).date()


async def submit_real_name(
    deps: IdentityDeps, user_id: str, raw_legal_name: str, raw_id_number: str
) -> User:
    """L1: validate the ID number, claim it for this user, then grant the tier.

    "One ID number verifies one account" is enforced by the claim: a single
    insert keyed by the number's HMAC fingerprint, so of two accounts racing
    with the same number exactly one insert succeeds.
    """
    now = deps.clock()
    legal_name = normalise_legal_name(raw_legal_name)
    resident_id = ResidentId.parse(raw_id_number, today=china_today(now))
    (await _load_user(deps, user_id)).check_can_verify_real_name(now)

    sealed = json.dumps({"legal_name": legal_name, "id_number": resident_id.number})
    claim = IdClaim(
        fingerprint=deps.keys.id_fingerprint(resident_id.number),
        user_id=user_id,
        sealed=deps.cipher.seal(sealed, owner=user_id),
        id_number_masked=resident_id.masked,
        legal_name_masked=mask_name(legal_name),
        claimed_at=now,
    )
    holder = await deps.id_claims.claim(claim)
    if holder.user_id != user_id and not (
        await _is_abandoned(deps, holder, now) and await deps.id_claims.take_over(holder, claim)
    ):
        log.info("user %s submitted an ID number that verified another account", user_id)
        raise Conflict("id_number_in_use", "This ID number has already verified another account.")
    try:
        user = await _change_user(
            deps, user_id, lambda u: u.verify_real_name(deps.policy.tiers, now)
        )
    except Rejected:
        await deps.id_claims.release(claim.fingerprint, user_id)
        raise
    await deps.id_claims.confirm(claim.fingerprint, user_id)
    log.info("user %s verified real name (ID %s)", user_id, resident_id.masked)
    return user


async def _is_abandoned(deps: IdentityDeps, holder: IdClaim, now: datetime) -> bool:
    """An unconfirmed claim left by a request that died before its user was
    verified with it: past the grace period, and its user either never reached
    L1 or reached it with another ID number."""
    if holder.confirmed or now - holder.claimed_at < deps.policy.id_claim_grace:
        return False
    owner = await deps.users.get(holder.user_id)
    if owner is None or tier_rank(owner.tier) < tier_rank(KycTier.REAL_NAME):
        return True
    confirmed = await deps.id_claims.confirmed_for(holder.user_id)
    return confirmed is not None and confirmed.fingerprint != holder.fingerprint


async def submit_advanced(deps: IdentityDeps, user_id: str, evidence: str) -> AdvancedVerification:
    """L2: record the request and ask the provider at once. A timeout leaves it
    pending; `retry_advanced_verifications` asks again later."""
    now = deps.clock()
    (await _load_user(deps, user_id)).check_can_verify_advanced(now)
    if await deps.id_claims.confirmed_for(user_id) is None:
        raise Conflict("real_name_required", "Complete real-name verification (L1) first.")
    stored = await deps.advanced.get(user_id)
    request = AdvancedVerification.submit(
        stored.value if stored else None,
        request_id=str(uuid4()),
        user_id=user_id,
        evidence_sealed=deps.cipher.seal(evidence, owner=user_id),
        now=now,
    )
    if not await deps.advanced.put(user_id, request, stored.rev if stored else None):
        raise Conflict("verification_pending", "An advanced verification is already in progress.")
    log.info("user %s submitted advanced verification %s", user_id, request.request_id)
    return await _attempt_advanced(deps, user_id)


async def advanced_status(deps: IdentityDeps, user_id: str) -> AdvancedVerification:
    stored = await deps.advanced.get(user_id)
    if stored is None:
        raise NotFound("no_advanced_verification", "No advanced verification was submitted.")
    return stored.value


async def retry_advanced_verifications(deps: IdentityDeps, batch: int = 50) -> int:
    """The poller: ask the provider again about every pending request that is due."""
    decided = 0
    for request in await deps.advanced.due(deps.clock(), batch):
        after = await _attempt_advanced(deps, request.user_id)
        decided += after.status is not AdvancedStatus.PENDING
    return decided


async def _attempt_advanced(deps: IdentityDeps, user_id: str) -> AdvancedVerification:
    now = deps.clock()
    stored = await deps.advanced.get(user_id)
    if stored is None:
        raise NotFound("no_advanced_verification", "No advanced verification was submitted.")
    if not stored.value.is_due(now):
        return stored.value
    started = stored.value.start_attempt(now, deps.policy.advanced_retry)
    if not await deps.advanced.put(user_id, started, stored.rev):
        return await advanced_status(deps, user_id)  # another worker took this attempt
    started_rev = stored.rev + 1

    answer = await _ask_provider(deps, started)
    now = deps.clock()
    if answer.verdict is Verdict.TIMED_OUT:
        if started.attempts < deps.policy.advanced_retry.max_attempts:
            log.info(
                "advanced verification %s pending after attempt %d",
                started.request_id,
                started.attempts,
            )
            return started
        decided = started.reject("provider_unavailable", now)
    elif answer.verdict is Verdict.REJECTED:
        decided = started.reject(answer.reason or "rejected", now)
    else:
        try:
            await _change_user(deps, user_id, lambda u: u.verify_advanced(deps.policy.tiers, now))
            decided = started.approve(now)
        except Rejected as refusal:
            # Approved by the provider, but the account can no longer take L2
            # (suspended meanwhile), or an earlier attempt already granted it.
            decided = (
                started.approve(now)
                if refusal.code == "already_verified"
                else started.reject(refusal.code, now)
            )
    # If this write loses, the request is retried when due and decided again
    # (granting the tier is idempotent: a second grant is refused as already done).
    await deps.advanced.put(user_id, decided, started_rev)
    log.info("advanced verification %s %s", started.request_id, decided.status.value)
    return decided


async def _ask_provider(deps: IdentityDeps, request: AdvancedVerification) -> ProviderAnswer:
    claim = await deps.id_claims.confirmed_for(request.user_id)
    if claim is None or request.evidence_sealed is None:
        return ProviderAnswer(Verdict.REJECTED, "real_name_missing")
    personal = json.loads(deps.cipher.open(claim.sealed, owner=request.user_id))
    check = AdvancedCheck(
        request_id=request.request_id,
        attempt=request.attempts,
        legal_name=personal["legal_name"],
        id_number=personal["id_number"],
        evidence=deps.cipher.open(request.evidence_sealed, owner=request.user_id),
    )
    try:
        return await asyncio.wait_for(
            deps.provider.verify(check), timeout=deps.policy.provider_timeout.total_seconds()
        )
    except TimeoutError:
        return ProviderAnswer(Verdict.TIMED_OUT)
    except Exception as exc:
        # Treated as a timeout: retried with backoff. The exception's text is
        # not logged, since a provider client may echo the request.
        log.warning(
            "verification provider failed on %s: %s", request.request_id, type(exc).__name__
        )
        return ProviderAnswer(Verdict.TIMED_OUT)


# Seller applications -----------------------------------------------------


async def apply_as_seller(
    deps: IdentityDeps, user_id: str, shop_name: str, category: str | None
) -> SellerApplication:
    """The user asks to sell: queued for an operator (`approve_seller`)."""
    now = deps.clock()
    user = await _load_user(deps, user_id)
    user.check_can_apply_as_seller(now)
    for _ in range(_MAX_RACES):
        stored = await deps.seller_applications.get(user_id)
        application = SellerApplication.submit(
            stored.value if stored else None,
            user_id=user_id,
            shop_name=shop_name,
            category=category,
            now=now,
        )
        if await deps.seller_applications.put(user_id, application, stored.rev if stored else None):
            log.info("user %s applied to sell", user_id)
            return application
    raise Conflict("concurrent_update", "The application changed meanwhile; retry.")


async def pending_seller_applications(deps: IdentityDeps, limit: int = 200) -> list[Applicant]:
    """The operators' queue, oldest first; users who became sellers meanwhile
    (their record not yet marked) are left out."""
    now = deps.clock()
    found = []
    for application in await deps.seller_applications.pending(limit):
        user = await deps.users.get(application.user_id)
        if user is None or Role.SELLER in user.roles:
            continue
        found.append(Applicant(application, user.phone_masked, user.tier, user.is_suspended(now)))
    return found


async def reject_seller_application(
    deps: IdentityDeps, operator_id: str, user_id: str, reason: str
) -> SellerApplication:
    now = deps.clock()
    for _ in range(_MAX_RACES):
        stored = await deps.seller_applications.get(user_id)
        if stored is None:
            raise NotFound("application_not_found", "The user has not applied to sell.")
        rejected = stored.value.reject(operator_id, reason, now)
        if await deps.seller_applications.put(user_id, rejected, stored.rev):
            log.info("operator %s rejected the seller application of %s", operator_id, user_id)
            return rejected
    raise Conflict("concurrent_update", "The application changed meanwhile; retry.")


async def _mark_application_approved(deps: IdentityDeps, user_id: str, operator_id: str) -> None:
    for _ in range(_MAX_RACES):
        stored = await deps.seller_applications.get(user_id)
        if stored is None or stored.value.status is ApplicationStatus.APPROVED:
            return
        approved = stored.value.approve(operator_id, deps.clock())
        if await deps.seller_applications.put(user_id, approved, stored.rev):
            return


# Operators ---------------------------------------------------------------


async def approve_seller(
    deps: IdentityDeps,
    operator_id: str,
    user_id: str,
    shop_name: str,
    category: str | None = None,
) -> User:
    now = deps.clock()
    user = await _change_user(
        deps, user_id, lambda u: u.approve_seller(shop_name, operator_id, now, category)
    )
    # After the commit: a crash in between leaves the record pending, and the
    # queue leaves out users the stream says are sellers.
    await _mark_application_approved(deps, user_id, operator_id)
    log.info("operator %s approved user %s as a seller", operator_id, user_id)
    return user


async def suspend_user(
    deps: IdentityDeps,
    operator_id: str,
    user_id: str,
    reason: SuspensionReason,
    detail: str | None = None,
    until: datetime | None = None,
) -> User:
    """Suspend the account and end its sessions: refresh is refused at once, and
    access tokens lapse within their short lifetime (identity's own routes
    refuse them at once)."""
    now = deps.clock()
    await _load_user(deps, user_id)
    # Before the event: the list then misses no suspension (it checks each stream).
    await deps.suspensions.remember(user_id, now)
    user = await _change_user(
        deps,
        user_id,
        lambda u: u.suspend(reason, by=operator_id, now=now, detail=detail, until=until),
    )
    revoked = await deps.sessions.revoke_all_for(user_id, "suspended", now)
    log.info(
        "operator %s suspended user %s (%s); %d session(s) revoked",
        operator_id,
        user_id,
        reason.value,
        revoked,
    )
    return user


# Reads -------------------------------------------------------------------


async def pending_verifications(deps: IdentityDeps, limit: int = 200) -> list[PendingVerification]:
    """Advanced (L2) verifications the provider has not decided, oldest first."""
    found = []
    for request in await deps.advanced.pending(limit):
        user = await deps.users.get(request.user_id)
        found.append(
            PendingVerification(
                request, user.phone_masked if user else None, user.tier if user else None
            )
        )
    return found


async def suspended_users(deps: IdentityDeps, limit: int = 200) -> list[SuspendedUser]:
    """Users suspended now, most recently first (ended suspensions left out)."""
    now = deps.clock()
    found = []
    for user_id in await deps.suspensions.user_ids(limit):
        user = await deps.users.get(user_id)
        if user is None or user.suspension is None or not user.is_suspended(now):
            continue
        suspension = user.suspension
        found.append(
            SuspendedUser(
                user_id=user.id,
                phone_masked=user.phone_masked,
                roles=user.roles,
                reason=suspension.reason,
                detail=suspension.detail,
                suspended_by=suspension.suspended_by,
                until=suspension.until,
            )
        )
    return found


async def profile(deps: IdentityDeps, user_id: str) -> Profile:
    user = await _load_user(deps, user_id)
    user.ensure_active(deps.clock())
    claim = await deps.id_claims.confirmed_for(user_id)
    advanced = await deps.advanced.get(user_id)
    application = await deps.seller_applications.get(user_id)
    return Profile(
        user_id=user.id,
        phone_masked=user.phone_masked,
        roles=user.roles,
        tier=user.tier,
        terms=deps.policy.tiers.terms(user.tier) if user.tier else None,
        shop_name=user.shop_name,
        legal_name_masked=claim.legal_name_masked if claim else None,
        id_number_masked=claim.id_number_masked if claim else None,
        advanced_verification=advanced.value if advanced else None,
        seller_category=user.seller_category,
        seller_application=application.value if application else None,
    )


# Helpers -----------------------------------------------------------------


async def _load_user(deps: IdentityDeps, user_id: str) -> User:
    user = await deps.users.get(user_id)
    if user is None:
        raise NotFound("user_not_found", "No such user.")
    return user


async def _change_user(deps: IdentityDeps, user_id: str, decide: Callable[[User], None]) -> User:
    """Load, decide, save; on a concurrent append, reload and decide again."""
    for _ in range(_MAX_RACES):
        user = await _load_user(deps, user_id)
        decide(user)
        try:
            await deps.users.save(user, CommitContext(correlation_id=user_id))
        except ConcurrencyError:
            continue
        return user
    raise Conflict("concurrent_update", "The account changed meanwhile; retry.")


@asynccontextmanager
async def _password_work_admitted(deps: IdentityDeps) -> AsyncIterator[None]:
    """A place in the bounded pool of argon2 hashes and checks, or a 429 the
    caller may simply retry (nothing was done)."""
    try:
        async with deps.passwords.admitted():
            yield
    except PasswordChecksBusy as busy:
        raise TooManyRequests(
            "password_checks_busy",
            f"Too many passwords are being checked right now; nothing was done, "
            f"retry in {busy.retry_after} s.",
            busy.retry_after,
        ) from None


async def _count_hit(deps: IdentityDeps, limit: RateLimit, subject: str) -> None:
    now = deps.clock()
    current, previous = await deps.rate_counter.hit(
        f"{limit.name}:{subject}", limit.window_index(now), now + 2 * limit.window
    )
    retry_after = limit.retry_after(current=current, previous=previous, now=now)
    if retry_after is not None:
        log.info("rate limit %s reached", limit.name)
        raise TooManyRequests(
            "rate_limited", "Too many requests; wait a while and try again.", retry_after
        )
