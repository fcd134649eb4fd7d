"""API secrets at rest: AES-256-GCM under the service key, the key id as
associated data (a ciphertext copied onto another credential fails to open)."""

from __future__ import annotations

import os
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class SecretCipher:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, key_id: str, secret: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret.encode(), key_id.encode())

    def open(self, key_id: str, sealed: bytes) -> str:
        nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        return self._aead.decrypt(nonce, ciphertext, key_id.encode()).decode()


def new_key_id() -> str:
    return "rk_" + secrets.token_hex(12)


def new_secret() -> str:
    return "rs_" + secrets.token_urlsafe(32)
