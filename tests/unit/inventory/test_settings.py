"""Inventory refuses to start without sound keys."""

from __future__ import annotations

import base64
import os

import pytest
from pydantic import ValidationError

from kami_inventory.settings import InventorySettings
from tests.unit.inventory.fakes import b64_key


def test_keys_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    master = os.urandom(32)
    monkeypatch.setenv("KAMI_INVENTORY_MASTER_KEY", base64.b64encode(master).decode())
    monkeypatch.setenv("KAMI_INVENTORY_FINGERPRINT_KEY", b64_key(48))
    monkeypatch.setenv("KAMI_INVENTORY_REVEAL_SERVICES", '["delivery", "aftersales"]')
    settings = InventorySettings()
    assert settings.master_key == master
    assert (settings.http_port, settings.database_name) == (8103, "kami_inventory")
    assert settings.inventory_reveal_services == ["delivery", "aftersales"]
    assert base64.b64encode(master).decode() not in repr(settings)


@pytest.mark.parametrize(
    ("master", "fingerprint", "complaint"),
    [
        (None, b64_key(), "inventory_master_key"),
        (b64_key(16), b64_key(), "exactly 32 bytes"),
        ("not base64!", b64_key(), "must be base64"),
        (b64_key(), b64_key(16), "at least 32 bytes"),
    ],
)
def test_missing_or_weak_keys_are_refused(
    monkeypatch: pytest.MonkeyPatch, master: str | None, fingerprint: str, complaint: str
) -> None:
    monkeypatch.delenv("KAMI_INVENTORY_MASTER_KEY", raising=False)
    if master is not None:
        monkeypatch.setenv("KAMI_INVENTORY_MASTER_KEY", master)
    monkeypatch.setenv("KAMI_INVENTORY_FINGERPRINT_KEY", fingerprint)
    with pytest.raises(ValidationError, match=complaint):
        InventorySettings()
