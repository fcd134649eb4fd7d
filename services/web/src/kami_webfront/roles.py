"""Who may open the seller center and the operator console.

The roles come from identity's `GET /me` with the visitor's token (once per
request), not from anything the browser holds: the session cookie carries
tokens only. A visitor without the role gets a 403 page; the services check
the same roles again on every call, so a page that let someone through
would still show them nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kami_webfront.clients import BackendError
from kami_webfront.pages import Page
from kami_webfront.session import token_roles

SELLER = "seller"
OPERATOR = "operator"
SUPPORT = "support"
# The console's areas: operators see every one; support agents the ticket queue.
CONSOLE = frozenset({OPERATOR, SUPPORT})


class RoleRequired(BackendError):
    """Rendered by the app's handler for refusals: a 403 page saying which role."""

    def __init__(self, message: str) -> None:
        super().__init__("web", 403, "role_required", message)


async def profile(page: Page) -> dict[str, Any]:
    """The visitor's identity profile (logging in first if need be)."""
    token = page.require_login()
    state = page.request.state
    found: dict[str, Any] | None = getattr(state, "kami_profile", None)
    if found is None:
        found = await page.backends.get("identity", "/me", token=token)
        state.kami_profile = found
        if not set(found.get("roles", [])) <= token_roles(token):
            await _refresh_for_new_roles(page)
    return found


async def _refresh_for_new_roles(page: Page) -> None:
    """An operator approved the seller after it logged in: its access token
    predates the role. A refresh brings one that carries it, so the seller
    center works at once rather than when the old token runs out."""
    session = page.session
    if session.refresh_token is None:
        return
    try:
        tokens = await page.backends.post(
            "identity", "/auth/refresh", json={"refresh_token": session.refresh_token}
        )
    except BackendError:
        return  # the old token still works for what it allows
    page.set_session(
        session.refreshed(tokens["access_token"], tokens["refresh_token"], tokens["expires_in"])
    )


async def require_role(page: Page, allowed: Iterable[str]) -> dict[str, Any]:
    """The profile if the visitor holds one of `allowed`, else a 403 page."""
    wanted = frozenset(allowed)
    found = await profile(page)
    if not wanted & set(found.get("roles", [])):
        if wanted == {SELLER}:
            raise RoleRequired(page.t("console.seller_required"))
        names = "、".join(page.t(f"console.role.{role}") for role in sorted(wanted))
        raise RoleRequired(page.t("console.role_required", roles=names))
    return found


def has_role(found: dict[str, Any], role: str) -> bool:
    return role in found.get("roles", [])
