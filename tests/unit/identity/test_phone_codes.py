"""One-time codes: sending, checking, expiry, lockout and resend limits."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kami_identity import handlers
from kami_identity.domain.rate_limits import RateLimit
from kami_identity.domain.rejections import ChallengeFailed, Rejected, TooManyRequests
from kami_identity.handlers import IdentityPolicy
from tests.unit.identity.data import CLIENT_IP
from tests.unit.identity.fakes import Harness, harness

PHONE = "13812345678"


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def refusal(call: object) -> Rejected:
    with pytest.raises(Rejected) as refused:
        await call  # type: ignore[misc]
    return refused.value


async def test_a_six_digit_code_is_sent_and_only_its_keyed_hash_is_stored() -> None:
    h = harness()
    sent = await handlers.request_code(h.deps, PHONE, CLIENT_IP)
    code = h.sms.last_code(PHONE)
    assert len(code) == 6 and code.isdigit()
    assert (sent.expires_in_seconds, sent.resend_after_seconds) == (300, 60)
    stored = h.otps.items[PHONE].value
    assert code not in stored.model_dump_json()
    assert stored.code_hash == h.deps.keys.otp_hash(PHONE, stored.salt, code)


async def test_the_right_code_proves_the_phone_once() -> None:
    h = harness()
    await handlers.request_code(h.deps, PHONE, CLIENT_IP)
    code = h.sms.last_code(PHONE)
    proof = await handlers.verify_phone(h.deps, PHONE, code)
    assert h.deps.keys.open_phone_proof(proof.token, h.clock()).number == PHONE
    replay = await refusal(handlers.verify_phone(h.deps, PHONE, code))
    assert replay.code == "otp_not_requested"


async def test_verifying_without_a_code_sent() -> None:
    h = harness()
    assert (await refusal(handlers.verify_phone(h.deps, PHONE, "123456"))).code == (
        "otp_not_requested"
    )


async def test_a_code_expires_after_five_minutes() -> None:
    h = harness()
    await handlers.request_code(h.deps, PHONE, CLIENT_IP)
    code = h.sms.last_code(PHONE)
    h.clock.advance(timedelta(minutes=5))
    expired = await refusal(handlers.verify_phone(h.deps, PHONE, code))
    assert isinstance(expired, ChallengeFailed) and expired.code == "otp_expired"


async def test_a_code_is_still_good_just_before_it_expires() -> None:
    h = harness()
    await handlers.request_code(h.deps, PHONE, CLIENT_IP)
    h.clock.advance(timedelta(minutes=5) - timedelta(seconds=1))
    await handlers.verify_phone(h.deps, PHONE, h.sms.last_code(PHONE))


async def test_five_wrong_codes_lock_the_phone_even_against_the_right_code() -> None:
    h = harness()
    await handlers.request_code(h.deps, PHONE, CLIENT_IP)
    code = h.sms.last_code(PHONE)
    for left in (4, 3, 2, 1):
        refused = await refusal(handlers.verify_phone(h.deps, PHONE, wrong(code)))
        assert refused.code == "otp_incorrect" and f"{left} attempt" in refused.message
    locked = await refusal(handlers.verify_phone(h.deps, PHONE, wrong(code)))
    assert isinstance(locked, TooManyRequests) and locked.code == "otp_locked"
    assert locked.retry_after_seconds == 15 * 60

    assert (await refusal(handlers.verify_phone(h.deps, PHONE, code))).code == "otp_locked"
    # No new code while locked either.
    h.clock.advance(timedelta(minutes=10))
    assert (await refusal(handlers.request_code(h.deps, PHONE, CLIENT_IP))).code == "otp_locked"
    # After the lock, a new code works.
    h.clock.advance(timedelta(minutes=5))
    await handlers.request_code(h.deps, PHONE, CLIENT_IP)
    await handlers.verify_phone(h.deps, PHONE, h.sms.last_code(PHONE))


async def test_a_new_code_replaces_the_old_one_and_resets_attempts() -> None:
    h = harness()
    await handlers.request_code(h.deps, PHONE, CLIENT_IP)
    old = h.sms.last_code(PHONE)
    for _ in range(4):
        await refusal(handlers.verify_phone(h.deps, PHONE, wrong(old)))
    h.clock.advance(timedelta(seconds=60))
    await handlers.request_code(h.deps, PHONE, CLIENT_IP)
    new = h.sms.last_code(PHONE)
    if new != old:
        assert (await refusal(handlers.verify_phone(h.deps, PHONE, old))).code == "otp_incorrect"
    await handlers.verify_phone(h.deps, PHONE, new)


async def test_a_resend_must_wait_for_the_cooldown() -> None:
    h = harness()
    await handlers.request_code(h.deps, PHONE, CLIENT_IP)
    h.clock.advance(timedelta(seconds=59))
    too_soon = await refusal(handlers.request_code(h.deps, PHONE, CLIENT_IP))
    assert isinstance(too_soon, TooManyRequests) and too_soon.code == "otp_resend_too_soon"
    assert too_soon.retry_after_seconds == 1
    assert len(h.sms.sent) == 1
    h.clock.advance(timedelta(seconds=1))
    await handlers.request_code(h.deps, PHONE, CLIENT_IP)
    assert len(h.sms.sent) == 2


async def test_codes_per_phone_are_limited_per_hour() -> None:
    h = harness()
    for _ in range(5):
        await handlers.request_code(h.deps, PHONE, CLIENT_IP)
        h.clock.advance(timedelta(seconds=61))
    limited = await refusal(handlers.request_code(h.deps, PHONE, CLIENT_IP))
    assert isinstance(limited, TooManyRequests) and limited.code == "rate_limited"
    assert len(h.sms.sent) == 5
    # Another phone from elsewhere is unaffected.
    await handlers.request_code(h.deps, "13912345678", "198.51.100.1")


async def test_codes_per_client_ip_are_limited_across_phones() -> None:
    policy = IdentityPolicy(otp_per_ip=RateLimit("otp-ip", 3, timedelta(hours=1)))
    h = harness(policy)
    for n in range(3):
        await handlers.request_code(h.deps, f"1381234560{n}", CLIENT_IP)
    limited = await refusal(handlers.request_code(h.deps, "13812345609", CLIENT_IP))
    assert limited.code == "rate_limited"
    await handlers.request_code(h.deps, "13812345609", "198.51.100.1")


async def test_the_limit_slides_instead_of_resetting_at_a_window_boundary() -> None:
    policy = IdentityPolicy(otp_per_ip=RateLimit("otp-ip", 4, timedelta(hours=1)))
    h = harness(policy)
    # Move to the last minute of a fixed window, use the whole allowance there...
    now = h.clock()
    h.clock.advance(timedelta(seconds=3600 - now.timestamp() % 3600 - 60))
    for n in range(4):
        await handlers.request_code(h.deps, f"1381234560{n}", CLIENT_IP)
    # ...then cross into the next window: a fixed window would allow 4 more at once.
    h.clock.advance(timedelta(minutes=2))
    limited = await refusal(handlers.request_code(h.deps, "13812345608", CLIENT_IP))
    assert limited.code == "rate_limited"
    # Once the old window has mostly slid out, there is room again.
    h.clock.advance(timedelta(minutes=40))
    await handlers.request_code(h.deps, "13812345609", CLIENT_IP)


async def test_rate_limits_are_by_phone_not_by_spelling() -> None:
    h = harness()
    await handlers.request_code(h.deps, "138 1234 5678", CLIENT_IP)
    too_soon = await refusal(handlers.request_code(h.deps, "+8613812345678", CLIENT_IP))
    assert too_soon.code == "otp_resend_too_soon"


async def test_invalid_phone_sends_nothing() -> None:
    h: Harness = harness()
    assert (await refusal(handlers.request_code(h.deps, "12345", CLIENT_IP))).code == (
        "invalid_phone"
    )
    assert h.sms.sent == []
