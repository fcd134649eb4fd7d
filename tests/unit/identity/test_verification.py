"""Real-name (L1) and advanced (L2) verification."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from kami_events.catalogue.identity import IdentityVerified, KycTier, SuspensionReason
from kami_identity import handlers
from kami_identity.domain.advanced import AdvancedStatus, RetryPolicy
from kami_identity.domain.rejections import Rejected
from kami_identity.domain.tiers import TierTable, TierTerms
from kami_identity.handlers import IdentityPolicy
from tests.unit.identity.data import registered, resident_id
from tests.unit.identity.fakes import Harness, harness

ID_NUMBER = resident_id("19900307", sequence="123")
LIVENESS = "liveness-ok-token"


async def refusal(call: object) -> Rejected:
    with pytest.raises(Rejected) as refused:
        await call  # type: ignore[misc]
    return refused.value


async def real_name_user(h: Harness, phone: str, id_number: str = ID_NUMBER) -> str:
    user_id = await registered(h, phone)
    await handlers.submit_real_name(h.deps, user_id, "张三", id_number)
    return user_id


# L1 -------------------------------------------------------------------------


async def test_real_name_grants_l1_with_its_terms_and_stores_the_number_encrypted() -> None:
    h = harness()
    user_id = await real_name_user(h, "13812345678")
    granted = h.events_of(user_id)[-1]
    assert isinstance(granted, IdentityVerified)
    assert (granted.tier, granted.previous_tier) == (KycTier.REAL_NAME, KycTier.PHONE)
    assert (granted.daily_payment_limit, granted.delivery_priority) == (500_000, 1)

    (claim,) = h.id_claims.claims.values()
    assert claim.confirmed and claim.user_id == user_id
    assert claim.fingerprint == h.deps.keys.id_fingerprint(ID_NUMBER)
    assert ID_NUMBER not in str(claim.model_dump(exclude={"sealed"}))
    assert ID_NUMBER.encode() not in claim.sealed
    assert json.loads(h.deps.cipher.open(claim.sealed, owner=user_id)) == {
        "legal_name": "张三",
        "id_number": ID_NUMBER,
    }
    # Sealed for this user only.
    with pytest.raises(ValueError, match="owner"):
        h.deps.cipher.open(claim.sealed, owner="someone-else")


async def test_profile_shows_personal_data_masked() -> None:
    h = harness()
    user_id = await real_name_user(h, "13812345678")
    profile = await handlers.profile(h.deps, user_id)
    assert profile.phone_masked == "138****5678"
    assert profile.id_number_masked == f"1101**********{ID_NUMBER[-4:]}"
    assert profile.legal_name_masked == "张*"
    assert profile.tier is KycTier.REAL_NAME
    assert profile.terms == TierTable().real_name


async def test_the_same_id_number_cannot_verify_a_second_account() -> None:
    h = harness()
    first = await real_name_user(h, "13812345678")
    second = await registered(h, "13912345678")
    refused = await refusal(handlers.submit_real_name(h.deps, second, "张三", ID_NUMBER.lower()))
    assert refused.code == "id_number_in_use"
    assert [e for e in h.events_of(second) if getattr(e, "tier", None) == KycTier.REAL_NAME] == []
    assert {c.user_id for c in h.id_claims.claims.values()} == {first}


async def test_a_user_verifies_real_name_once() -> None:
    h = harness()
    user_id = await real_name_user(h, "13812345678")
    other = resident_id("19850101", sequence="456")
    refused = await refusal(handlers.submit_real_name(h.deps, user_id, "张三", other))
    assert refused.code == "already_verified"
    # The second number was not left claimed.
    assert h.deps.keys.id_fingerprint(other) not in h.id_claims.claims


@pytest.mark.parametrize(
    ("id_number", "code"),
    [
        (ID_NUMBER[:17] + ("1" if ID_NUMBER[17] != "1" else "2"), "id_checksum_mismatch"),
        (resident_id("19900231"), "invalid_birth_date"),
        (resident_id("20150101"), "under_age"),
        ("not-an-id", "invalid_id_number"),
    ],
)
async def test_invalid_id_numbers_are_refused_and_nothing_is_stored(
    id_number: str, code: str
) -> None:
    h = harness()
    user_id = await registered(h, "13812345678")
    refused = await refusal(handlers.submit_real_name(h.deps, user_id, "张三", id_number))
    assert refused.code == code
    assert id_number not in refused.message
    assert h.id_claims.claims == {}
    assert len(h.events_of(user_id)) == 3


async def test_under_18_is_judged_by_todays_date_in_china() -> None:
    born = resident_id("20081124")
    # 15:59 UTC on 23 November is 23:59 in Beijing: one minute short of 18.
    early = harness(start=datetime(2026, 11, 23, 15, 59, tzinfo=UTC))
    user_id = await registered(early, "13812345678")
    refused = await refusal(handlers.submit_real_name(early.deps, user_id, "张三", born))
    assert refused.code == "under_age"
    # One minute later it is 24 November in Beijing, still the 23rd in UTC.
    early.clock.advance(timedelta(minutes=1))
    await handlers.submit_real_name(early.deps, user_id, "张三", born)


async def test_a_suspended_user_cannot_verify() -> None:
    h = harness()
    operator = await registered(h, "13900000001")
    user_id = await registered(h, "13812345678")
    await handlers.suspend_user(h.deps, operator, user_id, SuspensionReason.FRAUD_SUSPECTED)
    refused = await refusal(handlers.submit_real_name(h.deps, user_id, "张三", ID_NUMBER))
    assert refused.code == "account_suspended"
    assert h.id_claims.claims == {}


async def test_a_claim_abandoned_by_a_crashed_request_is_taken_over_after_the_grace() -> None:
    h = harness()
    crashed = await registered(h, "13812345678")
    owner = await registered(h, "13912345678")
    # The crashed request claimed the number but never committed its event.
    from kami_identity.adapters.ports import IdClaim

    await h.deps.id_claims.claim(
        IdClaim(
            fingerprint=h.deps.keys.id_fingerprint(ID_NUMBER),
            user_id=crashed,
            sealed=b"x",
            id_number_masked="x",
            legal_name_masked="x",
            claimed_at=h.clock(),
        )
    )
    assert (await refusal(handlers.submit_real_name(h.deps, owner, "张三", ID_NUMBER))).code == (
        "id_number_in_use"
    )
    h.clock.advance(timedelta(minutes=10))
    await handlers.submit_real_name(h.deps, owner, "张三", ID_NUMBER)
    assert (await h.deps.id_claims.confirmed_for(owner)) is not None


# L2 -------------------------------------------------------------------------


async def test_advanced_is_granted_on_the_providers_approval() -> None:
    h = harness()
    user_id = await real_name_user(h, "13812345678")
    request = await handlers.submit_advanced(h.deps, user_id, LIVENESS)
    assert request.status is AdvancedStatus.APPROVED and request.evidence_sealed is None
    granted = h.events_of(user_id)[-1]
    assert isinstance(granted, IdentityVerified) and granted.tier is KycTier.ADVANCED
    assert granted.daily_payment_limit == 5_000_000
    (check,) = h.provider.checks
    assert (check.legal_name, check.id_number, check.evidence) == ("张三", ID_NUMBER, LIVENESS)
    assert ID_NUMBER not in repr(check) and LIVENESS not in repr(check)


async def test_a_rejection_grants_nothing_and_may_be_retried_by_the_user() -> None:
    h = harness()
    user_id = await real_name_user(h, "13812345678", resident_id(sequence="000"))
    request = await handlers.submit_advanced(h.deps, user_id, LIVENESS)
    assert (request.status, request.rejection_reason) == (
        AdvancedStatus.REJECTED,
        "identity_mismatch",
    )
    assert (await handlers.profile(h.deps, user_id)).tier is KycTier.REAL_NAME
    again = await handlers.submit_advanced(h.deps, user_id, LIVENESS)
    assert again.request_id != request.request_id and again.status is AdvancedStatus.REJECTED


async def test_a_timeout_leaves_the_request_pending_until_a_retry_is_approved() -> None:
    retry = RetryPolicy(base_delay=timedelta(seconds=5), max_delay=timedelta(minutes=1))
    h = harness(IdentityPolicy(advanced_retry=retry))
    user_id = await real_name_user(h, "13812345678", resident_id(sequence="999"))
    request = await handlers.submit_advanced(h.deps, user_id, LIVENESS)
    assert (request.status, request.attempts) == (AdvancedStatus.PENDING, 1)
    refused = await refusal(handlers.submit_advanced(h.deps, user_id, LIVENESS))
    assert refused.code == "verification_pending"

    # Not due yet: the poller leaves it alone.
    assert await handlers.retry_advanced_verifications(h.deps) == 0
    assert len(h.provider.checks) == 1
    h.clock.advance(timedelta(seconds=5))
    assert await handlers.retry_advanced_verifications(h.deps) == 0  # timed out again
    assert (await handlers.advanced_status(h.deps, user_id)).attempts == 2
    h.clock.advance(timedelta(seconds=9))
    assert await handlers.retry_advanced_verifications(h.deps) == 0  # backoff doubled: 10 s
    h.clock.advance(timedelta(seconds=1))
    assert await handlers.retry_advanced_verifications(h.deps) == 1
    status = await handlers.advanced_status(h.deps, user_id)
    assert (status.status, status.attempts) == (AdvancedStatus.APPROVED, 3)
    assert (await handlers.profile(h.deps, user_id)).tier is KycTier.ADVANCED
    tiers = [e.tier for e in h.events_of(user_id) if isinstance(e, IdentityVerified)]
    assert tiers == [KycTier.PHONE, KycTier.REAL_NAME, KycTier.ADVANCED]


async def test_a_provider_that_never_answers_is_given_up_after_max_attempts() -> None:
    retry = RetryPolicy(base_delay=timedelta(seconds=1), max_attempts=3)
    h = harness(IdentityPolicy(advanced_retry=retry))
    h.provider.simulated.timeouts_before_answer = 100
    user_id = await real_name_user(h, "13812345678", resident_id(sequence="999"))
    await handlers.submit_advanced(h.deps, user_id, LIVENESS)
    for _ in range(3):
        h.clock.advance(timedelta(minutes=1))
        await handlers.retry_advanced_verifications(h.deps)
    status = await handlers.advanced_status(h.deps, user_id)
    assert (status.status, status.rejection_reason, status.attempts) == (
        AdvancedStatus.REJECTED,
        "provider_unavailable",
        3,
    )


async def test_a_provider_error_counts_as_a_timeout() -> None:
    h = harness()
    user_id = await real_name_user(h, "13812345678")

    async def broken(check: object) -> object:
        raise ConnectionError("provider down")

    h.provider.verify = broken  # type: ignore[method-assign,assignment]
    request = await handlers.submit_advanced(h.deps, user_id, LIVENESS)
    assert request.status is AdvancedStatus.PENDING


async def test_advanced_needs_real_name_first() -> None:
    h = harness()
    user_id = await registered(h, "13812345678")
    refused = await refusal(handlers.submit_advanced(h.deps, user_id, LIVENESS))
    assert refused.code == "real_name_required"
    assert h.advanced.items == {}


async def test_a_suspension_during_a_pending_request_prevents_the_grant() -> None:
    h = harness()
    operator = await registered(h, "13900000001")
    user_id = await real_name_user(h, "13812345678", resident_id(sequence="999"))
    await handlers.submit_advanced(h.deps, user_id, LIVENESS)
    await handlers.suspend_user(h.deps, operator, user_id, SuspensionReason.FRAUD_SUSPECTED)
    h.clock.advance(timedelta(hours=1))
    h.provider.simulated.timeouts_before_answer = 0
    await handlers.retry_advanced_verifications(h.deps)
    stored = h.advanced.items[user_id].value
    assert (stored.status, stored.rejection_reason) == (
        AdvancedStatus.REJECTED,
        "account_suspended",
    )
    assert not any(getattr(e, "tier", None) == KycTier.ADVANCED for e in h.events_of(user_id))


async def test_configured_tier_terms_reach_the_events() -> None:
    table = TierTable(
        advanced=TierTerms(
            daily_payment_limit=9_999_999, delivery_priority=9, aftersales_priority=8
        )
    )
    h = harness(IdentityPolicy(tiers=table))
    user_id = await real_name_user(h, "13812345678")
    await handlers.submit_advanced(h.deps, user_id, LIVENESS)
    granted = h.events_of(user_id)[-1]
    assert isinstance(granted, IdentityVerified)
    assert (
        granted.daily_payment_limit,
        granted.delivery_priority,
        granted.aftersales_priority,
    ) == (
        9_999_999,
        9,
        8,
    )


async def test_no_event_carries_a_code_a_password_or_an_id_number() -> None:
    h = harness()
    operator = await registered(h, "13900000001")
    user_id = await real_name_user(h, "13812345678")
    await handlers.submit_advanced(h.deps, user_id, LIVENESS)
    await handlers.approve_seller(h.deps, operator, user_id, "Shop")
    await handlers.suspend_user(h.deps, operator, user_id, SuspensionReason.TERMS_VIOLATION)
    codes = {h.sms.last_code(phone) for phone, _ in h.sms.sent}
    wire = " ".join(e.model_dump_json() for e in h.store.committed)
    assert len(codes) == 2 and len(h.store.committed) == 10
    for secret in (*codes, "Correct-horse-42", ID_NUMBER, LIVENESS, "张三", "13812345678"):
        assert secret not in wire
