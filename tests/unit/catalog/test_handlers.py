"""Command handlers and reactions on in-memory stores: load, decide, save."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kami_catalog.domain.errors import Rejected
from kami_catalog.domain.events import CategoryAdded, CategoryMoved, OfferReviewed
from kami_catalog.domain.offer import OfferStatus, OfferTerms, SellerStanding, offer_id_for
from kami_catalog.domain.product import ProductSpec
from kami_catalog.handlers import Request
from kami_events.catalogue.catalog import (
    DelistReason,
    OfferDelisted,
    OfferListed,
    ProductKind,
    ProductPublished,
)
from kami_events.catalogue.common import DeliveryMode
from kami_events.catalogue.payment import DepositBelowMinimum
from kami_events.envelope import Envelope
from tests.unit.catalog.fakes import CAUSE, OPERATOR, Catalog, make_catalog, seller

AUTO = OfferTerms(unit_price=9_500, delivery_mode=DeliveryMode.AUTO, max_quantity_per_order=5)


def topup(name: str = "中国移动 话费充值卡 100元") -> ProductSpec:
    return ProductSpec(
        name=name,
        category_id="mobile-topup",
        kind=ProductKind.PHONE_TOPUP,
        delivery_mode=DeliveryMode.AUTO,
        face_value=10_000,
    )


async def with_tree(catalog: Catalog) -> None:
    h = catalog.handlers
    await h.add_category(OPERATOR, slug="life", name="生活服务", parent_id=None)
    await h.add_category(OPERATOR, slug="mobile-topup", name="话费充值", parent_id="life")


async def with_product(catalog: Catalog, product_id: str = "p-1") -> None:
    await with_tree(catalog)
    await catalog.handlers.publish_product(OPERATOR, product_id=product_id, spec=topup())


async def code_of(awaitable: object) -> str:
    with pytest.raises(Rejected) as caught:
        await awaitable  # type: ignore[misc]
    return caught.value.code


async def test_categories_form_a_tree_kept_in_the_private_store() -> None:
    catalog = make_catalog()
    await with_tree(catalog)
    h = catalog.handlers
    assert await code_of(h.add_category(OPERATOR, slug="x", name="X", parent_id="nowhere")) == (
        "category_not_found"
    )
    assert await code_of(h.add_category(OPERATOR, slug="life", name="生活", parent_id=None)) == (
        "category_exists"
    )
    assert await code_of(h.move_category(OPERATOR, slug="life", parent_id="mobile-topup")) == (
        "category_cycle"
    )
    await h.add_category(OPERATOR, slug="games", name="游戏娱乐", parent_id=None)
    await h.move_category(OPERATOR, slug="mobile-topup", parent_id="games")
    private = [e.payload for e in catalog.private_store.committed]
    assert isinstance(private[0], CategoryAdded) and private[0].parent_id is None
    assert private[-1] == CategoryMoved(
        category_id="mobile-topup", parent_id="games", previous_parent_id="life", moved_by="op-1"
    )
    # Categories never reach Kafka: nothing went to the published store.
    assert catalog.store.committed == []


async def test_a_product_is_published_into_an_existing_category_once() -> None:
    catalog = make_catalog()
    h = catalog.handlers
    assert await code_of(h.publish_product(OPERATOR, product_id="p-1", spec=topup())) == (
        "category_not_found"
    )
    await with_tree(catalog)
    product, changed = await h.publish_product(OPERATOR, product_id="p-1", spec=topup())
    assert changed and product.version == 1
    _, changed_again = await h.publish_product(OPERATOR, product_id="p-1", spec=topup())
    assert not changed_again
    (published,) = catalog.store.committed
    assert isinstance(published.payload, ProductPublished)
    assert published.correlation_id == OPERATOR.request_id


async def test_a_seller_lists_an_offer_and_relists_the_same_one() -> None:
    catalog = make_catalog()
    await with_product(catalog)
    h = catalog.handlers
    offer = await h.list_offer(seller("s-1"), product_id="p-1", terms=AUTO)
    assert offer.id == offer_id_for("s-1", "p-1") and offer.status is OfferStatus.LISTED
    assert await code_of(h.list_offer(seller("s-1"), product_id="nope", terms=AUTO)) == (
        "product_not_found"
    )
    await h.change_offer_price(seller("s-1"), offer_id=offer.id, unit_price=9_300)
    assert (
        await code_of(h.change_offer_price(seller("s-2"), offer_id=offer.id, unit_price=1))
        == "not_your_offer"
    )
    await h.withdraw_offer(seller("s-1"), offer_id=offer.id)
    relisted = await h.list_offer(seller("s-1"), product_id="p-1", terms=AUTO)
    assert relisted.id == offer.id and relisted.version == 4
    assert catalog.published()[1:] == [
        "OfferListed",
        "OfferPriceChanged",
        "OfferDelisted",
        "OfferListed",
    ]


async def test_a_seller_below_the_deposit_minimum_cannot_list() -> None:
    catalog = make_catalog()
    await with_product(catalog)
    catalog.facts.standings["s-1"] = SellerStanding("s-1", deposit_below_minimum=True)
    code = await code_of(catalog.handlers.list_offer(seller("s-1"), product_id="p-1", terms=AUTO))
    assert code == "seller_deposit_below_minimum"
    assert catalog.published() == ["ProductPublished"]


async def test_standing_reactions_delist_and_restore_the_sellers_offers() -> None:
    catalog = make_catalog()
    await with_product(catalog, "p-1")
    await catalog.handlers.publish_product(OPERATOR, product_id="p-2", spec=topup("联通 100元"))
    h = catalog.handlers
    first = await h.list_offer(seller("s-1"), product_id="p-1", terms=AUTO)
    second = await h.list_offer(seller("s-1"), product_id="p-2", terms=AUTO)
    await h.withdraw_offer(seller("s-1"), offer_id=second.id)
    catalog.facts.offers["s-1"] = [first.id, second.id]

    catalog.facts.standings["s-1"] = SellerStanding("s-1", deposit_below_minimum=True)
    assert await h.enforce_standing("s-1", CAUSE) == 1  # the withdrawn one stays as it is
    assert await h.enforce_standing("s-1", CAUSE) == 0  # idempotent
    delisted = catalog.store.committed[-1]
    assert isinstance(delisted.payload, OfferDelisted)
    assert delisted.payload.reason is DelistReason.DEPOSIT_BELOW_MINIMUM
    assert (delisted.correlation_id, delisted.causation_id) == ("corr-1", "evt-1")

    catalog.facts.standings["s-1"] = SellerStanding("s-1")
    assert await h.enforce_standing("s-1", CAUSE) == 1
    restored = catalog.store.committed[-1].payload
    assert isinstance(restored, OfferListed) and restored.offer_id == first.id
    assert (await h.offers.get(second.id)).status is OfferStatus.DELISTED  # type: ignore[union-attr]


async def test_a_reaction_names_the_event_that_caused_it() -> None:
    catalog = make_catalog()
    await with_product(catalog)
    offer = await catalog.handlers.list_offer(seller("s-1"), product_id="p-1", terms=AUTO)
    catalog.facts.offers["s-1"] = [offer.id]
    catalog.facts.standings["s-1"] = SellerStanding("s-1", suspended=True)
    cause = Envelope.wrap(
        DepositBelowMinimum(seller_id="s-1", balance=0, minimum=50_000, shortfall=50_000),
        producer="payment",
        aggregate_id="s-1",
        aggregate_version=7,
        correlation_id="dep-1",
        occurred_at=catalog.clock(),
    )
    assert await catalog.handlers.react_to_standing("s-1", cause) == 1
    last = catalog.store.committed[-1]
    assert last.causation_id == str(cause.event_id)
    assert isinstance(last.payload, OfferDelisted)
    assert last.payload.reason is DelistReason.SELLER_SUSPENDED


async def test_offers_come_back_when_a_dated_suspension_ends() -> None:
    catalog = make_catalog()
    await with_product(catalog)
    offer = await catalog.handlers.list_offer(seller("s-1"), product_id="p-1", terms=AUTO)
    catalog.facts.offers["s-1"] = [offer.id]
    catalog.facts.standings["s-1"] = SellerStanding("s-1", suspended=True)
    catalog.facts.suspended_until["s-1"] = catalog.clock() + timedelta(days=1)
    await catalog.handlers.enforce_standing("s-1", CAUSE)
    assert await catalog.handlers.restore_after_suspensions() == 0
    catalog.clock.advance(timedelta(days=1))
    assert await catalog.handlers.restore_after_suspensions() == 1
    assert catalog.published()[-2:] == ["OfferDelisted", "OfferListed"]


async def test_reviews_need_a_completed_order_and_are_private() -> None:
    catalog = make_catalog()
    await with_product(catalog)
    offer = await catalog.handlers.list_offer(seller("s-1"), product_id="p-1", terms=AUTO)
    buyer = Request(actor_id="b-1", request_id="req-b")
    review = catalog.handlers.review_offer
    assert await code_of(review(buyer, offer_id=offer.id, rating=5, comment=None)) == (
        "review_not_allowed"
    )
    catalog.facts.completed[("b-1", offer.id)] = "ord-1"
    await review(buyer, offer_id=offer.id, rating=5, comment="秒到账")
    assert await code_of(review(buyer, offer_id=offer.id, rating=4, comment=None)) == (
        "already_reviewed"
    )
    assert await code_of(review(buyer, offer_id="o-x", rating=4, comment=None)) == (
        "offer_not_found"
    )
    reviewed = catalog.private_store.committed[-1].payload
    assert isinstance(reviewed, OfferReviewed)
    assert (reviewed.seller_id, reviewed.product_id, reviewed.order_id) == ("s-1", "p-1", "ord-1")
    assert "OfferReviewed" not in catalog.published()
