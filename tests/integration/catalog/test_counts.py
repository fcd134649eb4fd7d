"""An offer's and a seller's counts are kept as each fact changes, once per
fact version, instead of being recounted from their whole history; a seller
whose facts predate the counts starts from them."""

from __future__ import annotations

from typing import Any

from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.delivery import (
    DeliveryChannel,
    DeliveryFailed,
    DeliveryFailure,
    KeyDelivered,
)
from tests.integration.catalog.conftest import CatalogUnderTest


def delivered(delivery_id: str, seller_id: str = "s-a") -> KeyDelivered:
    return KeyDelivered(
        delivery_id=delivery_id,
        order_id=f"o-{delivery_id}",
        buyer_id="b-1",
        offer_id="offer-1",
        seller_id=seller_id,
        key_ids=["k-1"],
        channels=[DeliveryChannel.VAULT],
        mode=DeliveryMode.AUTO,
    )


def failed(delivery_id: str, seller_id: str = "s-a") -> DeliveryFailed:
    return DeliveryFailed(
        delivery_id=delivery_id,
        order_id=f"o-{delivery_id}",
        buyer_id="b-1",
        offer_id="offer-1",
        seller_id=seller_id,
        reason=DeliveryFailure.KEY_INVALID,
        key_ids=["k-1"],
        faulty_key_ids=["k-1"],
    )


async def seller(c: CatalogUnderTest, seller_id: str = "s-a") -> dict[str, Any]:
    doc = await c.service.read_models.sellers.find_one({"_id": seller_id})
    assert doc is not None
    return doc


async def apply(c: CatalogUnderTest, *envelopes: Any) -> None:
    """As a redelivery past the inbox would: the projection itself, again."""
    for envelope in envelopes:
        await c.service.read_models.apply(envelope)
    await c.service.read_models.recount()


async def test_a_delivery_s_outcome_moves_its_seller_s_counts_once(
    catalog: CatalogUnderTest,
) -> None:
    c = catalog
    first = c.envelope(failed("d-1"), producer="delivery")
    then = c.envelope(delivered("d-1"), producer="delivery")  # the same delivery, later
    other = c.envelope(delivered("d-2"), producer="delivery")
    await apply(c, first)
    assert (await seller(c))["deliveries_failed"] == 1

    await apply(c, then, other)
    counts = await seller(c)
    assert (counts["deliveries_succeeded"], counts["deliveries_failed"]) == (2, 0)

    await apply(c, then, first, other)  # again, and an older outcome late
    counts = await seller(c)
    assert (counts["deliveries_succeeded"], counts["deliveries_failed"]) == (2, 0)


async def test_a_seller_s_counts_start_from_the_facts_kept_before_them(
    catalog: CatalogUnderTest,
) -> None:
    c = catalog
    models = c.service.read_models
    # Facts of a seller written before counts were kept (no bucket of its own).
    await models.deliveries.insert_many(
        [
            {"_id": "d-old-1", "seller_id": "s-z", "outcome": "delivered", "version": 1},
            {"_id": "d-old-2", "seller_id": "s-z", "outcome": "delivered", "version": 1},
            {"_id": "d-old-3", "seller_id": "s-z", "outcome": "failed", "version": 1},
        ]
    )
    await models.tickets.insert_one({"_id": "t-old", "seller_id": "s-z"})

    await apply(c, c.envelope(delivered("d-new", "s-z"), producer="delivery"))
    counts = await seller(c, "s-z")
    assert (
        counts["deliveries_succeeded"],
        counts["deliveries_failed"],
        counts["tickets_opened"],
    ) == (3, 1, 1)
    # Another process (which remembers nothing) reads the same counts.
    assert (await type(models)(c.service.runtime.db).counts.read("seller:s-z"))[
        "deliveries_succeeded"
    ] == 3
