"""AES-256-GCM for the key vault (DESIGN §6).

Each secret is sealed with a fresh 96-bit nonce under the vault key from
`KAMI_DELIVERY_VAULT_KEY`; the owner, order and key id are the associated
data, so a ciphertext moved onto another entry does not open. The stored
form is `version byte || nonce || ciphertext+tag`: the version byte names
the key generation, so the vault key can be rotated later.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kami_delivery.domain.keys import CardSecret

_VERSION = 1
_NONCE_BYTES = 12


class VaultSealBroken(Exception):
    """A sealed secret did not open: wrong key, wrong entry, or altered."""


def decode_vault_key(encoded: str) -> bytes:
    """The 32-byte vault key from its base64 (standard or URL-safe) setting."""
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_")
    except (binascii.Error, ValueError):
        raise ValueError("KAMI_DELIVERY_VAULT_KEY is not base64") from None
    if len(key) != 32:
        raise ValueError(f"KAMI_DELIVERY_VAULT_KEY must decode to 32 bytes, got {len(key)}")
    return key


class VaultCipher:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("AES-256-GCM needs a 32-byte key")
        self._aead = AESGCM(key)

    def seal(self, secret: CardSecret, *, context: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.reveal().encode(), context.encode())
        return bytes([_VERSION]) + nonce + sealed

    def open(self, sealed: bytes, *, context: str) -> CardSecret:
        if len(sealed) < 1 + _NONCE_BYTES + 16 or sealed[0] != _VERSION:
            raise VaultSealBroken("not a sealed vault secret of a known version")
        nonce, body = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
        try:
            plain = self._aead.decrypt(nonce, body, context.encode())
        except InvalidTag:
            raise VaultSealBroken("the sealed secret does not open under this entry") from None
        return CardSecret(plain.decode())
