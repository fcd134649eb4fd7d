"""The plaintext of an order's delivered keys, from delivery's internal API.

Delivery holds them in the vault of the reseller's user; the reseller service
asks for one order's keys with a service credential (audited by delivery)
and hands them straight to the signed request that asked; it stores none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx

from kami_web.auth import issue_service_token


@dataclass(frozen=True)
class DeliveredKey:
    key_id: str
    secret: str
    expires_at: str | None


class KeysUnavailable(Exception):
    pass


class KeySource(Protocol):
    async def keys_of(self, order_id: str, owner_id: str) -> list[DeliveredKey]: ...


class HttpKeySource:
    def __init__(self, http: httpx.AsyncClient, *, base_url: str, service_secret: str) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._secret = service_secret

    async def keys_of(self, order_id: str, owner_id: str) -> list[DeliveredKey]:
        token = issue_service_token(self._secret, "reseller")
        try:
            response = await self._http.post(
                f"{self._base_url}/internal/orders/{order_id}/keys/reveal",
                json={"owner_id": owner_id},
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as error:
            raise KeysUnavailable(f"delivery did not answer: {error}") from error
        if response.status_code != 200:
            raise KeysUnavailable(f"delivery answered {response.status_code}")
        return [
            DeliveredKey(
                key_id=item["key_id"], secret=item["secret"], expires_at=item.get("expires_at")
            )
            for item in response.json()["keys"]
        ]
