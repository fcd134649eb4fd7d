"""The reseller service's handlers: load, decide, save.

Operators approve resellers and issue credentials; a reseller's signed
request is authenticated here (signature, clock window, single-use nonce,
credential still active); its markups, catalogue and orders; ordering's
events end its orders and queue signed webhooks, which `send_due_webhooks`
delivers with exponential backoff, recording every attempt.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from kami_events.catalogue.catalog import OfferDelisted, OfferListed, OfferPriceChanged
from kami_events.catalogue.identity import UserRegistered, UserSuspended
from kami_events.catalogue.ordering import OrderCancelled, OrderDelivered, OrderRefunded
from kami_events.catalogue.reseller import ResellerOrderState
from kami_events.clock import Clock
from kami_events.envelope import Envelope
from kami_events.event import Event
from kami_events.repository import AggregateRepository
from kami_events.store import AlreadyProcessed, CommitContext, ConcurrencyError, Tracking
from kami_reseller import metrics
from kami_reseller.adapters.cipher import SecretCipher, new_key_id, new_secret
from kami_reseller.adapters.keys import DeliveredKey, KeySource
from kami_reseller.adapters.stores import Stores
from kami_reseller.domain import signing
from kami_reseller.domain.order import ResellerOrder
from kami_reseller.domain.pricing import ResellerPrice, price_of
from kami_reseller.domain.reseller import Reseller, ResellerRefused
from kami_reseller.domain.signing import SignatureRefusal, SignatureRefused
from kami_reseller.domain.webhooks import RetryPolicy, WebhookEventType, succeeded

log = logging.getLogger(__name__)

# Order ids derive from (reseller, Idempotency-Key): the same key is the same order.
ORDER_NAMESPACE = uuid.UUID("6b7e1c52-8a55-4c3e-9d1f-3f0a2c7d9e41")
RESPONSE_EXCERPT = 500


class NotFound(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class IssuedCredential:
    key_id: str
    secret: str


@dataclass(frozen=True)
class CatalogueEntry:
    offer_id: str
    product_id: str
    seller_id: str
    offer_price: int
    markup_bp: int
    price: int
    max_quantity_per_order: int
    min_quantity_per_order: int


@dataclass
class ResellerDeps:
    resellers: AggregateRepository[Reseller]
    orders: AggregateRepository[ResellerOrder]
    stores: Stores
    cipher: SecretCipher
    keys: KeySource
    http: httpx.AsyncClient
    retry: RetryPolicy
    clock: Clock


# -- operators ----------------------------------------------------------------------------


async def approve(deps: ResellerDeps, user_id: str, operator_id: str, default_bp: int) -> Reseller:
    """Approve identity user `user_id` as a reseller (one reseller per user)."""
    if await deps.stores.user(user_id) is None:
        raise NotFound("user_not_found", "no such user (identity has not registered it)")
    reseller_id = await deps.stores.claim_user(user_id, str(uuid.uuid4()))
    reseller = await deps.resellers.get(reseller_id) or Reseller(reseller_id)
    reseller.approve(user_id, operator_id, default_bp)
    await deps.resellers.save(reseller, CommitContext(correlation_id=reseller_id))
    await _project(deps, reseller)
    return reseller


async def issue_credential(deps: ResellerDeps, reseller_id: str) -> IssuedCredential:
    reseller = await _reseller(deps, reseller_id)
    key_id, secret = new_key_id(), new_secret()
    reseller.issue_credential(key_id)
    # Sealed secret first: a credential event never names a key that cannot verify.
    await deps.stores.add_credential(
        key_id, reseller_id, deps.cipher.seal(key_id, secret), deps.clock()
    )
    await deps.resellers.save(reseller, CommitContext(correlation_id=reseller_id))
    return IssuedCredential(key_id, secret)


async def revoke_credential(
    deps: ResellerDeps, reseller_id: str, key_id: str, operator_id: str
) -> None:
    reseller = await _reseller(deps, reseller_id)
    reseller.revoke_credential(key_id, operator_id)
    await deps.resellers.save(reseller, CommitContext(correlation_id=reseller_id))
    await deps.stores.revoke_credential(key_id)


# -- signed requests ----------------------------------------------------------------------


async def authenticate(
    deps: ResellerDeps,
    method: str,
    path: str,
    raw_query: str,
    headers: Mapping[str, str],
    body: bytes,
) -> Reseller:
    """The reseller who signed this request; `SignatureRefused` (401) otherwise.

    The nonce is spent only once the signature verified, so nobody can burn a
    reseller's nonces with unsigned requests."""
    try:
        signed = signing.read_headers(headers)
        signing.check_timestamp(signed, deps.clock())
        credential = await deps.stores.credential(signed.key_id)
        if credential is None or not credential.get("active"):
            raise SignatureRefused(SignatureRefusal.UNKNOWN_KEY, "unknown or revoked key id")
        secret = deps.cipher.open(signed.key_id, credential["sealed_secret"])
        signing.check_signature(signed, secret, method, path, raw_query, body)
        fresh = await deps.stores.use_nonce(
            signed.key_id, signed.nonce, signing.nonce_kept_until(signed)
        )
        if not fresh:
            raise SignatureRefused(
                SignatureRefusal.REPLAYED_NONCE,
                "this nonce was already used with this key: every request needs a new one",
            )
        reseller = await deps.resellers.get(str(credential["reseller_id"]))
        if reseller is None or not reseller.may_sign_with(signed.key_id):
            raise SignatureRefused(SignatureRefusal.UNKNOWN_KEY, "unknown or revoked key id")
    except SignatureRefused as refused:
        metrics.SIGNED_REQUESTS_REFUSED.labels(refused.reason.value).inc()
        raise
    return reseller


# -- the reseller's own settings ------------------------------------------------------


async def set_markup(
    deps: ResellerDeps, reseller: Reseller, offer_id: str | None, markup_bp: int
) -> Reseller:
    if offer_id is not None and await deps.stores.offer(offer_id) is None:
        raise NotFound("unknown_offer", "no such offer")
    reseller.set_markup(offer_id, markup_bp)
    await deps.resellers.save(reseller, CommitContext(correlation_id=reseller.id))
    await _project(deps, reseller)
    return reseller


async def set_webhook(deps: ResellerDeps, reseller: Reseller, url: str | None) -> Reseller:
    reseller.set_webhook(url)
    await deps.resellers.save(reseller, CommitContext(correlation_id=reseller.id))
    await _project(deps, reseller)
    return reseller


async def catalogue(
    deps: ResellerDeps, reseller: Reseller, limit: int, after: str | None
) -> list[CatalogueEntry]:
    offers = await deps.stores.resellable_offers(limit, after)
    return [_entry(reseller, offer) for offer in offers]


def _entry(reseller: Reseller, offer: Mapping[str, Any]) -> CatalogueEntry:
    price = price_of(
        offer["_id"], int(offer["unit_price"]), reseller.default_markup_bp, reseller.markups
    )
    return CatalogueEntry(
        offer_id=offer["_id"],
        product_id=offer["product_id"],
        seller_id=offer["seller_id"],
        offer_price=price.offer_price,
        markup_bp=price.markup_bp,
        price=price.unit_price,
        max_quantity_per_order=int(offer.get("max_quantity_per_order", 1)),
        min_quantity_per_order=int(offer.get("min_quantity_per_order", 1)),
    )


# -- orders ---------------------------------------------------------------------------


def order_id_for(reseller_id: str, idempotency_key: str) -> str:
    return str(uuid.uuid5(ORDER_NAMESPACE, f"{reseller_id}:{idempotency_key}"))


async def place_order(
    deps: ResellerDeps,
    reseller: Reseller,
    idempotency_key: str,
    offer_id: str,
    quantity: int,
    customer_ref: str | None,
) -> tuple[ResellerOrder, bool]:
    """The order, and whether this request created it (False: the same key again)."""
    order_id = order_id_for(reseller.id, idempotency_key)
    existing = await deps.orders.get(order_id)
    if existing is not None:
        _same_request(existing, offer_id, quantity)
        return existing, False
    offer = await deps.stores.offer(offer_id)
    if offer is None or not offer.get("listed") or offer.get("delivery_mode") != "auto":
        raise NotFound(
            "offer_not_resellable", "no listed, automatically delivered offer by this id"
        )
    entry = _entry(reseller, offer)
    if not entry.min_quantity_per_order <= quantity <= entry.max_quantity_per_order:
        raise ResellerRefused(
            "quantity_out_of_range",
            f"this offer sells {entry.min_quantity_per_order} to "
            f"{entry.max_quantity_per_order} keys per order",
        )
    assert reseller.user_id is not None
    order = ResellerOrder(order_id)
    order.request(
        reseller.id,
        reseller.user_id,
        offer_id,
        quantity,
        ResellerPrice(entry.offer_price, entry.markup_bp),
        customer_ref,
    )
    try:
        await deps.orders.save(order, CommitContext(correlation_id=order_id))
    except ConcurrencyError:
        # A concurrent twin of this request saved it first.
        twin = await deps.orders.get(order_id)
        assert twin is not None
        _same_request(twin, offer_id, quantity)
        return twin, False
    await _project_order(deps, order, requested_at=deps.clock())
    metrics.ORDERS.labels("requested").inc()
    return order, True


def _same_request(order: ResellerOrder, offer_id: str, quantity: int) -> None:
    if (order.offer_id, order.quantity) != (offer_id, quantity):
        raise ResellerRefused(
            "idempotency_key_reused", "this Idempotency-Key was used for a different order"
        )


async def order_of(deps: ResellerDeps, reseller: Reseller, order_id: str) -> ResellerOrder:
    order = await deps.orders.get(order_id)
    if order is None or order.reseller_id != reseller.id:
        raise NotFound("order_not_found", "no such order")  # another's order is not disclosed
    return order


async def keys_of(deps: ResellerDeps, reseller: Reseller, order_id: str) -> list[DeliveredKey]:
    order = await order_of(deps, reseller, order_id)
    if order.state is not ResellerOrderState.DELIVERED:
        raise ResellerRefused("not_delivered", f"the order is {order.state}, not delivered")
    return await deps.keys.keys_of(order_id, order.user_id)


# -- what other services tell us --------------------------------------------------------


async def on_offer_event(deps: ResellerDeps, envelope: Envelope[Event]) -> None:
    event = envelope.payload
    fields: dict[str, Any]
    match event:
        case OfferListed():
            fields = {
                "product_id": event.product_id,
                "seller_id": event.seller_id,
                "unit_price": event.unit_price,
                "delivery_mode": event.delivery_mode.value,
                "max_quantity_per_order": event.max_quantity_per_order,
                "min_quantity_per_order": event.min_quantity_per_order,
                "listed": True,
            }
        case OfferPriceChanged():
            fields = {"unit_price": event.new_unit_price}
        case OfferDelisted():
            fields = {"listed": False}
        case _:
            return
    await deps.stores.record_offer(event.offer_id, envelope.aggregate_version, fields)


async def on_user_event(deps: ResellerDeps, event: Event) -> None:
    match event:
        case UserRegistered():
            await deps.stores.record_user(event.user_id, {"registered": True})
        case UserSuspended():
            await deps.stores.record_user(event.user_id, {"suspended_until": event.until})


async def on_order_event(deps: ResellerDeps, envelope: Envelope[Event], tracking: Tracking) -> None:
    """Ordering's end of an order this service placed: record it, queue its webhook."""
    event = envelope.payload
    order = await deps.orders.get(envelope.aggregate_id)
    if order is None:
        return  # not a reseller's order
    match event:
        case OrderDelivered():
            changed = order.delivered(list(event.key_ids), envelope.occurred_at)
            kind = WebhookEventType.ORDER_DELIVERED
        case OrderRefunded() if event.ends_order:
            changed = order.closed(
                ResellerOrderState.REFUNDED, event.reason.value, order.reseller_total
            )
            kind = WebhookEventType.ORDER_REFUNDED
        case OrderCancelled():
            changed = order.closed(ResellerOrderState.CANCELLED, event.reason.value, 0)
            kind = WebhookEventType.ORDER_CANCELLED
        case _:
            return
    if changed:
        context = CommitContext(correlation_id=order.id, causation_id=str(envelope.event_id))
        try:
            await deps.orders.save(order, context, tracking)
            metrics.ORDERS.labels(str(order.state)).inc()
        except AlreadyProcessed:
            # This event's commit exists (a redelivery after a crash): go on to the webhook.
            reloaded = await deps.orders.get(order.id)
            assert reloaded is not None
            order = reloaded
    await _project_order(deps, order)
    await _queue_webhook(deps, order, kind, str(envelope.event_id))


# -- webhooks -----------------------------------------------------------------------------


def webhook_body(order: ResellerOrder, kind: WebhookEventType, webhook_id: str) -> dict[str, Any]:
    return {
        "webhook_id": webhook_id,
        "type": kind.value,
        "order": {
            "order_id": order.id,
            "state": str(order.state),
            "offer_id": order.offer_id,
            "quantity": order.quantity,
            "reseller_total": order.reseller_total,
            "customer_ref": order.customer_ref,
            "key_ids": order.key_ids,
            "refunded_amount": order.refunded_amount,
            "reason": order.close_reason,
        },
    }


async def _queue_webhook(
    deps: ResellerDeps, order: ResellerOrder, kind: WebhookEventType, cause: str
) -> None:
    """One webhook per (order, kind): a redelivered event queues nothing new."""
    webhook_id = str(uuid.uuid5(ORDER_NAMESPACE, f"{order.id}:{kind.value}"))
    reseller = await deps.resellers.get(order.reseller_id)
    url = reseller.webhook_url if reseller else None
    now = deps.clock()
    body = json.dumps(webhook_body(order, kind, webhook_id), separators=(",", ":"), sort_keys=True)
    await deps.stores.add_webhook(
        {
            "_id": webhook_id,
            "reseller_id": order.reseller_id,
            "order_id": order.id,
            "type": kind.value,
            "caused_by": cause,
            "body": body,
            "url": url,
            "status": "pending" if url else "failed",
            "attempt_count": 0,
            "attempt_limit": deps.retry.max_attempts,
            "next_attempt_at": now if url else None,
            "created_at": now,
        }
    )


async def send_due_webhooks(deps: ResellerDeps, limit: int = 50) -> int:
    sent = 0
    for webhook in await deps.stores.due_webhooks(deps.clock(), limit):
        if await _attempt(deps, webhook):
            sent += 1
    return sent


async def _attempt(deps: ResellerDeps, webhook: Mapping[str, Any]) -> bool:
    number = int(webhook["attempt_count"]) + 1
    if not await deps.stores.claim_attempt(webhook["_id"], number, deps.clock()):
        return False  # another sender took this attempt
    body: bytes = webhook["body"].encode()
    credential = await deps.stores.latest_active_credential(webhook["reseller_id"])
    reseller = await deps.resellers.get(webhook["reseller_id"])
    url = reseller.webhook_url if reseller else None
    outcome: dict[str, Any] = {"url": url}
    status_code: int | None = None
    started = time.monotonic()
    if credential is None or not url:
        outcome["error"] = "no webhook URL" if not url else "no active credential to sign with"
    else:
        secret = deps.cipher.open(credential["_id"], credential["sealed_secret"])
        timestamp = int(deps.clock().timestamp())
        headers = {
            "Content-Type": "application/json",
            signing.WEBHOOK_SIGNATURE_HEADER: signing.webhook_signature(secret, timestamp, body),
            "X-Kami-Key": credential["_id"],
            "X-Kami-Webhook-Id": webhook["_id"],
            "X-Kami-Webhook-Attempt": str(number),
        }
        try:
            response = await deps.http.post(url, content=body, headers=headers)
            status_code = response.status_code
            outcome["response_excerpt"] = response.text[:RESPONSE_EXCERPT]
        except httpx.HTTPError as error:
            outcome["error"] = f"{type(error).__name__}: {error}"[:RESPONSE_EXCERPT]
    now = deps.clock()
    outcome.update(
        status_code=status_code,
        duration_ms=round((time.monotonic() - started) * 1000, 1),
        finished_at=now,
        succeeded=succeeded(status_code),
    )
    if succeeded(status_code):
        status, next_at = "delivered", None
        metrics.WEBHOOK_DELIVERIES.labels(webhook["type"], "delivered").inc()
    else:
        remaining = int(webhook.get("attempt_limit", deps.retry.max_attempts)) - number
        retry_at = now + deps.retry.delay_after(number) if remaining > 0 else None
        status, next_at = ("pending", retry_at) if retry_at else ("failed", None)
        metrics.WEBHOOK_DELIVERIES.labels(webhook["type"], "failed").inc()
    await deps.stores.record_attempt(webhook["_id"], number, outcome, status, next_at)
    return succeeded(status_code)


async def resend_webhook(deps: ResellerDeps, reseller: Reseller, webhook_id: str) -> None:
    webhook = await deps.stores.webhook(webhook_id)
    if webhook is None or webhook["reseller_id"] != reseller.id:
        raise NotFound("webhook_not_found", "no such webhook")
    limit = int(webhook["attempt_count"]) + deps.retry.max_attempts
    await deps.stores.resend_webhook(webhook_id, deps.clock(), limit)


async def sweep_nonces(deps: ResellerDeps) -> int:
    return await deps.stores.sweep_nonces(deps.clock())


# -- projections ---------------------------------------------------------------------------


async def _reseller(deps: ResellerDeps, reseller_id: str) -> Reseller:
    reseller = await deps.resellers.get(reseller_id)
    if reseller is None:
        raise NotFound("reseller_not_found", "no such reseller")
    return reseller


async def _project(deps: ResellerDeps, reseller: Reseller) -> None:
    await deps.stores.record_reseller(
        reseller.id,
        {
            "user_id": reseller.user_id,
            "default_markup_bp": reseller.default_markup_bp,
            "markups": reseller.markups,
            "webhook_url": reseller.webhook_url,
            "version": reseller.version,
        },
    )


async def _project_order(
    deps: ResellerDeps, order: ResellerOrder, requested_at: datetime | None = None
) -> None:
    fields: dict[str, Any] = {
        "reseller_id": order.reseller_id,
        "state": str(order.state),
        "offer_id": order.offer_id,
        "quantity": order.quantity,
        "total": order.total,
        "reseller_total": order.reseller_total,
        "margin": order.margin,
        "refunded_amount": order.refunded_amount,
    }
    if requested_at is not None:
        fields["requested_at"] = requested_at
    await deps.stores.record_order(order.id, fields)
