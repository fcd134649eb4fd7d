"""A purchase saga told as a script (STYLE.md, after Eventuate Tram's saga
tests): the buyer's request and each other service's reply are one line;
`expect` names the commands/events ordering answered with since the last line.

Everything runs on fakes: `InMemoryEventStore`, in-memory read models and a
`ManualClock`; deadlines fire by advancing the clock and running one pass of
the poller, never by sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import uuid4

from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.inventory import ReleaseReason, ReservationFailure
from kami_events.catalogue.ordering import OrderRefundRequested
from kami_events.catalogue.payment import PaymentFailure
from kami_events.changes import Changes
from kami_events.clock import ManualClock
from kami_events.event import Event
from kami_events.money import Money
from kami_events.repository import AggregateRepository
from kami_events.store import CommitContext, Tracking
from kami_events.testing import InMemoryEventStore
from kami_ordering.adapters.repository import LoadedOrder, OrderRepository
from kami_ordering.domain.order import Deadline, Decision, Order, OrderState, SagaTimers
from kami_ordering.domain.promotions import Coupon, OfferPricing
from kami_ordering.domain.terms import BuyerFieldRule, OfferTerms, ProductTerms
from kami_ordering.handlers import Message, OrderPlacement, Placed, PlaceOrder, PurchaseSaga
from tests.unit.ordering.fakes import (
    FakeCatalog,
    FakeOrderRequests,
    FakeOrderViews,
    FakeQuotaClaims,
    FakeSettlements,
)

E = TypeVar("E", bound=Event)

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
BUYER = "buyer-1"
SELLER = "seller-1"
PRODUCT = "product-100-points"
OFFER = "offer-auto"
MANUAL_OFFER = "offer-manual"
ACCOUNT_PRODUCT = "product-membership"
PAYMENT = "payment-1"
DELIVERY = "delivery-1"
PRICE = 9_500  # fen

TIMERS = SagaTimers(
    payment_window=timedelta(minutes=15),
    auto_delivery_limit=timedelta(minutes=30),
    delivery_grace=timedelta(minutes=10),
)


def auto_offer(**changes: Any) -> OfferTerms:
    terms: dict[str, Any] = {
        "offer_id": OFFER,
        "product_id": PRODUCT,
        "seller_id": SELLER,
        "unit_price": Money.fen(PRICE),
        "delivery_mode": DeliveryMode.AUTO,
        "manual_delivery_sla": None,
        "guarantee_window": timedelta(minutes=15),
        "max_quantity": 5,
    }
    terms.update(changes)
    return OfferTerms(**terms)


def manual_offer(**changes: Any) -> OfferTerms:
    terms: dict[str, Any] = {
        "offer_id": MANUAL_OFFER,
        "product_id": ACCOUNT_PRODUCT,
        "seller_id": SELLER,
        "unit_price": Money.fen(3_000),
        "delivery_mode": DeliveryMode.MANUAL,
        "manual_delivery_sla": timedelta(minutes=60),
        "guarantee_window": timedelta(minutes=30),
        "max_quantity": 1,
    }
    terms.update(changes)
    return OfferTerms(**terms)


PRODUCTS = {
    PRODUCT: ProductTerms(PRODUCT, "100 points", "game_points", 10_000),
    ACCOUNT_PRODUCT: ProductTerms(
        ACCOUNT_PRODUCT,
        "Video membership, 1 month",
        "membership",
        None,
        (
            BuyerFieldRule("game_account", pattern=r"[0-9]{5,12}"),
            BuyerFieldRule("server", choices=("north", "south")),
        ),
    ),
}


@dataclass(frozen=True)
class Emits:
    """An expected event: its type and the fields that matter to this line."""

    event_type: type[Event]
    fields: dict[str, Any]


def emits(event_type: type[Event], **fields: Any) -> Emits:
    return Emits(event_type, fields)


class SagaScript:
    def __init__(self, *, timers: SagaTimers = TIMERS) -> None:
        self.clock = ManualClock(T0)
        self.timers = timers
        self.store = InMemoryEventStore(producer="ordering", clock=self.clock)
        self.catalog = FakeCatalog(
            offers={OFFER: auto_offer(), MANUAL_OFFER: manual_offer()}, products=dict(PRODUCTS)
        )
        self.requests = FakeOrderRequests()
        self.views = FakeOrderViews()
        self.settlements = FakeSettlements()
        self.quotas = FakeQuotaClaims()
        self.changes = Changes()
        self.order_id = ""
        self.keys: list[str] = []
        self._seen = 0
        self.restart()

    def restart(self) -> None:
        """New handlers over the same stores: what a process restart keeps."""
        repository = OrderRepository(self.store, on_change=self.changes.changed)
        self.repository = repository
        self.pricing = AggregateRepository(self.store, OfferPricing)
        self.coupons = AggregateRepository(self.store, Coupon)
        self.placement = OrderPlacement(
            repository=repository,
            catalog=self.catalog,
            requests=self.requests,
            views=self.views,
            clock=self.clock,
            timers=self.timers,
            pricing=self.pricing,
            coupons=self.coupons,
            quotas=self.quotas,
        )
        self.saga = PurchaseSaga(
            repository=repository,
            views=self.views,
            settlements=self.settlements,
            clock=self.clock,
            timers=self.timers,
            quotas=self.quotas,
        )

    # -- the buyer ------------------------------------------------------------------

    async def buyer_places_order(
        self,
        *,
        offer_id: str = OFFER,
        quantity: int = 2,
        buyer_fields: dict[str, str] | None = None,
        key: str | None = None,
        buyer_id: str = BUYER,
        coupon_code: str | None = None,
    ) -> Placed:
        placed = await self.placement.place(
            PlaceOrder(
                buyer_id=buyer_id,
                idempotency_key=key or str(uuid4()),
                offer_id=offer_id,
                quantity=quantity,
                buyer_fields=buyer_fields or {},
                request_id=str(uuid4()),
                coupon_code=coupon_code,
            )
        )
        self.order_id = placed.loaded.order.id
        self.keys = [f"key-{n}" for n in range(1, quantity + 1)]
        return placed

    async def buyer_cancels(self) -> LoadedOrder:
        return await self.saga.cancel_by_buyer(self.order_id, BUYER, "req-cancel")

    async def buyer_confirms_arrival(self) -> Decision:
        return await self.saga.arrival_confirmed(self.order_id, self._msg("ArrivalConfirmed"))

    # -- inventory ------------------------------------------------------------------

    async def inventory_reserves(
        self, keys: list[str] | None = None, *, holds_for: timedelta = timedelta(minutes=15)
    ) -> Decision:
        return await self.saga.key_reserved(
            self.order_id,
            self.keys if keys is None else keys,
            self.clock() + holds_for,
            self._msg("KeyReserved"),
        )

    async def inventory_cannot_reserve(self, reason: ReservationFailure) -> Decision:
        return await self.saga.reservation_failed(
            self.order_id, reason, self._msg("KeyReservationFailed")
        )

    async def inventory_lets_the_reservation_expire(self) -> Decision:
        return await self.saga.keys_released(
            self.order_id, self.keys, ReleaseReason.RESERVATION_EXPIRED, self._msg("KeysReleased")
        )

    # -- payment --------------------------------------------------------------------

    async def payment_confirms(
        self, payment_id: str = PAYMENT, amount: int | None = None
    ) -> Decision:
        order = await self.order()
        paid = Money.fen(order.total.amount if amount is None else amount)
        return await self.saga.payment_confirmed(
            self.order_id, payment_id, paid, self._msg("PaymentConfirmed")
        )

    async def payment_fails(
        self, reason: PaymentFailure, *, captured: int = 0, payment_id: str = PAYMENT
    ) -> Decision:
        return await self.saga.payment_failed(
            self.order_id, payment_id, reason, Money.fen(captured), self._msg("PaymentFailed")
        )

    async def payment_settles(self) -> None:
        await self.saga.funds_settled(self.order_id, PAYMENT)

    async def payment_reverses(self, *, settled: bool) -> Decision:
        order = await self.order()
        return await self.saga.payment_reversed(
            self.order_id, PAYMENT, order.total, settled, self._msg("PaymentReversed")
        )

    async def payment_refunds(self, request: OrderRefundRequested | None = None) -> Decision:
        """Payment carries out the last refund ordering requested (or `request`)."""
        request = request or self.last(OrderRefundRequested)
        return await self.saga.payment_refunded(
            self.order_id,
            request.refund_id,
            Money.fen(request.amount),
            request.source,
            self._msg("PaymentRefunded"),
        )

    # -- delivery -------------------------------------------------------------------

    async def delivery_delivers(
        self, keys: list[str] | None = None, delivery_id: str = DELIVERY
    ) -> Decision:
        return await self.saga.key_delivered(
            self.order_id,
            delivery_id,
            self.keys if keys is None else keys,
            self._msg("KeyDelivered"),
        )

    async def delivery_fails(self) -> Decision:
        return await self.saga.delivery_failed(
            self.order_id, self.keys, self._msg("DeliveryFailed")
        )

    # -- aftersales -----------------------------------------------------------------

    async def aftersales_opens_claim(self, ticket_id: str = "ticket-1") -> None:
        await self.saga.claim_opened(self.order_id, ticket_id)

    async def aftersales_resolves_claim(self, ticket_id: str = "ticket-1") -> None:
        await self.saga.claim_resolved(self.order_id, ticket_id)

    async def aftersales_approves_compensation(
        self, amount: int, void_key_ids: list[str], ticket_id: str = "ticket-1"
    ) -> Decision:
        return await self.saga.compensation_approved(
            self.order_id,
            ticket_id,
            Money.fen(amount),
            void_key_ids,
            self._msg("CompensationApproved"),
        )

    # -- time -----------------------------------------------------------------------

    async def time_passes(self, delta: timedelta) -> int:
        """Advance the clock, then run one pass of the deadline poller."""
        self.clock.advance(delta)
        return await self.saga.fire_due_deadlines()

    # -- what ordering said -----------------------------------------------------------

    def expect(self, *expected: type[Event] | Emits) -> list[Event]:
        """The events ordering committed since the last `expect`, exactly these, in order."""
        new = [envelope.payload for envelope in self.store.committed[self._seen :]]
        self._seen = len(self.store.committed)
        wanted = [e if isinstance(e, Emits) else Emits(e, {}) for e in expected]
        assert [type(e).__name__ for e in new] == [w.event_type.__name__ for w in wanted], new
        for event, want in zip(new, wanted, strict=True):
            for name, value in want.fields.items():
                assert getattr(event, name) == value, f"{type(event).__name__}.{name}: {event!r}"
        return new

    def expect_nothing(self) -> None:
        self.expect()

    def last(self, event_type: type[E]) -> E:
        for envelope in reversed(self.store.committed):
            if isinstance(envelope.payload, event_type):
                return envelope.payload
        raise AssertionError(f"ordering never emitted {event_type.__name__}")

    async def order(self) -> Order:
        loaded = await self.repository.load(self.order_id)
        assert loaded is not None
        return loaded.order

    async def state(self) -> OrderState | None:
        return (await self.order()).state

    def deadline(self) -> Deadline | None:
        return self.views.deadline_of(self.order_id)

    def _msg(self, trigger: str) -> Message:
        return Message(
            trigger,
            CommitContext(self.order_id, causation_id=str(uuid4())),
            Tracking("ordering", uuid4()),
        )
