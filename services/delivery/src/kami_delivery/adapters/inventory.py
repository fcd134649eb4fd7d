"""Inventory's internal key-reveal API, the one way plaintext leaves inventory.

    POST {KAMI_DELIVERY_INVENTORY_URL}/internal/orders/{order_id}/keys/reveal
    Authorization: Bearer <service credential of "delivery">
    {"key_ids": [...]}
    200 {"keys": [{"key_id", "secret", "expires_at", "status": "reserved"|"sold"}],
         "unavailable": [{"key_id", "status": "blocked"|"voided"|"expired"|"unknown"}]}

Anything but a well-formed 200 (no answer, a timeout, 5xx, a 4xx, a body
that does not parse, keys that were not asked for) is `InventoryUnavailable`:
delivery retries and never blames the keys for it. A key asked for but in
neither list is `unknown`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kami_delivery.adapters.ports import InventoryUnavailable, Revealed, RevealedKey
from kami_delivery.domain.keys import MAX_SECRET_LENGTH, CardSecret, UnavailableStatus
from kami_web.auth import issue_service_token


class _Key(BaseModel):
    model_config = ConfigDict(extra="ignore")

    key_id: str = Field(min_length=1)
    secret: str = Field(min_length=1, max_length=MAX_SECRET_LENGTH, repr=False)
    expires_at: datetime | None = None
    status: Literal["reserved", "sold"]


class _Unavailable(BaseModel):
    model_config = ConfigDict(extra="ignore")

    key_id: str = Field(min_length=1)
    status: UnavailableStatus


class _RevealResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    keys: list[_Key]
    unavailable: list[_Unavailable] = []


class HttpInventory:
    SERVICE = "delivery"

    def __init__(self, client: httpx.AsyncClient, *, base_url: str, service_secret: str) -> None:
        self._client = client
        self._base_url = base_url.rstrip("/")
        self._service_secret = service_secret

    async def reveal(self, order_id: str, key_ids: Sequence[str]) -> Revealed:
        url = f"{self._base_url}/internal/orders/{quote(order_id, safe='')}/keys/reveal"
        token = issue_service_token(self._service_secret, self.SERVICE)
        try:
            response = await self._client.post(
                url,
                json={"key_ids": list(key_ids)},
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            raise InventoryUnavailable(f"inventory did not answer: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise InventoryUnavailable(
                f"inventory answered {response.status_code}: {_error_code(response)}"
            )
        places: list[str] = []
        try:
            body = _RevealResponse.model_validate_json(response.content)
        except ValidationError as exc:
            # Pydantic's error quotes the offending input, which may be a secret:
            # keep only where it failed, and raise outside the `except` so the
            # error does not even travel as the new exception's context.
            places = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        if places:
            raise InventoryUnavailable(f"inventory's answer is malformed at {places}")
        return _revealed(body, key_ids)


def _revealed(body: _RevealResponse, asked: Sequence[str]) -> Revealed:
    wanted = set(asked)
    answered = [k.key_id for k in body.keys] + [u.key_id for u in body.unavailable]
    strangers = set(answered) - wanted
    if strangers or len(answered) != len(set(answered)):
        raise InventoryUnavailable("inventory answered keys that were not asked for, or twice")
    unavailable = {u.key_id: u.status for u in body.unavailable}
    for key_id in wanted - set(answered):
        unavailable[key_id] = UnavailableStatus.UNKNOWN
    try:
        keys = tuple(
            RevealedKey(key_id=k.key_id, secret=CardSecret(k.secret), expires_at=k.expires_at)
            for k in body.keys
        )
    except ValueError:
        raise InventoryUnavailable("inventory answered a blank secret") from None
    return Revealed(keys=keys, unavailable=unavailable)


def _error_code(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        return str(error.get("code", "no error code"))[:100]
    except (ValueError, AttributeError):
        return "no error body"
