"""Encryption of card keys at rest (DESIGN §6).

Each pool (offer) has its own random 256-bit data key; keys are sealed with
AES-256-GCM under it, bound to their offer and key id as associated data, so
a ciphertext copied onto another key's document does not open. Data keys are
stored only wrapped (AES-256-GCM) by the master key from settings. A keyed
HMAC-SHA256 fingerprint recognises a key uploaded twice without decrypting.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kami_inventory.ports import DataKeyStore, WrappedKey

NONCE_BYTES = 12


class KeyCipher:
    def __init__(self, master_key: bytes, fingerprint_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("the master key must be 32 bytes (AES-256)")
        if len(fingerprint_key) < 32:
            raise ValueError("the fingerprint key must be at least 32 bytes")
        self._master = AESGCM(master_key)
        self._fingerprint_key = fingerprint_key
        # Names the master key a data key was wrapped with, revealing nothing of it.
        self.master_key_id = hmac.new(
            master_key, b"kami-inventory/master-key-id", hashlib.sha256
        ).hexdigest()[:16]

    @staticmethod
    def new_data_key() -> bytes:
        return AESGCM.generate_key(bit_length=256)

    def wrap(self, offer_id: str, data_key: bytes) -> WrappedKey:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._master.encrypt(nonce, data_key, _pool_aad(offer_id))
        return WrappedKey(nonce + sealed, self.master_key_id)

    def unwrap(self, offer_id: str, wrapped: WrappedKey) -> bytes:
        if wrapped.master_key_id != self.master_key_id:
            raise WrongMasterKey(
                f"the data key of offer {offer_id} was wrapped by master key "
                f"{wrapped.master_key_id}, not by the configured {self.master_key_id}"
            )
        blob = wrapped.blob
        return self._master.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _pool_aad(offer_id))

    @staticmethod
    def seal(data_key: bytes, offer_id: str, key_id: str, secret: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(data_key).encrypt(nonce, secret.encode(), _key_aad(offer_id, key_id))

    @staticmethod
    def open(data_key: bytes, offer_id: str, key_id: str, sealed: bytes) -> str:
        """The secret; raises `cryptography.exceptions.InvalidTag` if tampered with."""
        plain = AESGCM(data_key).decrypt(
            sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _key_aad(offer_id, key_id)
        )
        return plain.decode()

    def fingerprint(self, secret: str) -> str:
        return hmac.new(
            self._fingerprint_key, b"kami-inventory/key:" + secret.encode(), hashlib.sha256
        ).hexdigest()

    def digest(self, *parts: str) -> str:
        """A keyed digest of an upload, to tell a retry from a different file
        under the same import id (an unkeyed hash of a one-key file would be a
        hash of the key)."""
        mac = hmac.new(self._fingerprint_key, b"kami-inventory/upload", hashlib.sha256)
        for part in parts:
            encoded = part.encode()
            mac.update(len(encoded).to_bytes(8, "big"))
            mac.update(encoded)
        return mac.hexdigest()


class WrongMasterKey(Exception):
    """A pool's data key was wrapped by a master key this process does not hold."""


def _pool_aad(offer_id: str) -> bytes:
    return f"kami-inventory/pool/{offer_id}".encode()


def _key_aad(offer_id: str, key_id: str) -> bytes:
    return f"kami-inventory/key/{offer_id}/{key_id}".encode()


@dataclass
class KeyRing:
    """Each pool's data key: created on the pool's first import, unwrapped once
    per process."""

    cipher: KeyCipher
    store: DataKeyStore

    def __post_init__(self) -> None:
        self._unwrapped: dict[str, bytes] = {}

    async def data_key(self, offer_id: str, *, create: bool = False) -> bytes | None:
        cached = self._unwrapped.get(offer_id)
        if cached is not None:
            return cached
        wrapped = await self.store.get(offer_id)
        if wrapped is None:
            if not create:
                return None
            # Concurrent first imports each propose a key; the store keeps one.
            proposed = self.cipher.wrap(offer_id, self.cipher.new_data_key())
            wrapped = await self.store.put_if_absent(offer_id, proposed)
        data_key = self.cipher.unwrap(offer_id, wrapped)
        self._unwrapped[offer_id] = data_key
        return data_key
