"""The order's timeline across services, as ordering keeps it, for agents.

Read with the agent's own token (`GET {ordering}/orders/{id}/timeline`:
ordering shows any order to support and operators), so aftersales gets no
more than the agent may see. Unreachable: the ticket is still shown, without it.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote

import httpx


class OrderTimelines(Protocol):
    async def timeline(self, order_id: str, bearer_token: str) -> list[dict[str, Any]] | None: ...


class HttpOrderTimelines:
    def __init__(self, client: httpx.AsyncClient, *, base_url: str) -> None:
        self._client = client
        self._base_url = base_url.rstrip("/")

    async def timeline(self, order_id: str, bearer_token: str) -> list[dict[str, Any]] | None:
        url = f"{self._base_url}/orders/{quote(order_id, safe='')}/timeline"
        try:
            response = await self._client.get(
                url, headers={"Authorization": f"Bearer {bearer_token}"}
            )
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            events = response.json()["events"]
        except (ValueError, KeyError, TypeError):
            return None
        return [dict(e) for e in events] if isinstance(events, list) else None
