"""The vault cipher and inventory's HTTP client, against an in-process transport."""

from __future__ import annotations

import base64
import json
import logging

import httpx
import pytest

from kami_delivery.adapters.cipher import VaultCipher, VaultSealBroken, decode_vault_key
from kami_delivery.adapters.inventory import HttpInventory
from kami_delivery.adapters.ports import InventoryUnavailable
from kami_delivery.domain.keys import CardSecret, UnavailableStatus
from kami_delivery.settings import DeliverySettings
from kami_web.auth import TokenVerifier
from kami_web.testing import AuthKeys
from tests.unit.delivery.fakes import VAULT_KEY, VAULT_KEY_B64

SECRET = "GAME-1234-5678-ABCD"


def test_sealed_secret_opens_only_under_its_own_entry_and_key() -> None:
    cipher = VaultCipher(VAULT_KEY)
    sealed = cipher.seal(CardSecret(SECRET), context="kami-vault/v1/buyer-1/order-1/k-1")
    assert SECRET.encode() not in sealed
    assert cipher.seal(CardSecret(SECRET), context="c") != cipher.seal(
        CardSecret(SECRET), context="c"
    )
    assert cipher.open(sealed, context="kami-vault/v1/buyer-1/order-1/k-1").reveal() == SECRET
    with pytest.raises(VaultSealBroken):
        cipher.open(sealed, context="kami-vault/v1/buyer-2/order-1/k-1")
    with pytest.raises(VaultSealBroken):
        VaultCipher(bytes(32)).open(sealed, context="kami-vault/v1/buyer-1/order-1/k-1")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(VaultSealBroken):
        cipher.open(tampered, context="kami-vault/v1/buyer-1/order-1/k-1")


def test_vault_key_setting_must_be_32_bytes_of_base64() -> None:
    assert decode_vault_key(VAULT_KEY_B64) == VAULT_KEY
    assert decode_vault_key(base64.urlsafe_b64encode(VAULT_KEY).decode().rstrip("=")) == VAULT_KEY
    with pytest.raises(ValueError, match="32 bytes"):
        decode_vault_key(base64.b64encode(bytes(16)).decode())
    with pytest.raises(ValueError, match="32 bytes"):
        DeliverySettings(delivery_vault_key=base64.b64encode(bytes(31)).decode())
    settings = DeliverySettings(delivery_vault_key=VAULT_KEY_B64)
    assert settings.http_port == 8106 and settings.delivery_inventory_url == "http://127.0.0.1:8103"
    assert VAULT_KEY_B64 not in repr(settings)


class InventoryDouble:
    """Inventory's reveal endpoint as a transport: records requests, answers as told."""

    def __init__(self, keys: AuthKeys) -> None:
        self.verifier = TokenVerifier(keys.settings())
        self.requests: list[httpx.Request] = []
        self.answer: httpx.Response | Exception = httpx.Response(
            200,
            json={
                "keys": [
                    {
                        "key_id": "k-1",
                        "secret": SECRET,
                        "expires_at": "2027-01-01T00:00:00Z",
                        "status": "sold",
                    }
                ],
                "unavailable": [{"key_id": "k-2", "status": "blocked"}],
            },
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def keys() -> AuthKeys:
    return AuthKeys.generate()


def client_for(double: InventoryDouble, keys: AuthKeys) -> HttpInventory:
    http = httpx.AsyncClient(transport=httpx.MockTransport(double))
    return HttpInventory(
        http, base_url="http://inventory:8103/", service_secret=keys.service_secret
    )


async def test_reveal_calls_inventory_with_a_delivery_service_credential(keys: AuthKeys) -> None:
    double = InventoryDouble(keys)
    revealed = await client_for(double, keys).reveal("order/1", ["k-1", "k-2", "k-3"])

    [request] = double.requests
    assert request.method == "POST"
    assert str(request.url) == "http://inventory:8103/internal/orders/order%2F1/keys/reveal"
    assert json.loads(request.content) == {"key_ids": ["k-1", "k-2", "k-3"]}
    scheme, _, token = request.headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    assert double.verifier.verify_service(token).subject == "delivery"

    [key] = revealed.keys
    assert key.key_id == "k-1" and key.secret.reveal() == SECRET
    assert key.expires_at is not None and key.expires_at.year == 2027
    # k-3 was in neither list: unknown to inventory.
    assert revealed.unavailable == {
        "k-2": UnavailableStatus.BLOCKED,
        "k-3": UnavailableStatus.UNKNOWN,
    }


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (httpx.ConnectError("refused"), "did not answer: ConnectError"),
        (httpx.ReadTimeout("slow"), "did not answer: ReadTimeout"),
        (httpx.Response(503, json={"error": {"code": "unavailable"}}), "503: unavailable"),
        (httpx.Response(401, json={"error": {"code": "invalid_token"}}), "401: invalid_token"),
        (httpx.Response(404, text="nope"), "404: no error body"),
        (httpx.Response(200, text="not json"), "malformed"),
        (httpx.Response(200, json={"keys": [{"key_id": "k-1"}]}), "malformed"),
        (
            httpx.Response(
                200,
                json={"keys": [{"key_id": "k-9", "secret": "S", "status": "sold"}]},
            ),
            "not asked for",
        ),
        (
            httpx.Response(
                200,
                json={"keys": [{"key_id": "k-1", "secret": SECRET, "status": "available"}]},
            ),
            "malformed",
        ),
    ],
)
async def test_anything_but_a_good_answer_is_inventory_unavailable(
    keys: AuthKeys, answer: httpx.Response | Exception, says: str
) -> None:
    double = InventoryDouble(keys)
    double.answer = answer
    with pytest.raises(InventoryUnavailable, match=says) as raised:
        await client_for(double, keys).reveal("order-1", ["k-1"])
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize(
    "bad_key",
    [
        {"key_id": "k-1", "secret": SECRET, "expires_at": "yesterday", "status": "sold"},
        # Too long: pydantic's own error would quote the secret itself.
        {"key_id": "k-1", "secret": SECRET * 40, "status": "sold"},
    ],
)
async def test_secrets_in_a_malformed_answer_stay_out_of_errors_and_logs(
    keys: AuthKeys, caplog: pytest.LogCaptureFixture, bad_key: dict[str, str]
) -> None:
    caplog.set_level(logging.DEBUG)
    double = InventoryDouble(keys)
    double.answer = httpx.Response(200, json={"keys": [bad_key]})
    with pytest.raises(InventoryUnavailable, match="malformed") as raised:
        await client_for(double, keys).reveal("order-1", ["k-1"])
    assert SECRET not in str(raised.value)
    assert raised.value.__context__ is None and raised.value.__cause__ is None
    assert SECRET not in caplog.text
