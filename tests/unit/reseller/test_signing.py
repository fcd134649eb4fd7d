"""The request signature covers method, path, query, time, nonce and body;
the clock window is ±5 minutes; the webhook signature verifies and rejects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kami_reseller.domain import signing
from kami_reseller.domain.signing import SignatureRefusal, SignatureRefused

SECRET = "s3cr3t-0123456789abcdef0123456789abcdef"
NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
TS = str(int(NOW.timestamp()))
NONCE = "nonce-0123456789abcdef"
BODY = b'{"offer_id":"o-1","quantity":2}'


def headers(signature: str, *, ts: str = TS, nonce: str = NONCE) -> dict[str, str]:
    return {
        "X-Kami-Key": "rk_1",
        "X-Kami-Timestamp": ts,
        "X-Kami-Nonce": nonce,
        "X-Kami-Signature": signature,
    }


def good() -> str:
    return signing.sign(SECRET, "POST", "/v1/orders", "b=2&a=1", TS, NONCE, BODY)


def test_a_correctly_signed_request_passes() -> None:
    signed = signing.read_headers(headers(good()))
    signing.check_timestamp(signed, NOW)
    signing.check_signature(signed, SECRET, "POST", "/v1/orders", "a=1&b=2", BODY)


@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("PUT", "/v1/orders", "a=1&b=2", BODY),
        ("POST", "/v1/orders/x", "a=1&b=2", BODY),
        ("POST", "/v1/orders", "a=1&b=3", BODY),
        ("POST", "/v1/orders", "a=1", BODY),
        ("POST", "/v1/orders", "a=1&b=2", b'{"offer_id":"o-1","quantity":20}'),
        ("POST", "/v1/orders", "a=1&b=2", b""),
    ],
)
def test_any_change_to_the_request_breaks_the_signature(
    method: str, path: str, query: str, body: bytes
) -> None:
    signed = signing.read_headers(headers(good()))
    with pytest.raises(SignatureRefused) as refused:
        signing.check_signature(signed, SECRET, method, path, query, body)
    assert refused.value.reason is SignatureRefusal.BAD_SIGNATURE


def test_another_secret_does_not_verify() -> None:
    signed = signing.read_headers(headers(good()))
    with pytest.raises(SignatureRefused):
        signing.check_signature(signed, SECRET + "x", "POST", "/v1/orders", "a=1&b=2", BODY)


def test_the_nonce_and_timestamp_are_signed() -> None:
    other_nonce = signing.read_headers(headers(good(), nonce="another-nonce-0123456"))
    with pytest.raises(SignatureRefused):
        signing.check_signature(other_nonce, SECRET, "POST", "/v1/orders", "a=1&b=2", BODY)
    other_ts = signing.read_headers(headers(good(), ts=str(int(NOW.timestamp()) + 1)))
    with pytest.raises(SignatureRefused):
        signing.check_signature(other_ts, SECRET, "POST", "/v1/orders", "a=1&b=2", BODY)


def test_the_canonical_query_sorts_and_encodes() -> None:
    assert signing.canonical_query_of("b=x%20y&a=2&a=1") == "a=1&a=2&b=x%20y"
    assert signing.canonical_query_of("q=%E5%8D%A1") == "q=%E5%8D%A1"
    assert signing.canonical_query_of("") == ""


@pytest.mark.parametrize(
    ("skew", "accepted"),
    [(0, True), (299, True), (-299, True), (300, True), (301, False), (-301, False)],
)
def test_the_clock_window_is_five_minutes_either_side(skew: int, accepted: bool) -> None:
    signed = signing.read_headers(headers(good(), ts=str(int(NOW.timestamp()) + skew)))
    if accepted:
        signing.check_timestamp(signed, NOW)
    else:
        with pytest.raises(SignatureRefused) as refused:
            signing.check_timestamp(signed, NOW)
        assert refused.value.reason is SignatureRefusal.STALE_TIMESTAMP


def test_a_nonce_is_kept_as_long_as_its_timestamp_is_accepted() -> None:
    signed = signing.read_headers(headers(good()))
    assert signing.nonce_kept_until(signed) == NOW + timedelta(minutes=5)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"X-Kami-Signature": ""}, SignatureRefusal.MISSING_HEADERS),
        ({"X-Kami-Nonce": "short"}, SignatureRefusal.MALFORMED),
        ({"X-Kami-Timestamp": "2026-12-07"}, SignatureRefusal.MALFORMED),
        ({"X-Kami-Signature": "ABC"}, SignatureRefusal.MALFORMED),
    ],
)
def test_malformed_headers_are_refused_with_a_reason(
    changes: dict[str, str], reason: SignatureRefusal
) -> None:
    with pytest.raises(SignatureRefused) as refused:
        signing.read_headers({**headers(good()), **changes})
    assert refused.value.reason is reason
    assert refused.value.message


def test_headers_are_read_case_insensitively() -> None:
    lowered = {name.lower(): value for name, value in headers(good()).items()}
    assert signing.read_headers(lowered).key_id == "rk_1"


def test_a_webhook_signature_verifies_and_a_tampered_body_does_not() -> None:
    header = signing.webhook_signature(SECRET, int(NOW.timestamp()), BODY)
    assert signing.verify_webhook(SECRET, header, BODY, NOW)
    assert not signing.verify_webhook(SECRET, header, BODY + b" ", NOW)
    assert not signing.verify_webhook("other", header, BODY, NOW)
    assert not signing.verify_webhook(SECRET, header, BODY, NOW + timedelta(minutes=6))
    assert not signing.verify_webhook(SECRET, "t=1", BODY, NOW)


# -- the example client in docs/ agrees with the server ------------------------------------


def _example_client() -> object:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "docs" / "reseller_client.py"
    spec = importlib.util.spec_from_file_location("reseller_client", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_documented_client_signs_what_the_server_verifies() -> None:
    client: object = _example_client()
    made = client.signed_headers(  # type: ignore[attr-defined]
        "rk_1", SECRET, "post", "/v1/orders?b=2&a=1", BODY, timestamp=int(TS), nonce=NONCE
    )
    signed = signing.read_headers(made)
    signing.check_timestamp(signed, NOW)
    signing.check_signature(signed, SECRET, "POST", "/v1/orders", "b=2&a=1", BODY)
    with pytest.raises(SignatureRefused):
        signing.check_signature(signed, SECRET, "POST", "/v1/orders", "b=2&a=1", BODY + b" ")


def test_the_documented_webhook_check_accepts_ours_and_refuses_a_tampered_body() -> None:
    import time

    client: object = _example_client()
    header = signing.webhook_signature(SECRET, int(time.time()), BODY)
    assert client.verify_webhook(SECRET, header, BODY)  # type: ignore[attr-defined]
    assert not client.verify_webhook(SECRET, header, BODY + b"x")  # type: ignore[attr-defined]
