"""Key transitions, and encryption at rest."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

import pytest
from cryptography.exceptions import InvalidTag

from kami_events.catalogue.inventory import BlockReason, VoidReason
from kami_inventory.adapters.crypto import KeyCipher, KeyRing, WrongMasterKey
from kami_inventory.domain import keys as t
from kami_inventory.domain.keys import KeyStatus, PoolKey, secret_hint
from tests.unit.inventory.fakes import FakeDataKeys

EXPIRY = datetime(2027, 1, 1, tzinfo=UTC)
UNTIL = datetime(2026, 1, 1, 0, 17, tzinfo=UTC)


def key(status: KeyStatus = KeyStatus.AVAILABLE, order_id: str | None = None) -> PoolKey:
    return PoolKey("k1", "offer-1", status, 3, EXPIRY, order_id=order_id)


def test_reserving_takes_only_an_available_key_and_names_the_order() -> None:
    reserved = t.reserve("order-1", UNTIL).apply(key())
    assert (reserved.status, reserved.order_id, reserved.reserved_until, reserved.gen) == (
        KeyStatus.RESERVED,
        "order-1",
        UNTIL,
        4,
    )
    for status in (KeyStatus.RESERVED, KeyStatus.SOLD, KeyStatus.BLOCKED, KeyStatus.VOIDED):
        assert not t.reserve("order-2", UNTIL).allows(key(status, "order-1"))
    with pytest.raises(ValueError, match="reserve does not apply"):
        t.reserve("order-2", UNTIL).apply(reserved)


def test_an_order_releases_sells_and_voids_only_its_own_keys() -> None:
    mine = key(KeyStatus.RESERVED, "order-1")
    theirs = key(KeyStatus.RESERVED, "order-2")
    assert t.release("order-1").allows(mine) and not t.release("order-1").allows(theirs)
    released = t.release("order-1").apply(mine)
    assert (released.status, released.order_id, released.reserved_until) == (
        KeyStatus.AVAILABLE,
        None,
        None,
    )
    sold = t.sell("order-1").apply(mine)
    assert (sold.status, sold.order_id) == (KeyStatus.SOLD, "order-1")
    assert not t.sell("order-2").allows(mine)
    voided = t.void_for_order("order-1", VoidReason.CHARGEBACK).apply(sold)
    assert (voided.status, voided.order_id, voided.reason) == (
        KeyStatus.VOIDED,
        "order-1",
        "chargeback",
    )
    assert not t.void_for_order("order-2", VoidReason.CHARGEBACK).allows(sold)
    assert not t.void_for_order("order-1", VoidReason.CHARGEBACK).allows(key())


def test_sellers_void_and_blocks_take_only_available_keys() -> None:
    assert t.void_by_seller().apply(key()).reason == "seller_voided"
    assert not t.void_by_seller().allows(key(KeyStatus.RESERVED, "order-1"))
    assert not t.void_by_seller().allows(key(KeyStatus.SOLD, "order-1"))
    blocked = t.block(BlockReason.NEAR_EXPIRY).apply(key())
    assert (blocked.status, blocked.reason) == (KeyStatus.BLOCKED, "near_expiry")
    assert not t.block(BlockReason.EXPIRED).allows(key(KeyStatus.RESERVED, "order-1"))


def test_a_hint_shows_at_most_the_last_four_characters_of_a_long_key() -> None:
    assert secret_hint("ABCD-EFGH-IJKL-MNOP") == "…MNOP"
    assert secret_hint("SHORT-KEY-1") is None


def test_a_sealed_key_opens_only_as_itself() -> None:
    cipher = KeyCipher(os.urandom(32), os.urandom(32))
    data_key = cipher.new_data_key()
    sealed = cipher.seal(data_key, "offer-1", "k1", "卡密-ABCD-1234")
    assert b"ABCD-1234" not in sealed
    assert cipher.open(data_key, "offer-1", "k1", sealed) == "卡密-ABCD-1234"
    # Copied onto another key or pool, or opened with another pool's key: refused.
    with pytest.raises(InvalidTag):
        cipher.open(data_key, "offer-1", "k2", sealed)
    with pytest.raises(InvalidTag):
        cipher.open(data_key, "offer-2", "k1", sealed)
    with pytest.raises(InvalidTag):
        cipher.open(cipher.new_data_key(), "offer-1", "k1", sealed)
    # Two seals of one secret differ (random nonce).
    assert cipher.seal(data_key, "offer-1", "k1", "same") != cipher.seal(
        data_key, "offer-1", "k1", "same"
    )


def test_a_data_key_is_wrapped_for_its_pool_by_the_master_key() -> None:
    master = os.urandom(32)
    cipher = KeyCipher(master, os.urandom(32))
    data_key = cipher.new_data_key()
    wrapped = cipher.wrap("offer-1", data_key)
    assert data_key not in wrapped.blob
    assert cipher.unwrap("offer-1", wrapped) == data_key
    with pytest.raises(InvalidTag):
        cipher.unwrap("offer-2", wrapped)
    stranger = KeyCipher(os.urandom(32), os.urandom(32))
    with pytest.raises(WrongMasterKey):
        stranger.unwrap("offer-1", wrapped)


def test_fingerprints_are_stable_and_keyed() -> None:
    fingerprint_key = os.urandom(32)
    one = KeyCipher(os.urandom(32), fingerprint_key)
    two = KeyCipher(os.urandom(32), fingerprint_key)
    other = KeyCipher(os.urandom(32), os.urandom(32))
    assert one.fingerprint("ABCD") == two.fingerprint("ABCD")
    assert one.fingerprint("ABCD") != one.fingerprint("ABCE")
    assert one.fingerprint("ABCD") != other.fingerprint("ABCD")
    assert "ABCD" not in one.fingerprint("ABCD")


def test_weak_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        KeyCipher(os.urandom(16), os.urandom(32))
    with pytest.raises(ValueError, match="at least 32"):
        KeyCipher(os.urandom(32), os.urandom(8))


async def test_a_pool_gets_one_data_key_even_when_first_imports_race() -> None:
    cipher = KeyCipher(os.urandom(32), os.urandom(32))
    store = FakeDataKeys()
    rings = [KeyRing(cipher, store) for _ in range(5)]
    assert await rings[0].data_key("offer-1") is None  # not created by a read
    created = await asyncio.gather(*(r.data_key("offer-1", create=True) for r in rings))
    assert len(set(created)) == 1
    # A fresh process unwraps the stored key.
    assert await KeyRing(cipher, store).data_key("offer-1") == created[0]
