"""The catalog's aggregates: categories, products, offers, reviews."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kami_catalog.domain.category import Category
from kami_catalog.domain.errors import Rejected
from kami_catalog.domain.events import CategoryAdded, CategoryMoved, OfferReviewed
from kami_catalog.domain.offer import Offer, OfferStatus, OfferTerms, SellerStanding, offer_id_for
from kami_catalog.domain.product import Product, ProductSpec
from kami_catalog.domain.review import Review, ReviewedOffer, review_id_for
from kami_events.catalogue.catalog import (
    BuyerFieldSpec,
    DelistReason,
    OfferDelisted,
    OfferListed,
    OfferPriceChanged,
    ProductKind,
    ProductPublished,
)
from kami_events.catalogue.common import DeliveryMode

CLEAR = SellerStanding("s-1")
AUTO = OfferTerms(unit_price=9_500, delivery_mode=DeliveryMode.AUTO, max_quantity_per_order=5)


class _Matching:
    """`with rejected("code"):` asserts a `Rejected` with that code is raised."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: object, tb: object) -> bool:
        assert isinstance(exc, Rejected), f"expected Rejected({self.code}), got {exc!r}"
        assert exc.code == self.code, exc.code
        return True


def spec(**changes: object) -> ProductSpec:
    values: dict[str, object] = {
        "name": "原神 空月祝福 月卡",
        "category_id": "genshin",
        "kind": ProductKind.GAME_POINTS,
        "delivery_mode": DeliveryMode.MANUAL,
        "face_value": 3000,
        "aliases": ["原神月卡", "Genshin Welkin Moon"],
        "scope": "中国大陆官服",
        "validity_days": 365,
        "usage_rules": "兑换后30天内每日登录领取",
        "binds_to_account": True,
        "buyer_fields": [
            BuyerFieldSpec(name="uid", label="游戏UID", pattern=r"^[1-9][0-9]{8}$"),
            BuyerFieldSpec(name="server", label="服务器", choices=["天空岛", "世界树"]),
        ],
    }
    values.update(changes)
    return ProductSpec.model_validate(values)


# -- categories -------------------------------------------------------------------------------


def test_a_category_is_added_under_its_parent_and_keeps_its_slug() -> None:
    category = Category("genshin")
    category.add(" 原神 ", ["games"], by="op")
    assert category.pending_events == (
        CategoryAdded(category_id="genshin", name="原神", parent_id="games", added_by="op"),
    )
    with _Matching("category_exists"):
        category.add("原神", ["games"], by="op")


def test_slugs_are_lowercase_words_joined_by_hyphens() -> None:
    for bad in ("Genshin", "gen shin", "-genshin", "genshin--x", "原神", ""):
        with _Matching("invalid_slug"):
            Category(bad).add("原神", None, by="op")


def test_a_category_cannot_move_into_its_own_subtree() -> None:
    games = Category.rehydrate(
        "games", [CategoryAdded(category_id="games", name="游戏", parent_id=None, added_by="op")]
    )
    with _Matching("category_cycle"):
        games.move(["games", "genshin"], by="op")
    assert games.move(None, by="op") is False  # already a root
    assert games.move(["entertainment"], by="op") is True
    assert games.pending_events == (
        CategoryMoved(
            category_id="games", parent_id="entertainment", previous_parent_id=None, moved_by="op"
        ),
    )


def test_renaming_to_the_same_name_changes_nothing() -> None:
    games = Category.rehydrate(
        "games", [CategoryAdded(category_id="games", name="游戏", parent_id=None, added_by="op")]
    )
    assert games.rename("游戏", by="op") is False
    assert games.rename("游戏娱乐", by="op") is True
    with _Matching("category_not_found"):
        Category("nothing").rename("x", by="op")


# -- products ---------------------------------------------------------------------------------


def test_publishing_carries_every_detail_buyers_see() -> None:
    product = Product("p-1")
    assert product.publish(spec()) is True
    (event,) = product.pending_events
    assert isinstance(event, ProductPublished)
    assert event.required_buyer_fields == ["uid", "server"]
    assert event.face_value == 3000
    assert event.scope == "中国大陆官服"
    assert event.delivery_mode is DeliveryMode.MANUAL
    assert [f.label for f in event.buyer_fields] == ["游戏UID", "服务器"]


def test_republishing_the_same_details_is_a_no_op_but_new_details_publish_again() -> None:
    product = Product("p-1")
    product.publish(spec())
    product.mark_committed()
    assert product.publish(spec()) is False
    assert product.publish(spec(usage_rules="每日登录领取")) is True
    with _Matching("delivery_mode_fixed"):
        product.publish(
            spec(delivery_mode=DeliveryMode.AUTO, binds_to_account=False, buyer_fields=[])
        )


def test_account_bound_products_need_buyer_fields_and_only_they_have_them() -> None:
    with pytest.raises(ValidationError, match="needs buyer_fields"):
        spec(buyer_fields=[])
    with pytest.raises(ValidationError, match="only for products that bind"):
        spec(binds_to_account=False)
    with pytest.raises(ValidationError, match="not a regular expression"):
        BuyerFieldSpec(name="uid", label="UID", pattern="([")
    with pytest.raises(ValidationError, match="secret"):
        BuyerFieldSpec(name="game_password", label="密码")


# -- offers -----------------------------------------------------------------------------------


def listed_offer() -> Offer:
    offer = Offer(offer_id_for("s-1", "p-1"))
    offer.list_on_sale(
        seller_id="s-1",
        product_id="p-1",
        product_delivery_mode=DeliveryMode.AUTO,
        terms=AUTO,
        standing=CLEAR,
    )
    offer.mark_committed()
    return offer


def test_one_offer_per_seller_and_product() -> None:
    assert offer_id_for("s-1", "p-1") == offer_id_for("s-1", "p-1")
    assert offer_id_for("s-1", "p-1") != offer_id_for("s-2", "p-1")


def test_listing_emits_the_full_terms() -> None:
    offer = Offer("o-1")
    terms = OfferTerms(
        unit_price=2_800,
        delivery_mode=DeliveryMode.MANUAL,
        manual_delivery_sla_minutes=30,
        guarantee_window_minutes=60,
        min_quantity_per_order=1,
        max_quantity_per_order=3,
    )
    offer.list_on_sale(
        seller_id="s-1",
        product_id="p-1",
        product_delivery_mode=DeliveryMode.MANUAL,
        terms=terms,
        standing=CLEAR,
    )
    assert offer.pending_events == (
        OfferListed(
            offer_id="o-1",
            product_id="p-1",
            seller_id="s-1",
            unit_price=2_800,
            delivery_mode=DeliveryMode.MANUAL,
            manual_delivery_sla_minutes=30,
            guarantee_window_minutes=60,
            min_quantity_per_order=1,
            max_quantity_per_order=3,
        ),
    )


def test_account_bound_products_are_delivered_manually() -> None:
    with _Matching("delivery_mode_not_allowed"):
        Offer("o-1").list_on_sale(
            seller_id="s-1",
            product_id="p-1",
            product_delivery_mode=DeliveryMode.MANUAL,
            terms=AUTO,
            standing=CLEAR,
        )


def test_terms_are_consistent() -> None:
    with pytest.raises(ValidationError, match="manual_delivery_sla_minutes"):
        OfferTerms(unit_price=1, delivery_mode=DeliveryMode.MANUAL, max_quantity_per_order=1)
    with pytest.raises(ValidationError, match="only for manual"):
        OfferTerms(
            unit_price=1,
            delivery_mode=DeliveryMode.AUTO,
            manual_delivery_sla_minutes=30,
            max_quantity_per_order=1,
        )
    with pytest.raises(ValidationError, match="exceeds"):
        OfferTerms(
            unit_price=1,
            delivery_mode=DeliveryMode.AUTO,
            min_quantity_per_order=5,
            max_quantity_per_order=2,
        )
    with pytest.raises(ValidationError):
        OfferTerms(unit_price=0, delivery_mode=DeliveryMode.AUTO, max_quantity_per_order=1)


@pytest.mark.parametrize(
    ("standing", "code"),
    [
        (SellerStanding("s-1", deposit_below_minimum=True), "seller_deposit_below_minimum"),
        (SellerStanding("s-1", suspended=True), "seller_seller_suspended"),
        (SellerStanding("s-1", flagged_critical=True), "seller_seller_flagged"),
    ],
)
def test_a_seller_in_bad_standing_cannot_list(standing: SellerStanding, code: str) -> None:
    offer = Offer("o-1")
    with _Matching(code):
        offer.list_on_sale(
            seller_id="s-1",
            product_id="p-1",
            product_delivery_mode=DeliveryMode.AUTO,
            terms=AUTO,
            standing=standing,
        )
    assert offer.pending_events == ()


def test_price_changes_only_on_a_listed_offer_of_ones_own() -> None:
    offer = listed_offer()
    assert offer.change_price(seller_id="s-1", unit_price=9_500) is False
    assert offer.change_price(seller_id="s-1", unit_price=9_300) is True
    assert offer.pending_events == (
        OfferPriceChanged(
            offer_id=offer.id,
            product_id="p-1",
            seller_id="s-1",
            old_unit_price=9_500,
            new_unit_price=9_300,
        ),
    )
    with _Matching("not_your_offer"):
        offer.change_price(seller_id="s-2", unit_price=1)
    offer.withdraw(seller_id="s-1")
    with _Matching("offer_not_listed"):
        offer.change_price(seller_id="s-1", unit_price=9_000)


def test_delisting_is_idempotent_and_relisting_takes_new_terms() -> None:
    offer = listed_offer()
    assert offer.delist(DelistReason.SELLER_REQUEST) is True
    assert offer.delist(DelistReason.SELLER_REQUEST) is False
    assert isinstance(offer.pending_events[-1], OfferDelisted)
    with _Matching("offer_already_listed"):
        listed_offer().list_on_sale(
            seller_id="s-1",
            product_id="p-1",
            product_delivery_mode=DeliveryMode.AUTO,
            terms=AUTO,
            standing=CLEAR,
        )
    cheaper = AUTO.model_copy(update={"unit_price": 9_000})
    offer.list_on_sale(
        seller_id="s-1",
        product_id="p-1",
        product_delivery_mode=DeliveryMode.AUTO,
        terms=cheaper,
        standing=CLEAR,
    )
    assert offer.status is OfferStatus.LISTED
    assert offer.terms == cheaper


def test_only_an_operator_lifts_an_operator_delist() -> None:
    offer = listed_offer()
    offer.delist(DelistReason.OPERATOR, "counterfeit reports")
    with _Matching("offer_delisted_by_operator"):
        offer.list_on_sale(
            seller_id="s-1",
            product_id="p-1",
            product_delivery_mode=DeliveryMode.AUTO,
            terms=AUTO,
            standing=CLEAR,
        )
    assert offer.restore(CLEAR) is False


def test_an_offer_delisted_for_the_sellers_standing_is_restored_once_clear() -> None:
    offer = listed_offer()
    offer.delist(DelistReason.DEPOSIT_BELOW_MINIMUM)
    assert offer.restore(SellerStanding("s-1", deposit_below_minimum=True)) is False
    assert offer.restore(SellerStanding("s-1", suspended=True)) is False
    assert offer.restore(CLEAR) is True
    restored = offer.pending_events[-1]
    assert isinstance(restored, OfferListed)
    assert restored.unit_price == AUTO.unit_price
    # A seller who withdrew the offer keeps it withdrawn.
    withdrawn = listed_offer()
    withdrawn.withdraw(seller_id="s-1")
    assert withdrawn.restore(CLEAR) is False


# -- reviews ----------------------------------------------------------------------------------

OFFER = ReviewedOffer("o-1", "p-1", "s-1")


def test_only_a_buyer_with_a_completed_order_reviews_and_only_once() -> None:
    review = Review(review_id_for("o-1", "b-1"))
    with _Matching("review_not_allowed"):
        review.post(buyer_id="b-1", offer=OFFER, completed_order_id=None, rating=5, comment=None)
    review.post(buyer_id="b-1", offer=OFFER, completed_order_id="ord-1", rating=4, comment=" 秒到 ")
    (event,) = review.pending_events
    assert isinstance(event, OfferReviewed)
    assert (event.rating, event.comment, event.order_id) == (4, "秒到", "ord-1")
    with _Matching("already_reviewed"):
        review.post(buyer_id="b-1", offer=OFFER, completed_order_id="ord-1", rating=5, comment=None)


def test_ratings_are_one_to_five_stars() -> None:
    for rating in (0, 6):
        with _Matching("invalid_rating"):
            Review("r").post(
                buyer_id="b-1", offer=OFFER, completed_order_id="o", rating=rating, comment=None
            )


def test_review_ids_are_one_per_offer_and_buyer() -> None:
    assert review_id_for("o-1", "b-1") == review_id_for("o-1", "b-1")
    assert review_id_for("o-1", "b-1") != review_id_for("o-1", "b-2")
