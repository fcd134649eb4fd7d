"""Importing a seller's key file into its offer's pool."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.inventory import KeysImported, StockChanged
from kami_inventory.domain.imports import FileFormat, ImportReport, Rejection, key_id_for
from kami_inventory.domain.keys import KeyStatus
from kami_inventory.domain.offers import NotAnAutoDeliveryOffer, NotYourOffer, OfferNotFound
from kami_inventory.handlers import (
    EmptyImport,
    ImportIdReused,
    ImportKeys,
    import_keys,
    record_product,
)
from tests.unit.inventory.fakes import Interrupted, World
from tests.unit.inventory.samples import OTHER_SELLER, SELLER, offer_listed, product_published

OFFER = "offer-1"


async def test_an_import_keeps_good_lines_and_reports_every_bad_one() -> None:
    world = World()
    await world.list_offer(offer_listed(OFFER))
    content = "\n".join(
        [
            "key,expires_at",
            "AAAA-0001,2026-12-31",
            "AAAA-0002,",
            "",
            "AAAA-0003,tomorrow",
            "AAAA-0004,2025-01-01",
            "AAAA-0001,2026-12-31",
            "X" * 41,
        ]
    )
    report = await world.import_file(OFFER, content)

    assert report.imported == 2
    assert [(r.line, r.reason) for r in report.rejected_lines] == [
        (4, Rejection.EMPTY),
        (5, Rejection.BAD_EXPIRY),
        (6, Rejection.EXPIRED),
        (7, Rejection.DUPLICATE_IN_FILE),
        (8, Rejection.TOO_LONG),
    ]
    assert (report.duplicates, report.rejected) == (1, 4)
    assert world.keys.by_status(OFFER, KeyStatus.AVAILABLE) == sorted(
        [key_id_for(OFFER, "import-1", 2), key_id_for(OFFER, "import-1", 3)]
    )
    imported, stock = world.events(OFFER)
    assert imported == KeysImported(
        offer_id=OFFER,
        seller_id=SELLER,
        product_id="product-1",
        batch_id="import-1",
        file_format="csv",
        imported=2,
        duplicates=1,
        rejected=4,
        earliest_expires_at=report.earliest_expires_at,
    )
    assert stock == StockChanged(offer_id=OFFER, available=2, reserved=0)


async def test_a_key_already_in_the_pool_is_a_duplicate_by_fingerprint() -> None:
    world = World()
    await world.list_offer(offer_listed(OFFER))
    await world.import_file(OFFER, "AAAA-0001\nAAAA-0002\n", file_format=FileFormat.TXT)
    second = await world.import_file(
        OFFER, "AAAA-0002\nAAAA-0003\n", import_id="import-2", file_format=FileFormat.TXT
    )
    assert second.imported == 1
    assert [(r.line, r.reason) for r in second.rejected_lines] == [(1, Rejection.DUPLICATE_IN_POOL)]
    assert len(world.keys.by_status(OFFER, KeyStatus.AVAILABLE)) == 3


async def test_the_same_key_may_sit_in_two_offers_pools() -> None:
    world = World()
    await world.list_offer(offer_listed(OFFER))
    await world.list_offer(offer_listed("offer-2"))
    await world.import_file(OFFER, "AAAA-0001\n", file_format=FileFormat.TXT)
    other = await world.import_file("offer-2", "AAAA-0001\n", file_format=FileFormat.TXT)
    assert other.imported == 1


async def test_repeating_an_import_returns_its_report_and_imports_nothing() -> None:
    world = World()
    await world.list_offer(offer_listed(OFFER))
    command = ImportKeys(SELLER, OFFER, "import-1", FileFormat.TXT, "AAAA-0001\nAAAA-0001\n")
    first, replayed_first = await import_keys(command, world.inventory)
    events = len(world.events())
    again, replayed = await import_keys(command, world.inventory)
    assert (replayed_first, replayed) == (False, True)
    assert again == first
    assert len(world.events()) == events
    assert len(world.keys.rows) == 1


async def test_an_import_id_cannot_be_reused_for_another_file() -> None:
    world = World()
    await world.list_offer(offer_listed(OFFER))
    await world.import_file(OFFER, "AAAA-0001\n", file_format=FileFormat.TXT)
    with pytest.raises(ImportIdReused):
        await world.import_file(OFFER, "AAAA-0002\n", file_format=FileFormat.TXT)


async def test_an_interrupted_import_finishes_on_retry_without_doubling_anything() -> None:
    world = World()
    await world.list_offer(offer_listed(OFFER))

    async def crash(offer_id: str, import_id: str, report: ImportReport) -> None:
        raise Interrupted("after the keys were stored")

    complete = world.imports.complete
    world.imports.complete = crash  # type: ignore[method-assign]
    with pytest.raises(Interrupted):
        await world.import_file(OFFER, "AAAA-0001\nAAAA-0002\n", file_format=FileFormat.TXT)
    world.imports.complete = complete  # type: ignore[method-assign]

    report = await world.import_file(OFFER, "AAAA-0001\nAAAA-0002\n", file_format=FileFormat.TXT)
    assert (report.imported, report.rejected_lines) == (2, ())  # its own keys are no duplicates
    assert world.event_types(OFFER) == ["KeysImported", "StockChanged"]
    assert len(world.keys.rows) == 2


async def test_keys_without_an_expiry_take_the_batch_expiry_then_the_products_validity() -> None:
    world = World()
    await world.list_offer(offer_listed(OFFER))
    now = world.clock()
    await record_product(product_published(validity_days=30), 1, world.inventory)
    await world.import_file(OFFER, "AAAA-0001\n", file_format=FileFormat.TXT)
    await world.import_file(
        OFFER,
        "AAAA-0002\n",
        import_id="import-2",
        file_format=FileFormat.TXT,
        expires_at=now + timedelta(days=7),
    )
    expiries = {k.key_id: k.expires_at for k in world.keys.keys.values()}
    assert expiries[key_id_for(OFFER, "import-1", 1)] == now + timedelta(days=30)
    assert expiries[key_id_for(OFFER, "import-2", 1)] == now + timedelta(days=7)


async def test_only_the_offers_seller_imports_into_an_auto_delivery_pool() -> None:
    world = World()
    await world.list_offer(offer_listed(OFFER))
    await world.list_offer(offer_listed("manual-1", mode=DeliveryMode.MANUAL))
    with pytest.raises(NotYourOffer):
        await world.import_file(OFFER, "AAAA-0001\n", seller_id=OTHER_SELLER)
    with pytest.raises(OfferNotFound):
        await world.import_file("offer-404", "AAAA-0001\n")
    with pytest.raises(NotAnAutoDeliveryOffer):
        await world.import_file("manual-1", "AAAA-0001\n")
    with pytest.raises(EmptyImport):
        await world.import_file(OFFER, "")
    assert world.keys.rows == {}


async def test_no_secret_is_stored_or_announced_in_the_clear() -> None:
    world = World()
    await world.list_offer(offer_listed(OFFER))
    await world.import_file(OFFER, "PLAINTEXT-SECRET-1\n", file_format=FileFormat.TXT)
    (row,) = world.keys.rows.values()
    assert b"PLAINTEXT-SECRET-1" not in row.sealed
    assert "PLAINTEXT" not in repr(row) + row.fingerprint
    assert all("PLAINTEXT" not in e.model_dump_json() for e in world.store.committed)
    (record,) = world.imports.records.values()
    assert "PLAINTEXT" not in repr(record)
