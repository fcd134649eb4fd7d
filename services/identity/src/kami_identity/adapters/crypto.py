"""Keys and what identity does with them.

- `Keyring`: keyed hashes (HMAC-SHA256) from one master key, with a separate
  sub-key per purpose: ID-number fingerprints (detect a reused ID number
  without decrypting), OTP hashes (a 6-digit code has too few values for an
  unkeyed hash), and the MACs of refresh tokens and phone proofs.
- `FieldCipher`: AES-256-GCM for personal data at rest (ID number, legal
  name, L2 evidence). The record's owner goes into the associated data, so a
  ciphertext copied onto another user's record does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kami_identity.domain.phone import Phone
from kami_identity.domain.rejections import InvalidInput, Unauthenticated

_NONCE_BYTES = 12


def decode_key(encoded: str, *, name: str, length: int | None = None) -> bytes:
    """A key given in settings as base64 (standard or URL-safe)."""
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=False)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name} is not base64") from None
    if length is not None and len(key) != length:
        raise ValueError(f"{name} must decode to {length} bytes, got {len(key)}")
    if len(key) < 32:
        raise ValueError(f"{name} must decode to at least 32 bytes")
    return key


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Keyring:
    def __init__(self, master_key: bytes) -> None:
        def derive(purpose: str) -> bytes:
            label = f"kami-identity/{purpose}".encode()
            return hmac.new(master_key, label, hashlib.sha256).digest()

        self._id_key = derive("id-number")
        self._otp_key = derive("otp")
        self._refresh_key = derive("refresh-token")
        self._proof_key = derive("phone-proof")

    def id_fingerprint(self, id_number: str) -> str:
        return hmac.new(self._id_key, id_number.encode(), hashlib.sha256).hexdigest()

    def otp_hash(self, phone: str, salt: str, code: str) -> str:
        message = f"{phone}:{salt}:{code}".encode()
        return hmac.new(self._otp_key, message, hashlib.sha256).hexdigest()

    # Refresh tokens: `rt1.<family>.<generation>.<mac>`. Authentic tokens cannot
    # be minted without the key, and the store keeps no token at all, only the
    # family's current generation.

    def refresh_token(self, family_id: str, generation: int) -> str:
        body = f"rt1.{family_id}.{generation}"
        return f"{body}.{self._mac(self._refresh_key, body)}"

    def open_refresh_token(self, token: str) -> tuple[str, int] | None:
        """`(family_id, generation)` of an authentic token, else None."""
        body, _, mac = token.rpartition(".")
        parts = body.split(".")
        if len(parts) != 3 or parts[0] != "rt1" or not parts[2].isdigit():
            return None
        if not hmac.compare_digest(mac, self._mac(self._refresh_key, body)):
            return None
        return parts[1], int(parts[2])

    # Phone proofs: `pv1.<phone>.<expires unix>.<mac>`, handed out when an OTP
    # checks out and spent by registration (the phone can own one account, so
    # a proof cannot register twice).

    def phone_proof(self, phone: Phone, expires_at: datetime) -> str:
        body = f"pv1.{phone.number}.{int(expires_at.timestamp())}"
        return f"{body}.{self._mac(self._proof_key, body)}"

    def open_phone_proof(self, token: str, now: datetime) -> Phone:
        invalid = Unauthenticated(
            "invalid_verification_token", "The phone verification token is not valid."
        )
        body, _, mac = token.rpartition(".")
        parts = body.split(".")
        if len(parts) != 3 or parts[0] != "pv1" or not parts[2].isdigit():
            raise invalid
        if not hmac.compare_digest(mac, self._mac(self._proof_key, body)):
            raise invalid
        if now.timestamp() >= int(parts[2]):
            raise Unauthenticated(
                "verification_token_expired",
                "The phone verification has expired; verify the phone again.",
            )
        try:
            return Phone.parse(parts[1])
        except InvalidInput:
            raise invalid from None

    @staticmethod
    def _mac(key: bytes, body: str) -> str:
        return _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())


class FieldCipher:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("AES-256-GCM needs a 32-byte key")
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, *, owner: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext.encode(), owner.encode())

    def open(self, sealed: bytes, *, owner: str) -> str:
        try:
            plain = self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], owner.encode())
        except InvalidTag:
            raise ValueError("sealed data does not belong to this owner or was altered") from None
        return plain.decode()
