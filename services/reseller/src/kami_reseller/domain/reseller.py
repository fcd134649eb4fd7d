"""The reseller aggregate: approval, credentials, markups, webhook URL.

Its command methods check the rule and trigger an event; `apply` is the only
place state changes (DESIGN §1). Times and ids come in from the caller.
"""

from __future__ import annotations

from typing import ClassVar

from kami_events.aggregate import Aggregate
from kami_events.catalogue.reseller import (
    ResellerApproved,
    ResellerCredentialIssued,
    ResellerCredentialRevoked,
    ResellerMarkupSet,
    ResellerWebhookSet,
)
from kami_events.event import Event

MAX_MARKUP_BP = 100_000
MAX_ACTIVE_CREDENTIALS = 5


class ResellerRefused(Exception):
    """A command the reseller's state does not allow (a 409 or 422 with `code`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Reseller(Aggregate):
    aggregate_type: ClassVar[str] = "reseller.reseller"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.user_id: str | None = None
        self.approved = False
        self.default_markup_bp = 0
        self.markups: dict[str, int] = {}
        self.active_keys: list[str] = []
        self.revoked_keys: set[str] = set()
        self.webhook_url: str | None = None

    # -- commands ---------------------------------------------------------------------

    def approve(self, user_id: str, approved_by: str, default_markup_bp: int) -> None:
        if self.approved:
            raise ResellerRefused("already_approved", "this reseller is already approved")
        _check_markup(default_markup_bp)
        self._trigger(
            ResellerApproved(
                reseller_id=self.id,
                user_id=user_id,
                approved_by=approved_by,
                default_markup_bp=default_markup_bp,
            )
        )

    def issue_credential(self, key_id: str) -> None:
        self._require_approved()
        if len(self.active_keys) >= MAX_ACTIVE_CREDENTIALS:
            raise ResellerRefused(
                "too_many_credentials",
                f"at most {MAX_ACTIVE_CREDENTIALS} credentials at once; revoke one first",
            )
        self._trigger(ResellerCredentialIssued(reseller_id=self.id, key_id=key_id))

    def revoke_credential(self, key_id: str, revoked_by: str) -> None:
        if key_id not in self.active_keys:
            raise ResellerRefused("unknown_key", "no active credential with this key id")
        self._trigger(
            ResellerCredentialRevoked(reseller_id=self.id, key_id=key_id, revoked_by=revoked_by)
        )

    def set_markup(self, offer_id: str | None, markup_bp: int) -> None:
        self._require_approved()
        _check_markup(markup_bp)
        current = self.default_markup_bp if offer_id is None else self.markups.get(offer_id)
        if current == markup_bp:
            return  # nothing changes: no event
        self._trigger(
            ResellerMarkupSet(reseller_id=self.id, offer_id=offer_id, markup_bp=markup_bp)
        )

    def set_webhook(self, url: str | None) -> None:
        self._require_approved()
        if url == self.webhook_url:
            return
        self._trigger(ResellerWebhookSet(reseller_id=self.id, url=url))

    def may_sign_with(self, key_id: str) -> bool:
        return self.approved and key_id in self.active_keys

    def _require_approved(self) -> None:
        if not self.approved:
            raise ResellerRefused("not_approved", "this reseller is not approved")

    # -- state ------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        match event:
            case ResellerApproved():
                self.user_id = event.user_id
                self.approved = True
                self.default_markup_bp = event.default_markup_bp
            case ResellerCredentialIssued():
                self.active_keys.append(event.key_id)
            case ResellerCredentialRevoked():
                self.active_keys = [k for k in self.active_keys if k != event.key_id]
                self.revoked_keys.add(event.key_id)
            case ResellerMarkupSet():
                if event.offer_id is None:
                    self.default_markup_bp = event.markup_bp
                else:
                    self.markups[event.offer_id] = event.markup_bp
            case ResellerWebhookSet():
                self.webhook_url = event.url
            case _:
                super().apply(event)


def _check_markup(markup_bp: int) -> None:
    if not 0 <= markup_bp <= MAX_MARKUP_BP:
        raise ResellerRefused(
            "markup_out_of_range", f"a markup is 0 to {MAX_MARKUP_BP} basis points"
        )
