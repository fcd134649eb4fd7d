"""Every Kami event, one module per producing service (DESIGN §2).

Importing this package registers every event in `EVENT_REGISTRY`, so that
`decode` knows them all. The human-readable catalogue is `docs/events.md`;
the machine-readable one is `docs/asyncapi.yaml` and the JSON Schema
snapshots in `libs/events/schemas/`.
"""

from __future__ import annotations

import sys

from kami_events.catalogue import (
    aftersales,
    catalog,
    delivery,
    identity,
    inventory,
    ordering,
    payment,
    reseller,
)
from kami_events.catalogue.aftersales import (
    CompensationApproved,
    EscalationLevel,
    EscalationReason,
    FlagReason,
    IssueCategory,
    Remedy,
    ReplacementApproved,
    Resolution,
    SellerEvent,
    SellerFlagCleared,
    SellerFlagged,
    TicketEscalated,
    TicketEvent,
    TicketOpened,
    TicketResolved,
)
from kami_events.catalogue.catalog import (
    DelistReason,
    OfferDelisted,
    OfferEvent,
    OfferListed,
    OfferPriceChanged,
    ProductEvent,
    ProductKind,
    ProductPublished,
)
from kami_events.catalogue.common import (
    AggregateEvent,
    DeliveryMode,
    RefundReason,
    RefundSource,
    is_sensitive_name,
)
from kami_events.catalogue.delivery import (
    ArrivalConfirmed,
    DeliveryChannel,
    DeliveryEvent,
    DeliveryFailed,
    DeliveryFailure,
    KeyDelivered,
    KeyReplaced,
)
from kami_events.catalogue.identity import (
    IdentityVerified,
    KycTier,
    PhoneVerified,
    Role,
    SellerApproved,
    SellerCategory,
    SuspensionReason,
    UserEvent,
    UserRegistered,
    UserSuspended,
)
from kami_events.catalogue.inventory import (
    BlockReason,
    KeyReplacementFailed,
    KeyReservationFailed,
    KeyReserved,
    KeysBlocked,
    KeysImported,
    KeysReleased,
    KeysSold,
    KeysVoided,
    PoolEvent,
    ReleaseReason,
    ReplacementFailure,
    ReplacementKeysAllocated,
    ReservationFailure,
    StockChanged,
    VoidReason,
)
from kami_events.catalogue.ordering import (
    CancelReason,
    CompletedBy,
    CouponEvent,
    CouponHeld,
    CouponIssued,
    CouponKind,
    CouponRedeemed,
    CouponReleased,
    CouponScope,
    DiscountFunder,
    FlashSaleScheduled,
    OfferPriceTiersSet,
    OfferPricingEvent,
    OrderCancelled,
    OrderCompleted,
    OrderDelivered,
    OrderEvent,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    OrderRefundRequested,
    OrderReserved,
    PriceTier,
)
from kami_events.catalogue.payment import (
    DepositBelowMinimum,
    DepositChangeCause,
    DepositChanged,
    DepositEvent,
    FundsSettled,
    PaymentChannel,
    PaymentConfirmed,
    PaymentEvent,
    PaymentFailed,
    PaymentFailure,
    PaymentInitiated,
    PaymentRefunded,
    PaymentReversed,
    ReversalReason,
)
from kami_events.catalogue.reseller import (
    ResellerApproved,
    ResellerCredentialIssued,
    ResellerCredentialRevoked,
    ResellerEvent,
    ResellerMarkupSet,
    ResellerOrderClosed,
    ResellerOrderDelivered,
    ResellerOrderEvent,
    ResellerOrderRequested,
    ResellerOrderState,
    ResellerWebhookSet,
)
from kami_events.event import EVENT_REGISTRY, Event

# One abstract base per aggregate type, in the order of DESIGN §2. Each names
# its topic (`aggregate_type`) and the payload field holding the aggregate id.
AGGREGATE_BASES: tuple[type[AggregateEvent], ...] = (
    UserEvent,
    ProductEvent,
    OfferEvent,
    OrderEvent,
    CouponEvent,
    OfferPricingEvent,
    PoolEvent,
    PaymentEvent,
    DepositEvent,
    DeliveryEvent,
    TicketEvent,
    SellerEvent,
    ResellerEvent,
    ResellerOrderEvent,
)

SERVICE_MODULES = (
    identity,
    catalog,
    ordering,
    inventory,
    payment,
    delivery,
    aftersales,
    reseller,
)


def published_events() -> list[type[Event]]:
    """Every event declared in this catalogue, sorted by `(event_type, schema_version)`:
    what goes on Kafka, and what needs a schema snapshot. Events declared elsewhere
    (the shared machinery's own tests use aggregate types under `test.`) are not
    published."""
    return [
        cls
        for cls in EVENT_REGISTRY.all()
        if cls.__module__.startswith(f"{__name__}.") and not cls.aggregate_type.startswith("test.")
    ]


def catalogue_order(events: list[type[Event]]) -> list[type[Event]]:
    """`events` grouped by aggregate in the order of DESIGN §2 (`AGGREGATE_BASES`),
    each group in declaration order, which follows the aggregate's life."""

    def position(event: type[Event]) -> tuple[int, int, int]:
        module_names = list(vars(sys.modules[event.__module__]))
        declared = module_names.index(event.__name__) if event.__name__ in module_names else 0
        base = aggregate_base_of(event)
        return (AGGREGATE_BASES.index(base), declared, event.schema_version)

    return sorted(events, key=position)


def aggregate_base_of(event: type[Event]) -> type[AggregateEvent]:
    """The per-aggregate base an event class derives from."""
    for base in AGGREGATE_BASES:
        if issubclass(event, base):
            return base
    raise LookupError(f"{event.__name__} derives from no aggregate base")


__all__ = [
    "AGGREGATE_BASES",
    "SERVICE_MODULES",
    "AggregateEvent",
    "ArrivalConfirmed",
    "BlockReason",
    "CancelReason",
    "CompensationApproved",
    "CompletedBy",
    "CouponEvent",
    "CouponHeld",
    "CouponIssued",
    "CouponKind",
    "CouponRedeemed",
    "CouponReleased",
    "CouponScope",
    "DelistReason",
    "DeliveryChannel",
    "DeliveryEvent",
    "DeliveryFailed",
    "DeliveryFailure",
    "DeliveryMode",
    "DepositBelowMinimum",
    "DepositChangeCause",
    "DepositChanged",
    "DepositEvent",
    "DiscountFunder",
    "EscalationLevel",
    "EscalationReason",
    "FlagReason",
    "FlashSaleScheduled",
    "FundsSettled",
    "IdentityVerified",
    "IssueCategory",
    "KeyDelivered",
    "KeyReplaced",
    "KeyReplacementFailed",
    "KeyReservationFailed",
    "KeyReserved",
    "KeysBlocked",
    "KeysImported",
    "KeysReleased",
    "KeysSold",
    "KeysVoided",
    "KycTier",
    "OfferDelisted",
    "OfferEvent",
    "OfferListed",
    "OfferPriceChanged",
    "OfferPriceTiersSet",
    "OfferPricingEvent",
    "OrderCancelled",
    "OrderCompleted",
    "OrderDelivered",
    "OrderEvent",
    "OrderPaid",
    "OrderPlaced",
    "OrderRefundRequested",
    "OrderRefunded",
    "OrderReserved",
    "PaymentChannel",
    "PaymentConfirmed",
    "PaymentEvent",
    "PaymentFailed",
    "PaymentFailure",
    "PaymentInitiated",
    "PaymentRefunded",
    "PaymentReversed",
    "PhoneVerified",
    "PoolEvent",
    "PriceTier",
    "ProductEvent",
    "ProductKind",
    "ProductPublished",
    "RefundReason",
    "RefundSource",
    "ReleaseReason",
    "Remedy",
    "ReplacementApproved",
    "ReplacementFailure",
    "ReplacementKeysAllocated",
    "ResellerApproved",
    "ResellerCredentialIssued",
    "ResellerCredentialRevoked",
    "ResellerEvent",
    "ResellerMarkupSet",
    "ResellerOrderClosed",
    "ResellerOrderDelivered",
    "ResellerOrderEvent",
    "ResellerOrderRequested",
    "ResellerOrderState",
    "ResellerWebhookSet",
    "ReservationFailure",
    "Resolution",
    "ReversalReason",
    "Role",
    "SellerApproved",
    "SellerCategory",
    "SellerEvent",
    "SellerFlagCleared",
    "SellerFlagged",
    "StockChanged",
    "SuspensionReason",
    "TicketEscalated",
    "TicketEvent",
    "TicketOpened",
    "TicketResolved",
    "UserEvent",
    "UserRegistered",
    "UserSuspended",
    "VoidReason",
    "aggregate_base_of",
    "catalogue_order",
    "is_sensitive_name",
    "published_events",
]
