"""How a reseller signs a request, and how the service checks it (docs/reseller.md).

A signed request carries four headers:

- `X-Kami-Key`: the credential's key id;
- `X-Kami-Timestamp`: Unix seconds when it was signed;
- `X-Kami-Nonce`: 16-64 characters `[A-Za-z0-9_-]`, never used twice;
- `X-Kami-Signature`: lowercase hex HMAC-SHA256, keyed by the credential's
  secret, of the canonical request:

```
KAMI-HMAC-SHA256
<METHOD>
<path>
<canonical query>
<timestamp>
<nonce>
<hex SHA-256 of the body bytes>
```

The canonical query is the query's `name=value` pairs, each percent-encoded
(RFC 3986 unreserved characters kept), sorted, joined by `&`. So the method,
path, every query parameter, the time, the nonce and every byte of the body
are covered; changing any of them changes the signature.

Pure: the caller passes the time in. The nonce's single use is the store's
job (a unique insert); this module only says how long a nonce must be kept.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from urllib.parse import parse_qsl, quote

ALGORITHM = "KAMI-HMAC-SHA256"
KEY_HEADER = "X-Kami-Key"
TIMESTAMP_HEADER = "X-Kami-Timestamp"
NONCE_HEADER = "X-Kami-Nonce"
SIGNATURE_HEADER = "X-Kami-Signature"

# A signature is accepted this long either side of the server's clock.
CLOCK_SKEW = timedelta(minutes=5)
NONCE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_SIGNATURE_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_TIMESTAMP_PATTERN = re.compile(r"^[0-9]{1,12}$")


class SignatureRefusal(StrEnum):
    """Why a signed request was refused (each a 401 with this code)."""

    MISSING_HEADERS = "signature_headers_missing"
    MALFORMED = "signature_malformed"
    UNKNOWN_KEY = "unknown_key"
    STALE_TIMESTAMP = "timestamp_outside_window"
    BAD_SIGNATURE = "signature_mismatch"
    REPLAYED_NONCE = "nonce_replayed"


class SignatureRefused(Exception):
    def __init__(self, reason: SignatureRefusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    encoded = sorted((quote(name, safe="-_.~"), quote(value, safe="-_.~")) for name, value in pairs)
    return "&".join(f"{name}={value}" for name, value in encoded)


def canonical_query_of(raw_query: str) -> str:
    """The canonical form of a raw query string (`a=1&b=x%20y`)."""
    return canonical_query(parse_qsl(raw_query, keep_blank_values=True))


def canonical_request(
    method: str, path: str, raw_query: str, timestamp: str, nonce: str, body: bytes
) -> str:
    return "\n".join(
        (
            ALGORITHM,
            method.upper(),
            path,
            canonical_query_of(raw_query),
            timestamp,
            nonce,
            body_digest(body),
        )
    )


def sign(
    secret: str, method: str, path: str, raw_query: str, timestamp: str, nonce: str, body: bytes
) -> str:
    message = canonical_request(method, path, raw_query, timestamp, nonce, body)
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class SignedHeaders:
    key_id: str
    timestamp: str
    nonce: str
    signature: str

    @property
    def signed_at_seconds(self) -> int:
        return int(self.timestamp)


def read_headers(headers: Mapping[str, str]) -> SignedHeaders:
    """The four signature headers, checked for shape (not yet for truth)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    names = (KEY_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)
    values = [lowered.get(name.lower()) for name in names]
    missing = [name for name, value in zip(names, values, strict=True) if not value]
    if missing:
        raise SignatureRefused(
            SignatureRefusal.MISSING_HEADERS, f"missing signature headers: {', '.join(missing)}"
        )
    key_id, timestamp, nonce, signature = (value or "" for value in values)
    if not _TIMESTAMP_PATTERN.match(timestamp):
        raise SignatureRefused(
            SignatureRefusal.MALFORMED, f"{TIMESTAMP_HEADER} must be Unix seconds"
        )
    if not NONCE_PATTERN.match(nonce):
        raise SignatureRefused(
            SignatureRefusal.MALFORMED, f"{NONCE_HEADER} must be 16-64 characters [A-Za-z0-9_-]"
        )
    if not _SIGNATURE_PATTERN.match(signature):
        raise SignatureRefused(
            SignatureRefusal.MALFORMED, f"{SIGNATURE_HEADER} must be 64 lowercase hex digits"
        )
    return SignedHeaders(key_id=key_id, timestamp=timestamp, nonce=nonce, signature=signature)


def check_timestamp(signed: SignedHeaders, now: datetime) -> None:
    skew = abs(now.timestamp() - signed.signed_at_seconds)
    if skew > CLOCK_SKEW.total_seconds():
        raise SignatureRefused(
            SignatureRefusal.STALE_TIMESTAMP,
            f"{TIMESTAMP_HEADER} is {int(skew)} s from the server's clock; "
            f"at most {int(CLOCK_SKEW.total_seconds())} s is accepted",
        )


def check_signature(
    signed: SignedHeaders, secret: str, method: str, path: str, raw_query: str, body: bytes
) -> None:
    expected = sign(secret, method, path, raw_query, signed.timestamp, signed.nonce, body)
    if not hmac.compare_digest(expected, signed.signature):
        raise SignatureRefused(
            SignatureRefusal.BAD_SIGNATURE,
            "the signature does not match the request (method, path, query, "
            "timestamp, nonce or body differ from what was signed)",
        )


def nonce_kept_until(signed: SignedHeaders) -> datetime:
    """Until when a nonce must be remembered: past this its timestamp is refused anyway."""
    return datetime.fromtimestamp(signed.signed_at_seconds, UTC) + CLOCK_SKEW


# -- webhooks -------------------------------------------------------------------------

WEBHOOK_SIGNATURE_HEADER = "X-Kami-Webhook-Signature"


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`."""
    message = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_webhook(
    secret: str, header: str, body: bytes, now: datetime, tolerance: timedelta = CLOCK_SKEW
) -> bool:
    """What a reseller's receiver does with a webhook (docs/reseller.md)."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, given = parts.get("t", ""), parts.get("v1", "")
    if not _TIMESTAMP_PATTERN.match(timestamp) or not given:
        return False
    if abs(now.timestamp() - int(timestamp)) > tolerance.total_seconds():
        return False
    expected = webhook_signature(secret, int(timestamp), body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)
