"""Inventory's read model and journals on the real FerretDB."""

from __future__ import annotations

from datetime import datetime, timedelta

from pymongo.asynchronous.database import AsyncDatabase

from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.inventory import BlockReason, KeysBlocked, StockChanged
from kami_events.clock import ManualClock, utc_now
from kami_events.mongo import Document
from kami_events.store import MongoEventStore
from kami_inventory.app import MongoAdapters, build_inventory
from kami_inventory.domain.imports import FileFormat
from kami_inventory.domain.keys import KeyStatus, PoolKey
from kami_inventory.domain.offers import Offer
from kami_inventory.domain.stock import BookedStock, LiveStock, StockLevels
from kami_inventory.handlers import (
    ImportKeys,
    VoidKeys,
    block_expiring_keys,
    import_keys,
    record_offer_delisted,
    record_offer_listed,
    void_seller_keys,
)
from tests.conftest import Servers
from tests.integration.inventory.conftest import PoolOnMongo, settings_for
from tests.unit.inventory.samples import SELLER, offer_delisted, offer_listed


async def test_offer_events_apply_in_stream_order_and_replays_change_nothing(
    pool: PoolOnMongo,
) -> None:
    inv = pool.inventory
    await record_offer_listed(offer_listed("offer-1"), 1, inv)
    await record_offer_delisted(offer_delisted("offer-1"), 2, inv)
    # A redelivered (older) OfferListed does not relist it.
    await record_offer_listed(offer_listed("offer-1"), 1, inv)
    assert await inv.offers.get("offer-1") == Offer(
        "offer-1", SELLER, "product-1", DeliveryMode.AUTO, listed=False
    )
    await record_offer_listed(offer_listed("offer-1"), 3, inv)
    offer = await inv.offers.get("offer-1")
    assert offer is not None and offer.listed
    assert [o.offer_id for o in await inv.offers.of_seller(SELLER)] == ["offer-1"]
    assert await inv.offers.of_seller("someone-else") == []


async def test_expiring_keys_are_blocked_and_a_seller_void_is_replayable(
    pool: PoolOnMongo,
) -> None:
    inv = pool.inventory
    await record_offer_listed(offer_listed("offer-1"), 1, inv)
    now = utc_now()
    content = "".join(
        f"BLOCK-TEST-{n:02d},{(now + timedelta(hours=hours)).isoformat()}\n"
        for n, hours in enumerate([2, 12, 72, 96])
    )
    report, _ = await import_keys(
        ImportKeys(SELLER, "offer-1", "import-1", FileFormat.CSV, content), inv
    )
    assert report.imported == 4

    assert await block_expiring_keys(inv) == 2  # within the one-day margin

    levels = await inv.keys.stock("offer-1", utc_now())
    assert (levels.available, levels.blocked) == (2, 2)
    events = [e.payload for e in await pool.store.load("inventory.pool", "offer-1")]
    (blocked,) = [e for e in events if isinstance(e, KeysBlocked)]
    assert blocked.reason is BlockReason.NEAR_EXPIRY and len(blocked.key_ids) == 2

    available = [k.key_id for k in await inv.keys.page("offer-1", KeyStatus.AVAILABLE, None, 10)]
    command = VoidKeys(SELLER, "offer-1", (available[0],), "void-1")
    first = await void_seller_keys(command, inv)
    again = await void_seller_keys(command, inv)
    assert first == again and first.voided == (available[0],)
    events = [e.payload for e in await pool.store.load("inventory.pool", "offer-1")]
    assert [type(e).__name__ for e in events].count("KeysVoided") == 1


async def test_the_near_expiry_job_blocks_exactly_the_keys_inside_the_margin(
    servers: Servers, mongo_db: AsyncDatabase[Document]
) -> None:
    clock = ManualClock(utc_now().replace(microsecond=0))
    adapters = MongoAdapters.on(mongo_db, clock=clock)
    await adapters.ensure_indexes()
    store = MongoEventStore(mongo_db, producer="inventory", clock=clock)
    await store.ensure_indexes()
    settings = settings_for(servers, "inventory")
    inv = build_inventory(store, adapters, settings, clock=clock)
    margin = settings.expiry_margin
    await record_offer_listed(offer_listed("offer-1"), 1, inv)
    expiries = {
        "EDGE-INSIDE": margin - timedelta(seconds=1),
        "EDGE-AT": margin,
        "EDGE-OUTSIDE": margin + timedelta(seconds=1),
        "EDGE-FAR": margin + timedelta(hours=1),
    }
    content = "".join(f"{key},{(clock() + d).isoformat()}\n" for key, d in expiries.items())
    report, _ = await import_keys(
        ImportKeys(SELLER, "offer-1", "import-edge", FileFormat.CSV, content), inv
    )
    assert report.imported == 4

    def expiries_of(keys: list[PoolKey]) -> set[datetime]:
        return {k.expires_at for k in keys}

    assert await block_expiring_keys(inv) == 2
    blocked = await inv.keys.page("offer-1", KeyStatus.BLOCKED, None, 10)
    assert expiries_of(blocked) == {
        clock() + expiries["EDGE-INSIDE"],
        clock() + expiries["EDGE-AT"],
    }
    assert {k.reason for k in blocked} == {BlockReason.NEAR_EXPIRY.value}
    assert await block_expiring_keys(inv) == 0  # nothing new inside the margin

    clock.advance(timedelta(seconds=1))  # the next key reaches the margin
    assert await block_expiring_keys(inv) == 1
    levels = await inv.keys.stock("offer-1", clock())
    assert (levels.available, levels.blocked) == (1, 3)
    events = [e.payload for e in await store.load("inventory.pool", "offer-1")]
    stock = [e for e in events if isinstance(e, StockChanged)]
    assert stock[-1].available == 1  # catalog's stock dropped with each block


async def test_the_stock_book_keeps_the_counts_of_the_newest_commit(pool: PoolOnMongo) -> None:
    book = pool.adapters.stock_book
    await book.record("offer-1", 3, LiveStock(available=5, reserved=2))
    # A slower writer that counted before commit 3 does not roll the counts back.
    await book.record("offer-1", 2, LiveStock(available=7, reserved=1))
    await book.record("offer-2", 1, LiveStock(available=10))
    assert await book.all() == {
        "offer-1": BookedStock(3, StockLevels(available=5, reserved=2)),
        "offer-2": BookedStock(1, StockLevels(available=10)),
    }
    await book.record_settled("offer-1", 3, StockLevels(available=9, sold=4, voided=1))
    await book.record("offer-1", 4, LiveStock(available=4, reserved=2))
    # Settled counts of an older version than the kept ones change nothing.
    await book.record_settled("offer-1", 2, StockLevels(sold=1))

    booked = (await book.all())["offer-1"]
    assert booked == BookedStock(4, StockLevels(available=4, reserved=2, sold=4, voided=1), 3)
    assert booked.settled_behind
