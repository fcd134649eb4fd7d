"""The other services' public HTTP APIs, called with the user's token.

One `httpx.AsyncClient` per process; tests hand the app a transport that
answers like the services (`httpx.MockTransport`).
"""

from __future__ import annotations

from typing import Any

import httpx

from kami_webfront.settings import BACKENDS, WebSettings


class BackendError(Exception):
    """A service refused or failed a call: its status and its message."""

    def __init__(self, service: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{service}: {status} {code}: {message}")
        self.service = service
        self.status = status
        self.code = code
        self.message = message


class BackendUnavailable(BackendError):
    def __init__(self, service: str, reason: str) -> None:
        super().__init__(service, 503, "unavailable", reason)


def _error_of(service: str, response: httpx.Response) -> BackendError:
    code, message = "error", response.text[:300]
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            code = str(error.get("code") or code)
            message = str(error.get("message") or error.get("detail") or message)
        elif isinstance(body.get("detail"), str):
            message = body["detail"]
    return BackendError(service, response.status_code, code, message)


class Backends:
    def __init__(self, settings: WebSettings, transport: httpx.AsyncBaseTransport | None) -> None:
        self._urls = {service: settings.backend_url(service) for service in BACKENDS}
        self._http = httpx.AsyncClient(
            transport=transport, timeout=settings.web_upstream_timeout_seconds
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        query = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        try:
            response = await self._http.request(
                method,
                self._urls[service] + path,
                json=json,
                params=query,
                headers=sent,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            raise BackendUnavailable(service, repr(exc)) from exc
        if response.status_code >= 400:
            raise _error_of(service, response)
        return response

    async def get(self, service: str, path: str, **kwargs: Any) -> Any:
        return (await self.call(service, "GET", path, **kwargs)).json()

    async def post(self, service: str, path: str, **kwargs: Any) -> Any:
        response = await self.call(service, "POST", path, **kwargs)
        return response.json() if response.content else None

    async def put(self, service: str, path: str, **kwargs: Any) -> Any:
        response = await self.call(service, "PUT", path, **kwargs)
        return response.json() if response.content else None
