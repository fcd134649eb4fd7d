"""The event catalogue: every DESIGN §2 event exists, on the right topic, and
behaves on the wire (round trip, strictness, money, time, no secrets)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from kami_events import catalogue
from kami_events.catalogue.markdown import updated_page
from kami_events.envelope import Envelope
from kami_events.event import EVENT_REGISTRY, Event
from kami_events.money import CurrencyMismatch, Money
from kami_events.serialization import MalformedEvent, decode, decode_document, encode
from kami_events.topics import topic_for
from tests.unit.events.catalogue_samples import NOW, ORDER, SAMPLES

REPO = Path(__file__).resolve().parents[3]

# DESIGN §2, word for word: producer -> events.
DESIGN_EVENTS: dict[str, set[str]] = {
    "identity": {
        "UserRegistered",
        "PhoneVerified",
        "IdentityVerified",
        "SellerApproved",
        "UserSuspended",
    },
    "catalog": {"ProductPublished", "OfferListed", "OfferPriceChanged", "OfferDelisted"},
    "ordering": {
        "OrderPlaced",
        "OrderPaid",
        "OrderCompleted",
        "OrderCancelled",
        "OrderRefundRequested",
    },
    "inventory": {
        "KeysImported",
        "KeyReserved",
        "KeyReservationFailed",
        "KeysReleased",
        "KeysSold",
        "KeysBlocked",
        "StockChanged",
    },
    "payment": {
        "PaymentInitiated",
        "PaymentConfirmed",
        "PaymentFailed",
        "PaymentReversed",
        "PaymentRefunded",
        "FundsSettled",
        "DepositChanged",
        "DepositBelowMinimum",
    },
    "delivery": {"KeyDelivered", "DeliveryFailed", "ArrivalConfirmed"},
    "aftersales": {
        "TicketOpened",
        "TicketEscalated",
        "TicketResolved",
        "CompensationApproved",
        "SellerFlagged",
    },
}
# Saga steps with no core event of their own (see docs/events.md).
EXTRA_EVENTS: dict[str, set[str]] = {
    "ordering": {"OrderReserved", "OrderDelivered", "OrderRefunded"},
    # A replacement key from the pool: allocated (or not), then delivered.
    "inventory": {"KeysVoided", "ReplacementKeysAllocated", "KeyReplacementFailed"},
    "delivery": {"KeyReplaced"},
    # A flag lifted once the seller's issue rate is back under the threshold;
    # a replacement key approved for an upheld claim.
    "aftersales": {"SellerFlagCleared", "ReplacementApproved"},
    # Resellers (issue 15): approval, credentials, markups and their orders.
    "reseller": {
        "ResellerApproved",
        "ResellerCredentialIssued",
        "ResellerCredentialRevoked",
        "ResellerMarkupSet",
        "ResellerWebhookSet",
        "ResellerOrderRequested",
        "ResellerOrderDelivered",
        "ResellerOrderClosed",
    },
}
# Commerce (docs/commerce.md): coupons, quantity tiers and flash sales, and the
# coupon's use as the order goes.
EXTRA_EVENTS["ordering"] |= {
    "CouponIssued",
    "OfferPriceTiersSet",
    "FlashSaleScheduled",
    "CouponHeld",
    "CouponReleased",
    "CouponRedeemed",
}
EXPECTED_TOPICS = {
    "kami.identity.user.v1",
    "kami.catalog.product.v1",
    "kami.catalog.offer.v1",
    "kami.ordering.order.v1",
    "kami.ordering.coupon.v1",
    "kami.ordering.offer_pricing.v1",
    "kami.inventory.pool.v1",
    "kami.payment.payment.v1",
    "kami.payment.deposit.v1",
    "kami.delivery.delivery.v1",
    "kami.aftersales.ticket.v1",
    "kami.aftersales.seller.v1",
    "kami.reseller.reseller.v1",
    "kami.reseller.order.v1",
}

PUBLISHED = catalogue.published_events()
MONEY_WORDS = {"amount", "price", "total", "fee", "balance", "minimum", "limit", "gross", "net"}
MONEY_WORDS |= {"shortfall", "value"}


def ids(events: list[type[Event]]) -> list[str]:
    return [e.__name__ for e in events]


def wrap(event: Event, **overrides: Any) -> Envelope[Any]:
    assert isinstance(event, catalogue.AggregateEvent)
    arguments: dict[str, Any] = {
        "producer": event.aggregate_type.split(".")[0],
        "aggregate_id": event.aggregate_id,
        "aggregate_version": 3,
        "correlation_id": ORDER,
        "occurred_at": NOW,
        "causation_id": "5c1b7a2e-0000-4000-8000-00000000beef",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    }
    return Envelope.wrap(event, **{**arguments, **overrides})


# -- the catalogue is complete and well placed ---------------------------------------------------


@pytest.mark.parametrize("service", sorted(DESIGN_EVENTS))
def test_every_design_event_is_registered_under_its_producer(service: str) -> None:
    for name in DESIGN_EVENTS[service]:
        event = EVENT_REGISTRY.lookup(name, 1)
        assert event.aggregate_type.split(".")[0] == service, name
        assert event.__module__ == f"kami_events.catalogue.{service}", name
        assert event.__name__ == name


def test_the_catalogue_is_exactly_the_design_events_plus_the_saga_steps() -> None:
    expected = {
        (service, name)
        for events in (DESIGN_EVENTS, EXTRA_EVENTS)
        for service, names in events.items()
        for name in names
    }
    actual = {(e.aggregate_type.split(".")[0], e.event_type) for e in PUBLISHED}
    assert actual == expected


def test_one_topic_per_aggregate_type() -> None:
    assert {e.topic() for e in PUBLISHED} == EXPECTED_TOPICS
    assert {b.topic() for b in catalogue.AGGREGATE_BASES} == EXPECTED_TOPICS
    assert catalogue.OrderPlaced.topic() == topic_for("ordering.order") == "kami.ordering.order.v1"
    assert catalogue.KeyReserved.topic() == "kami.inventory.pool.v1"


@pytest.mark.parametrize("event", PUBLISHED, ids=ids(PUBLISHED))
def test_every_event_names_its_aggregate_id_in_a_required_field(event: type[Event]) -> None:
    base = catalogue.aggregate_base_of(event)
    assert issubclass(event, catalogue.AggregateEvent)
    assert [b for b in catalogue.AGGREGATE_BASES if issubclass(event, b)] == [base]
    field = event.model_fields[base.aggregate_id_field]
    assert field.is_required()
    assert field.annotation is str


def test_the_library_declares_events_only_in_the_catalogue() -> None:
    stray = [
        e
        for e in EVENT_REGISTRY.all()
        if e.__module__.startswith("kami_events.") and e not in PUBLISHED
    ]
    assert stray == []


def test_every_event_is_exported_and_uniquely_named() -> None:
    exported = {getattr(catalogue, name) for name in catalogue.__all__}
    assert set(PUBLISHED) <= exported
    names = [e.__name__ for e in PUBLISHED]
    assert len(names) == len(set(names))


def test_every_event_and_aggregate_is_documented() -> None:
    for cls in [*PUBLISHED, *catalogue.AGGREGATE_BASES]:
        assert cls.__doc__ and len(cls.__doc__.split()) >= 8, cls.__name__
    for event in PUBLISHED:
        # Who reads it: every event says so.
        assert "onsume" in (event.__doc__ or ""), event.__name__


def test_shared_definitions_mean_the_same_everywhere() -> None:
    """AsyncAPI merges every event's `$defs` into one namespace: a name must not
    mean two different schemas."""
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    for event in PUBLISHED:
        for name, schema in event.model_json_schema().get("$defs", {}).items():
            if name in seen:
                assert seen[name][1] == schema, f"{name} differs in {seen[name][0]} and {event}"
            seen[name] = (event.__name__, schema)


# -- every event on the wire ---------------------------------------------------------------------


def test_every_event_has_a_sample() -> None:
    assert set(SAMPLES) == set(PUBLISHED)
    for event_type, sample in SAMPLES.items():
        assert type(sample) is event_type


@pytest.mark.parametrize("event", PUBLISHED, ids=ids(PUBLISHED))
def test_round_trip_through_the_wire(event: type[Event]) -> None:
    envelope = wrap(SAMPLES[event])
    raw = encode(envelope)

    decoded = decode(raw)

    assert type(decoded.payload) is event
    assert decoded.payload == SAMPLES[event]
    assert decoded == envelope
    assert decode_document(json.loads(raw)) == envelope
    assert decoded.kafka_key == SAMPLES[event].aggregate_id.encode()  # type: ignore[attr-defined]
    assert decoded.kafka_headers()["event_type"] == event.event_type


@pytest.mark.parametrize("event", PUBLISHED, ids=ids(PUBLISHED))
def test_unknown_fields_are_rejected(event: type[Event]) -> None:
    document = SAMPLES[event].model_dump(mode="json")
    with pytest.raises(ValidationError, match="surprise"):
        event.model_validate({**document, "surprise": "!"})
    wire = wrap(SAMPLES[event]).to_document()
    wire["payload"]["surprise"] = "!"
    with pytest.raises(MalformedEvent, match="surprise"):
        decode_document(wire)


@pytest.mark.parametrize("event", PUBLISHED, ids=ids(PUBLISHED))
def test_missing_required_fields_are_rejected(event: type[Event]) -> None:
    document = SAMPLES[event].model_dump(mode="json")
    for name, field in event.model_fields.items():
        if field.is_required():
            incomplete = {k: v for k, v in document.items() if k != name}
            with pytest.raises(ValidationError, match=name):
                event.model_validate(incomplete)


@pytest.mark.parametrize("event", PUBLISHED, ids=ids(PUBLISHED))
def test_events_are_immutable(event: type[Event]) -> None:
    sample = SAMPLES[event]
    name = next(iter(event.model_fields))
    with pytest.raises(ValidationError):
        setattr(sample, name, "changed")


def test_enum_values_travel_as_plain_strings() -> None:
    wire = json.loads(encode(wrap(SAMPLES[catalogue.OrderCancelled])))
    assert wire["payload"]["reason"] == "payment_timeout"
    for event in PUBLISHED:
        for name, schema in event.model_json_schema().get("$defs", {}).items():
            for value in schema.get("enum", []):
                assert re.fullmatch(r"[a-z][a-z0-9_]*", value), (name, value)


# -- money ---------------------------------------------------------------------------------------


def money_fields() -> list[tuple[type[Event], str]]:
    found = []
    for event in PUBLISHED:
        for name, node in event.model_json_schema()["properties"].items():
            branches = node.get("anyOf", [node])
            if any(b.get("x-unit") == "fen" for b in branches):
                found.append((event, name))
    return found


MONEY_FIELDS = money_fields()


def test_every_amount_is_an_integer_number_of_fen() -> None:
    """A field whose name says money is declared in fen (an int), and nothing else is."""
    marked = {(e, n) for e, n in MONEY_FIELDS}
    for event in PUBLISHED:
        for name, node in event.model_json_schema()["properties"].items():
            words = set(name.split("_"))
            if words & MONEY_WORDS:
                assert (event, name) in marked, f"{event.__name__}.{name} is not Fen"
                branches = [b for b in node.get("anyOf", [node]) if b.get("type") != "null"]
                assert [b["type"] for b in branches] == ["integer"]
    c = catalogue
    for known in [
        (c.OrderPlaced, "unit_price"),
        (c.OrderPlaced, "total"),
        (c.OrderRefundRequested, "amount"),
        (c.PaymentRefunded, "amount"),
        (c.FundsSettled, "platform_fee"),
        (c.IdentityVerified, "daily_payment_limit"),
        (c.CompensationApproved, "amount"),
        (c.DepositBelowMinimum, "shortfall"),
    ]:
        assert known in marked


@pytest.mark.parametrize(
    ("event", "name"), MONEY_FIELDS, ids=[f"{e.__name__}.{n}" for e, n in MONEY_FIELDS]
)
def test_amounts_reject_floats_strings_booleans_and_negatives(
    event: type[Event], name: str
) -> None:
    document = SAMPLES[event].model_dump(mode="json")
    for bad in (1.5, 100.0, "100", True, -1):
        with pytest.raises(ValidationError, match=name):
            event.model_validate({**document, name: bad})
    # And on the wire, where JSON has only "numbers": 100.0 is still not fen.
    wire = wrap(SAMPLES[event]).to_document()
    wire["payload"][name] = 100.0
    with pytest.raises(MalformedEvent):
        decode(json.dumps(wire))


def test_cross_field_money_rules() -> None:
    placed = SAMPLES[catalogue.OrderPlaced].model_dump()
    with pytest.raises(ValidationError, match="unit_price"):
        catalogue.OrderPlaced.model_validate({**placed, "total": placed["total"] - 1})
    settled = SAMPLES[catalogue.FundsSettled].model_dump()
    with pytest.raises(ValidationError, match="platform_fee"):
        catalogue.FundsSettled.model_validate({**settled, "net": settled["net"] + 1})
    below = SAMPLES[catalogue.DepositBelowMinimum].model_dump()
    with pytest.raises(ValidationError, match="shortfall"):
        catalogue.DepositBelowMinimum.model_validate({**below, "shortfall": 1})
    with pytest.raises(ValidationError):
        catalogue.OrderPlaced.model_validate({**placed, "unit_price": 0, "total": 0})


def test_only_renminbi() -> None:
    placed = SAMPLES[catalogue.OrderPlaced].model_dump()
    assert placed["currency"] == "CNY"
    with pytest.raises(ValidationError, match="currency"):
        catalogue.OrderPlaced.model_validate({**placed, "currency": "USD"})


def test_money_value_object() -> None:
    price = Money.parse_yuan("96.50")
    assert price.amount == 9_650
    assert price * 2 == Money.fen(19_300)
    assert (price * 2 - price).yuan() == "96.50"
    assert str(Money.fen(5)) == "0.05 CNY"
    assert Money.fen(1) > Money.zero()
    assert not Money.zero()
    with pytest.raises(ValueError, match="negative"):
        _ = Money.fen(1) - Money.fen(2)
    with pytest.raises(TypeError):
        _ = price * 1.5  # type: ignore[operator]
    with pytest.raises(CurrencyMismatch):
        _ = price + Money.model_construct(amount=1, currency="USD")  # type: ignore[arg-type]
    for text in ("1.005", "-1", "1e3", "", "abc", "NaN", "Infinity", "1_000"):
        with pytest.raises(ValueError):  # noqa: PT011 - each is a plain ValueError
            Money.parse_yuan(text)
    with pytest.raises(ValidationError):
        Money(amount=1.5)


# -- time ----------------------------------------------------------------------------------------


def test_timestamps_must_be_aware_and_are_kept_in_utc() -> None:
    document = SAMPLES[catalogue.KeyReserved].model_dump()
    with pytest.raises(ValidationError, match="expires_at"):
        catalogue.KeyReserved.model_validate({**document, "expires_at": datetime(2026, 3, 1, 12)})
    shanghai = timezone(timedelta(hours=8))
    local = datetime(2026, 3, 1, 20, 16, tzinfo=shanghai)
    reserved = catalogue.KeyReserved.model_validate({**document, "expires_at": local})
    assert reserved.expires_at == local
    assert reserved.expires_at.utcoffset() == timedelta(0)
    assert reserved.model_dump(mode="json")["expires_at"] == "2026-03-01T12:16:00Z"


# -- secrets never travel ------------------------------------------------------------------------

# Names that denote a secret: as a whole word of a snake_case name...
SECRET_WORDS = {"secret", "plaintext", "password", "passwd", "pwd", "otp", "code", "pin", "cvv"}
# ...or anywhere in it.
SECRET_FRAGMENTS = ("secret", "plaintext", "password", "id_number", "idnumber", "key_value")


def names_in(schema: Any) -> set[str]:
    """Every property name and map key pattern anywhere in a JSON Schema."""
    found: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in ("properties", "patternProperties") and isinstance(value, dict):
                found |= set(value)
            found |= names_in(value)
    elif isinstance(schema, list):
        for item in schema:
            found |= names_in(item)
    return found


def is_secret_name(name: str) -> bool:
    if name.endswith("_masked"):
        return False
    lowered = name.lower()
    return bool(set(lowered.split("_")) & SECRET_WORDS) or any(
        fragment in lowered for fragment in SECRET_FRAGMENTS
    )


def test_the_secret_detector_detects() -> None:
    for name in ("key_secret", "plaintext", "otp", "sms_code", "id_number", "key_value", "pin"):
        assert is_secret_name(name), name
    for name in ("key_ids", "order_id", "phone_masked", "id_number_masked", "opened_by"):
        assert not is_secret_name(name), name


@pytest.mark.parametrize("event", PUBLISHED, ids=ids(PUBLISHED))
def test_no_event_has_a_field_for_a_secret(event: type[Event]) -> None:
    from kami_events.schema_snapshots import envelope_schema

    names = names_in(envelope_schema(event))
    assert "payload" in names
    assert [n for n in names if is_secret_name(n)] == []


def test_buyer_fields_refuse_secret_names() -> None:
    placed = SAMPLES[catalogue.OrderPlaced].model_dump()
    for name in ("account_password", "pin", "sms_code", "otp", "pay_pwd", "idnumber"):
        with pytest.raises(ValidationError, match="secret"):
            catalogue.OrderPlaced.model_validate({**placed, "buyer_fields": {name: "x"}})
        assert catalogue.is_sensitive_name(name)
    published = SAMPLES[catalogue.ProductPublished].model_dump()
    with pytest.raises(ValidationError, match="secret"):
        catalogue.ProductPublished.model_validate(
            {**published, "required_buyer_fields": ["game_password"]}
        )
    assert not catalogue.is_sensitive_name("game_account")


def test_phone_numbers_travel_masked_only() -> None:
    registered = SAMPLES[catalogue.UserRegistered].model_dump()
    with pytest.raises(ValidationError, match="phone_masked"):
        catalogue.UserRegistered.model_validate({**registered, "phone_masked": "13812341234"})


# -- domain rules that protect consumers ---------------------------------------------------------


def test_manual_delivery_sla_goes_with_manual_offers_only() -> None:
    listed = SAMPLES[catalogue.OfferListed].model_dump()
    with pytest.raises(ValidationError, match="manual"):
        catalogue.OfferListed.model_validate({**listed, "manual_delivery_sla_minutes": 30})
    with pytest.raises(ValidationError, match="manual"):
        catalogue.OfferListed.model_validate({**listed, "delivery_mode": "manual"})
    manual = catalogue.OfferListed.model_validate(
        {**listed, "delivery_mode": "manual", "manual_delivery_sla_minutes": 30}
    )
    assert manual.delivery_mode is catalogue.DeliveryMode.MANUAL


def test_deliveries_name_their_keys() -> None:
    delivered = SAMPLES[catalogue.KeyDelivered].model_dump()
    with pytest.raises(ValidationError, match="at least one key"):
        catalogue.KeyDelivered.model_validate({**delivered, "key_ids": []})
    manual = catalogue.KeyDelivered.model_validate({**delivered, "key_ids": [], "mode": "manual"})
    assert manual.key_ids == []
    with pytest.raises(ValidationError, match="repeat"):
        catalogue.KeyDelivered.model_validate({**delivered, "channels": ["sms", "sms"]})
    failed = SAMPLES[catalogue.DeliveryFailed].model_dump()
    with pytest.raises(ValidationError, match="faulty_key_ids"):
        catalogue.DeliveryFailed.model_validate({**failed, "faulty_key_ids": ["k-9999"]})


def test_reservations_hold_at_least_one_key() -> None:
    reserved = SAMPLES[catalogue.KeyReserved].model_dump()
    with pytest.raises(ValidationError, match="key_ids"):
        catalogue.KeyReserved.model_validate({**reserved, "key_ids": []})


def test_ids_are_checked_for_shape() -> None:
    placed = SAMPLES[catalogue.OrderPlaced].model_dump()
    for bad in ("", " x", "a" * 65, "order/1", "../etc"):
        with pytest.raises(ValidationError, match="order_id"):
            catalogue.OrderPlaced.model_validate({**placed, "order_id": bad})
    UUID(placed["order_id"])  # the samples use what Kami mints


# -- the human catalogue -------------------------------------------------------------------------


def test_docs_events_md_is_up_to_date() -> None:
    page = (REPO / "docs" / "events.md").read_text(encoding="utf-8")
    assert updated_page(page) == page, (
        "docs/events.md is out of date: run `uv run kami-events catalogue-md` and commit it"
    )
    for event in PUBLISHED:
        assert f"#### `{event.event_type}` v{event.schema_version}" in page
