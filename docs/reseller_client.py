"""A reseller's client for Kami's signed API: copy it, or read it as the
specification of the signature (docs/reseller.md).

    python docs/reseller_client.py --base-url http://127.0.0.1:8109 \\
        --key-id rk_... --secret rs_... GET /v1/catalogue
    python docs/reseller_client.py ... POST /v1/orders \\
        '{"client_order_id": "shop-1001", "offer_id": "...", "quantity": 1}'

Standard library only. `signed_headers` is the whole protocol; `call` sends one
request; `verify_webhook` is what a reseller's webhook receiver runs.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import secrets
import sys
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit


def canonical_query(raw_query: str) -> str:
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def signed_headers(
    key_id: str,
    secret: str,
    method: str,
    path_and_query: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The four headers that sign one request."""
    parts = urlsplit(path_and_query)
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = nonce or secrets.token_urlsafe(18)
    message = "\n".join(
        [
            "KAMI-HMAC-SHA256",
            method.upper(),
            parts.path,
            canonical_query(parts.query),
            str(timestamp),
            nonce,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    signature = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return {
        "X-Kami-Key": key_id,
        "X-Kami-Timestamp": str(timestamp),
        "X-Kami-Nonce": nonce,
        "X-Kami-Signature": signature,
    }


def call(
    base_url: str,
    key_id: str,
    secret: str,
    method: str,
    path_and_query: str,
    payload: Any = None,
    *,
    timeout: float = 10.0,
) -> tuple[int, Any]:
    """Send one signed request; the status and the decoded JSON answer."""
    body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
    headers = signed_headers(key_id, secret, method, path_and_query, body)
    if payload is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(  # noqa: S310 - the reseller's own Kami URL
        base_url.rstrip("/") + path_and_query, data=body or None, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, json.loads(raw) if raw else None


def verify_webhook(secret: str, header: str, body: bytes, *, tolerance: int = 300) -> bool:
    """Check `X-Kami-Webhook-Signature: t=<unix>,v1=<hex>` over `<t>.` + the raw body."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, given = fields.get("t", ""), fields.get("v1", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), given)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Call Kami's signed reseller API.")
    parser.add_argument("--base-url", default="http://127.0.0.1:8109")
    parser.add_argument("--key-id", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("method", choices=["GET", "POST", "PUT", "DELETE"])
    parser.add_argument("path", help="path and query, e.g. /v1/catalogue?limit=5")
    parser.add_argument("json", nargs="?", help="the JSON body")
    args = parser.parse_args(argv)
    payload = json.loads(args.json) if args.json else None
    status, answer = call(args.base_url, args.key_id, args.secret, args.method, args.path, payload)
    print(status)
    print(json.dumps(answer, ensure_ascii=False, indent=2))
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
