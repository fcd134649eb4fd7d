"""Key handling: settings keys, token MACs, the signing/verification pair."""

from __future__ import annotations

import base64

import pytest

from kami_identity.adapters.crypto import FieldCipher, Keyring, decode_key
from kami_identity.app import check_key_pair
from kami_web.testing import AuthKeys


def test_keys_from_settings_must_be_base64_of_enough_bytes() -> None:
    assert decode_key(base64.b64encode(b"k" * 32).decode(), name="K", length=32) == b"k" * 32
    assert decode_key(base64.urlsafe_b64encode(b"\xfb" * 40).decode(), name="K") == b"\xfb" * 40
    with pytest.raises(ValueError, match="at least 32"):
        decode_key(base64.b64encode(b"short").decode(), name="K")
    with pytest.raises(ValueError, match="32 bytes"):
        decode_key(base64.b64encode(b"k" * 48).decode(), name="K", length=32)


def test_refresh_tokens_from_another_key_are_not_authentic() -> None:
    token = Keyring(b"a" * 32).refresh_token("family", 3)
    assert Keyring(b"a" * 32).open_refresh_token(token) == ("family", 3)
    assert Keyring(b"b" * 32).open_refresh_token(token) is None


def test_sealed_data_needs_the_same_key() -> None:
    sealed = FieldCipher(b"a" * 32).seal("110101199003071234", owner="u1")
    with pytest.raises(ValueError, match="owner"):
        FieldCipher(b"b" * 32).open(sealed, owner="u1")


def test_identity_refuses_a_public_key_that_does_not_match_its_signing_key() -> None:
    keys, other = AuthKeys.generate(), AuthKeys.generate()
    check_key_pair(keys.private_key_pem, keys.public_key_pem)
    with pytest.raises(ValueError, match="does not match"):
        check_key_pair(keys.private_key_pem, other.public_key_pem)
