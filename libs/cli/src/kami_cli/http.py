"""Calling Kami's HTTP APIs as the logged-in operator or seller.

The token is `--token` / `KAMI_TOKEN` if given, else the one `kami login`
saved; a saved access token that has expired is refreshed with its refresh
token (and saved again) before the call.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import jwt

from kami_cli.config import CliSettings, SavedLogin, load_login, now, save_login
from kami_cli.errors import CliError

TIMEOUT = httpx.Timeout(30.0, connect=5.0)
# Refresh a saved token this many seconds before it expires.
EXPIRY_MARGIN_SECONDS = 15


def error_message(response: httpx.Response) -> str:
    """Kami's `{"error": {"code", "message"}}`, or whatever the body says."""
    try:
        error = response.json()["error"]
        return f"{response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code}: {response.text[:300]}"


def log_in(settings: CliSettings, phone: str, password: str) -> SavedLogin:
    url = settings.url("identity")
    try:
        response = httpx.post(
            f"{url}/auth/login", json={"phone": phone, "password": password}, timeout=TIMEOUT
        )
    except httpx.HTTPError as exc:
        raise CliError(f"identity at {url} is unreachable: {exc}") from None
    if response.status_code != 200:
        raise CliError(f"login refused: {error_message(response)}")
    body = response.json()
    return SavedLogin(
        identity_url=url,
        phone=phone,
        user_id=str(body["user_id"]),
        access_token=body["access_token"],
        refresh_token=body["refresh_token"],
        saved_at=now(),
    )


def _expires_soon(token: str) -> bool:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return True
    return float(claims.get("exp", 0)) - EXPIRY_MARGIN_SECONDS < now().timestamp()


def _refreshed(settings: CliSettings, login: SavedLogin) -> SavedLogin:
    try:
        response = httpx.post(
            f"{login.identity_url}/auth/refresh",
            json={"refresh_token": login.refresh_token},
            timeout=TIMEOUT,
        )
    except httpx.HTTPError as exc:
        raise CliError(f"identity at {login.identity_url} is unreachable: {exc}") from None
    if response.status_code != 200:
        raise CliError(
            f"the saved login has expired ({error_message(response)}); run `kami login` again"
        )
    body = response.json()
    fresh = replace(
        login,
        access_token=body["access_token"],
        refresh_token=body.get("refresh_token", login.refresh_token),
        saved_at=now(),
    )
    save_login(settings.credentials_path, fresh)
    return fresh


def access_token(settings: CliSettings) -> str:
    if settings.token:
        return settings.token
    login = load_login(settings.credentials_path)
    if login is None:
        raise CliError("not logged in: run `kami login` or set KAMI_TOKEN")
    if _expires_soon(login.access_token):
        login = _refreshed(settings, login)
    return login.access_token


class Api:
    """One service's API with the caller's token."""

    def __init__(self, settings: CliSettings, service: str) -> None:
        self.service = service
        self.base_url = settings.url(service)
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {access_token(settings)}"},
            timeout=TIMEOUT,
        )

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CliError(f"{self.service} at {self.base_url} is unreachable: {exc}") from None

    def get_json(self, path: str, **kwargs: Any) -> Any:
        response = self.request("GET", path, **kwargs)
        if response.status_code != 200:
            raise CliError(f"{self.service} GET {path}: {error_message(response)}")
        return response.json()
