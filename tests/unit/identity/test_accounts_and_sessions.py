"""Registration, login, refresh-token rotation and reuse detection, logout,
suspension and roles in tokens."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import jwt
import pytest

from kami_events.catalogue.identity import (
    IdentityVerified,
    PhoneVerified,
    Role,
    SuspensionReason,
    UserRegistered,
)
from kami_identity import handlers
from kami_identity.adapters.passwords import PasswordHasher
from kami_identity.domain.phone import Phone
from kami_identity.domain.rejections import Forbidden, Rejected, TooManyRequests, Unauthenticated
from kami_identity.handlers import IdentityPolicy
from kami_web.passwords import Argon2Parameters, CheckPoolLimits
from tests.unit.identity.data import CLIENT_IP, PASSWORD, logged_in, registered, resident_id
from tests.unit.identity.fakes import FAST_ARGON2, KEYS, InMemoryRateCounter, harness

PHONE = "13812345678"
OPERATOR_PHONE = "13900000001"


def claims(access_token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(
        access_token, KEYS.public_key_pem, algorithms=["ES256"], audience="kami"
    )
    return decoded


async def refusal(call: object) -> Rejected:
    with pytest.raises(Rejected) as refused:
        await call  # type: ignore[misc]
    return refused.value


# Registration ---------------------------------------------------------------


async def test_registration_commits_three_events_and_stores_an_argon2id_hash() -> None:
    h = harness()
    user_id = await registered(h, PHONE)
    registered_event, verified, tier = h.events_of(user_id)
    assert isinstance(registered_event, UserRegistered)
    assert registered_event.phone_masked == "138****5678"
    assert registered_event.roles == [Role.BUYER]
    assert isinstance(verified, PhoneVerified)
    assert isinstance(tier, IdentityVerified) and tier.daily_payment_limit == 50_000
    account = h.accounts.by_number[PHONE]
    assert account.user_id == user_id
    assert account.password_hash.startswith("$argon2id$")
    assert PASSWORD not in account.password_hash


async def test_a_phone_proof_registers_once() -> None:
    h = harness()
    await handlers.request_code(h.deps, PHONE, CLIENT_IP)
    proof = await handlers.verify_phone(h.deps, PHONE, h.sms.last_code(PHONE))
    await handlers.register(h.deps, proof.token, PASSWORD, CLIENT_IP)
    again = await refusal(handlers.register(h.deps, proof.token, "Other-pass-1", CLIENT_IP))
    assert again.code == "phone_taken"
    assert len({e.aggregate_id for e in h.store.committed}) == 1


async def test_a_forged_or_expired_phone_proof_registers_nothing() -> None:
    h = harness()
    forged = h.deps.keys.phone_proof(Phone(PHONE), h.clock() + timedelta(minutes=15))
    forged = forged.replace(PHONE, "13999999999")
    assert (await refusal(handlers.register(h.deps, forged, PASSWORD, CLIENT_IP))).code == (
        "invalid_verification_token"
    )
    proof = h.deps.keys.phone_proof(Phone(PHONE), h.clock() + timedelta(minutes=15))
    h.clock.advance(timedelta(minutes=15))
    assert (await refusal(handlers.register(h.deps, proof, PASSWORD, CLIENT_IP))).code == (
        "verification_token_expired"
    )
    assert h.store.committed == []


async def test_a_weak_password_is_refused_before_anything_is_stored() -> None:
    h = harness()
    await handlers.request_code(h.deps, PHONE, CLIENT_IP)
    proof = await handlers.verify_phone(h.deps, PHONE, h.sms.last_code(PHONE))
    assert (await refusal(handlers.register(h.deps, proof.token, "password", CLIENT_IP))).code == (
        "weak_password"
    )
    assert h.accounts.by_number == {}


async def test_operator_phones_register_as_operators() -> None:
    h = harness(IdentityPolicy(staff_roles={OPERATOR_PHONE: frozenset({Role.OPERATOR})}))
    operator = await registered(h, OPERATOR_PHONE)
    buyer = await registered(h, PHONE)
    assert await h.deps.users.get(operator) is not None
    assert (await h.deps.users.get(operator)).roles == {Role.BUYER, Role.OPERATOR}  # type: ignore[union-attr]
    assert (await h.deps.users.get(buyer)).roles == {Role.BUYER}  # type: ignore[union-attr]


async def test_an_account_whose_events_were_lost_is_completed_at_login() -> None:
    """The process died between the account insert and the event append."""
    h = harness()
    from kami_identity.adapters.ports import Account

    await h.deps.accounts.add(
        Account(
            phone=PHONE,
            user_id="u-crashed",
            password_hash=await h.deps.passwords.hash(PASSWORD),
            created_at=h.clock(),
        )
    )
    tokens = await handlers.log_in(h.deps, PHONE, PASSWORD, CLIENT_IP)
    assert tokens.user_id == "u-crashed"
    assert [type(e).__name__ for e in h.events_of("u-crashed")] == [
        "UserRegistered",
        "PhoneVerified",
        "IdentityVerified",
    ]


# Login ----------------------------------------------------------------------


async def test_a_hash_of_other_parameters_is_redone_at_the_next_login() -> None:
    """Passwords hashed before the parameters changed (RFC 9106's 64 MiB,
    here a cheap stand-in with other parameters) move to the current ones."""
    h = harness()
    await registered(h, PHONE)
    older = PasswordHasher(Argon2Parameters(time_cost=2, memory_cost_kib=16, parallelism=2))
    await h.deps.accounts.set_password_hash(PHONE, await older.hash(PASSWORD))
    assert h.deps.passwords.needs_rehash((await h.deps.accounts.by_phone(PHONE)).password_hash)  # type: ignore[union-attr]

    await handlers.log_in(h.deps, PHONE, PASSWORD, CLIENT_IP)
    rehashed = (await h.deps.accounts.by_phone(PHONE)).password_hash  # type: ignore[union-attr]
    assert not h.deps.passwords.needs_rehash(rehashed)
    assert await h.deps.passwords.verify(rehashed, PASSWORD)
    await handlers.log_in(h.deps, PHONE, PASSWORD, CLIENT_IP)  # and still logs in


async def test_a_busy_password_pool_is_a_429_that_counts_no_login_attempt() -> None:
    """Hashes run on a bounded pool (identity's memory is bounded by it): past
    its queue a login is refused before anything is counted, and may retry."""
    h = harness()
    await registered(h, PHONE)
    passwords = PasswordHasher(FAST_ARGON2, CheckPoolLimits(concurrency=1, max_queued=0))
    deps = dataclasses.replace(h.deps, passwords=passwords)
    rates = deps.rate_counter
    assert isinstance(rates, InMemoryRateCounter)
    counted = dict(rates.counts)

    async with passwords.admitted():  # another login holds the only place
        with pytest.raises(TooManyRequests) as busy:
            await handlers.log_in(deps, PHONE, PASSWORD, CLIENT_IP)
    assert busy.value.code == "password_checks_busy" and busy.value.retry_after_seconds >= 1
    assert rates.counts == counted

    tokens = await handlers.log_in(deps, PHONE, PASSWORD, CLIENT_IP)  # room again
    assert tokens.access_token


def test_identity_hashes_with_owasps_parameters_by_default() -> None:
    assert Argon2Parameters() == Argon2Parameters(
        time_cost=3, memory_cost_kib=12 * 1024, parallelism=1
    )


async def test_login_returns_a_short_lived_access_token_with_roles_and_tier() -> None:
    h = harness()
    tokens = await logged_in(h, PHONE)
    decoded = claims(tokens.access_token)
    assert decoded["sub"] == tokens.user_id
    assert decoded["roles"] == ["buyer"] and decoded["tier"] == "phone"
    assert decoded["exp"] - decoded["iat"] == 300 == tokens.expires_in_seconds


async def test_wrong_password_and_unknown_phone_look_the_same() -> None:
    h = harness()
    await registered(h, PHONE)
    wrong = await refusal(handlers.log_in(h.deps, PHONE, "Wrong-pass-1", CLIENT_IP))
    unknown = await refusal(handlers.log_in(h.deps, "13912345678", PASSWORD, CLIENT_IP))
    assert isinstance(wrong, Unauthenticated) and isinstance(unknown, Unauthenticated)
    assert (
        (wrong.code, wrong.message)
        == (unknown.code, unknown.message)
        == (
            "invalid_credentials",
            "The phone number or password is wrong.",
        )
    )


async def test_logins_per_phone_are_rate_limited() -> None:
    h = harness()
    await registered(h, PHONE)
    for _ in range(10):
        await refusal(handlers.log_in(h.deps, PHONE, "Wrong-pass-1", CLIENT_IP))
    limited = await refusal(handlers.log_in(h.deps, PHONE, PASSWORD, CLIENT_IP))
    assert limited.code == "rate_limited"
    h.clock.advance(timedelta(minutes=30))
    await handlers.log_in(h.deps, PHONE, PASSWORD, CLIENT_IP)


# Refresh tokens -------------------------------------------------------------


async def test_refresh_rotates_the_refresh_token() -> None:
    h = harness()
    first = await logged_in(h, PHONE)
    second = await handlers.refresh(h.deps, first.refresh_token)
    third = await handlers.refresh(h.deps, second.refresh_token)
    assert len({first.refresh_token, second.refresh_token, third.refresh_token}) == 3
    assert claims(third.access_token)["sub"] == first.user_id
    family = next(iter(h.sessions.items.values())).value
    assert family.generation == 3


async def test_a_reused_refresh_token_revokes_the_whole_family() -> None:
    h = harness()
    stolen = await logged_in(h, PHONE)
    legitimate = await handlers.refresh(h.deps, stolen.refresh_token)
    reused = await refusal(handlers.refresh(h.deps, stolen.refresh_token))
    assert reused.code == "refresh_token_reused"
    # The newest token of the family is dead too: both parties must log in again.
    after = await refusal(handlers.refresh(h.deps, legitimate.refresh_token))
    assert after.code == "session_revoked"
    # Other sessions of the same user are unaffected.
    other = await handlers.log_in(h.deps, PHONE, PASSWORD, CLIENT_IP)
    await handlers.refresh(h.deps, other.refresh_token)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
        lambda t: t.replace(".1.", ".7."),
        lambda t: "garbage",
    ],
)
async def test_a_forged_refresh_token_is_refused_without_touching_the_session(mangle: Any) -> None:
    h = harness()
    tokens = await logged_in(h, PHONE)
    refused = await refusal(handlers.refresh(h.deps, mangle(tokens.refresh_token)))
    assert refused.code == "invalid_refresh_token"
    await handlers.refresh(h.deps, tokens.refresh_token)


async def test_a_refresh_token_expires() -> None:
    h = harness(IdentityPolicy(refresh_token_ttl=timedelta(days=1)))
    tokens = await logged_in(h, PHONE)
    h.clock.advance(timedelta(days=1))
    assert (await refusal(handlers.refresh(h.deps, tokens.refresh_token))).code == (
        "refresh_token_expired"
    )


async def test_logout_ends_the_session() -> None:
    h = harness()
    tokens = await logged_in(h, PHONE)
    rotated = await handlers.refresh(h.deps, tokens.refresh_token)
    await handlers.log_out(h.deps, rotated.refresh_token)
    assert (await refusal(handlers.refresh(h.deps, rotated.refresh_token))).code == (
        "session_revoked"
    )


# Suspension and roles ---------------------------------------------------------


async def operator_and_buyer(h: Any) -> tuple[str, handlers.TokenPair]:
    operator = await registered(h, OPERATOR_PHONE)
    buyer = await logged_in(h, PHONE)
    return operator, buyer


async def test_suspension_refuses_refresh_login_and_profile_at_once() -> None:
    h = harness()
    operator, buyer = await operator_and_buyer(h)
    second_session = await handlers.log_in(h.deps, PHONE, PASSWORD, CLIENT_IP)
    await handlers.suspend_user(
        h.deps, operator, buyer.user_id, SuspensionReason.FRAUD_SUSPECTED, "chargebacks"
    )
    for tokens in (buyer, second_session):
        refused = await refusal(handlers.refresh(h.deps, tokens.refresh_token))
        assert refused.code == "session_revoked"
    assert all(s.value.revoked_reason == "suspended" for s in h.sessions.items.values())
    refused_login = await refusal(handlers.log_in(h.deps, PHONE, PASSWORD, CLIENT_IP))
    assert isinstance(refused_login, Forbidden) and refused_login.code == "account_suspended"
    refused_profile = await refusal(handlers.profile(h.deps, buyer.user_id))
    assert refused_profile.code == "account_suspended"
    suspended = h.events_of(buyer.user_id)[-1]
    assert type(suspended).__name__ == "UserSuspended"
    assert suspended.model_dump()["suspended_by"] == operator


async def test_refresh_checks_the_account_even_when_the_session_was_not_revoked() -> None:
    """Sessions are revoked after the suspension is committed; should that
    step be lost, refresh still reads the account and refuses."""
    h = harness()
    operator, buyer = await operator_and_buyer(h)
    await handlers.suspend_user(h.deps, operator, buyer.user_id, SuspensionReason.TERMS_VIOLATION)
    for key, stored in list(h.sessions.items.items()):  # undo the revocation
        h.sessions.items[key] = type(stored)(
            stored.value.model_copy(update={"revoked_at": None, "revoked_reason": None}),
            stored.rev,
        )
    assert (await refusal(handlers.refresh(h.deps, buyer.refresh_token))).code == (
        "account_suspended"
    )


async def test_a_temporary_suspension_ends_by_itself() -> None:
    h = harness()
    operator, buyer = await operator_and_buyer(h)
    await handlers.suspend_user(
        h.deps,
        operator,
        buyer.user_id,
        SuspensionReason.USER_REQUEST,
        until=h.clock() + timedelta(days=3),
    )
    h.clock.advance(timedelta(days=3))
    await handlers.log_in(h.deps, PHONE, PASSWORD, CLIENT_IP)


async def test_seller_approval_shows_up_in_the_next_token() -> None:
    h = harness()
    operator, buyer = await operator_and_buyer(h)
    await handlers.submit_real_name(h.deps, buyer.user_id, "张三", resident_id())
    await handlers.approve_seller(h.deps, operator, buyer.user_id, "Card Shop")
    assert claims(buyer.access_token)["roles"] == ["buyer"]
    refreshed = await handlers.refresh(h.deps, buyer.refresh_token)
    assert claims(refreshed.access_token)["roles"] == ["buyer", "seller"]
    assert claims(refreshed.access_token)["tier"] == "real_name"


async def test_the_operator_approves_a_seller_for_a_category_and_its_profile_says_so() -> None:
    h = harness()
    operator, buyer = await operator_and_buyer(h)
    await handlers.submit_real_name(h.deps, buyer.user_id, "张三", resident_id())
    await handlers.approve_seller(h.deps, operator, buyer.user_id, "Card Shop", "games")
    profile = await handlers.profile(h.deps, buyer.user_id)
    assert (profile.shop_name, profile.seller_category) == ("Card Shop", "games")


async def test_operating_on_an_unknown_user_is_not_found() -> None:
    h = harness()
    operator, _ = await operator_and_buyer(h)
    refused = await refusal(handlers.approve_seller(h.deps, operator, "nobody", "Shop"))
    assert refused.code == "user_not_found"
