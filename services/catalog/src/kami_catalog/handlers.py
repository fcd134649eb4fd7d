"""Command handlers and reactions: load an aggregate, let it decide, save.

Operators manage categories and publish products; sellers list, reprice and
withdraw offers; buyers review. Reactions to other services' events take a
seller's offers off sale (deposit below minimum, suspension, critical flag)
and put them back when the seller's standing is clear again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from kami_catalog.domain.category import Category, check_slug
from kami_catalog.domain.errors import Rejected
from kami_catalog.domain.offer import Offer, OfferStatus, OfferTerms, SellerStanding, offer_id_for
from kami_catalog.domain.product import Product, ProductSpec
from kami_catalog.domain.review import Review, ReviewedOffer, review_id_for
from kami_events.catalogue.catalog import DelistReason
from kami_events.clock import Clock, utc_now
from kami_events.envelope import Envelope
from kami_events.repository import AggregateRepository
from kami_events.store import CommitContext, ConcurrencyError, EventStore

T = TypeVar("T")

MAX_CATEGORY_DEPTH = 32
MAX_ATTEMPTS = 5


class CatalogFacts(Protocol):
    """What the handlers read from the read models."""

    async def standing_of(self, seller_id: str, now: datetime) -> SellerStanding: ...

    async def completed_order_of(self, buyer_id: str, offer_id: str) -> str | None: ...

    async def offer_ids_of_seller(self, seller_id: str) -> list[str]: ...

    async def offers_awaiting_suspension_end(self, now: datetime) -> list[str]: ...


@dataclass(frozen=True)
class Request:
    """Who asks, and the id that correlates what the command commits."""

    actor_id: str
    request_id: str

    @property
    def context(self) -> CommitContext:
        return CommitContext(correlation_id=self.request_id, causation_id=self.request_id)


async def _nothing() -> None:
    return None


class CatalogHandlers:
    def __init__(
        self,
        *,
        store: EventStore,
        private_store: EventStore,
        facts: CatalogFacts,
        clock: Clock = utc_now,
        after_commit: Callable[[], Awaitable[object]] = _nothing,
    ) -> None:
        self.categories = AggregateRepository(private_store, Category)
        self.products = AggregateRepository(store, Product)
        self.offers = AggregateRepository(store, Offer)
        self.reviews = AggregateRepository(private_store, Review)
        self._facts = facts
        self._clock = clock
        self._after_commit = after_commit

    # -- categories (operators) ---------------------------------------------------------------

    async def add_category(
        self, request: Request, *, slug: str, name: str, parent_id: str | None
    ) -> Category:
        check_slug(slug)
        parent_path = await self._ancestry(parent_id) if parent_id else None
        category = await self.categories.get(slug) or Category(slug)
        category.add(name, parent_path, by=request.actor_id)
        try:
            await self._save(self.categories, category, request.context)
        except ConcurrencyError:
            raise Rejected.conflict(
                "category_exists", f"Category {slug!r} already exists."
            ) from None
        return category

    async def rename_category(self, request: Request, *, slug: str, name: str) -> Category:
        async def attempt() -> Category:
            category = await self._existing_category(slug)
            category.rename(name, by=request.actor_id)
            await self._save(self.categories, category, request.context)
            return category

        return await _retrying(attempt)

    async def move_category(
        self, request: Request, *, slug: str, parent_id: str | None
    ) -> Category:
        async def attempt() -> Category:
            category = await self._existing_category(slug)
            parent_path = await self._ancestry(parent_id) if parent_id else None
            category.move(parent_path, by=request.actor_id)
            await self._save(self.categories, category, request.context)
            return category

        return await _retrying(attempt)

    async def _existing_category(self, slug: str) -> Category:
        category = await self.categories.get(slug)
        if category is None:
            raise Rejected.not_found("category_not_found", f"No category {slug!r}.")
        return category

    async def _ancestry(self, category_id: str) -> list[str]:
        """The slugs from the root down to `category_id`, from the event store."""
        path: list[str] = []
        current: str | None = category_id
        while current is not None:
            if current in path or len(path) >= MAX_CATEGORY_DEPTH:
                raise Rejected.invalid("category_cycle", "The category tree is too deep.")
            category = await self.categories.get(current)
            if category is None:
                raise Rejected.not_found("category_not_found", f"No category {current!r}.")
            path.append(current)
            current = category.parent_id
        return path[::-1]

    # -- products (operators) -----------------------------------------------------------------

    async def publish_product(
        self, request: Request, *, product_id: str, spec: ProductSpec
    ) -> tuple[Product, bool]:
        """Publish or republish; returns the product and whether anything changed."""
        if await self.categories.get(spec.category_id) is None:
            raise Rejected.not_found("category_not_found", f"No category {spec.category_id!r}.")

        async def attempt() -> tuple[Product, bool]:
            product = await self.products.get(product_id) or Product(product_id)
            changed = product.publish(spec)
            await self._save(self.products, product, request.context)
            return product, changed

        return await _retrying(attempt)

    # -- offers (sellers) ---------------------------------------------------------------------

    async def list_offer(self, request: Request, *, product_id: str, terms: OfferTerms) -> Offer:
        seller_id = request.actor_id
        product = await self.products.get(product_id)
        if product is None:
            raise Rejected.not_found("product_not_found", f"No product {product_id!r}.")
        offer_id = offer_id_for(seller_id, product_id)

        async def attempt() -> Offer:
            offer = await self.offers.get(offer_id) or Offer(offer_id)
            offer.list_on_sale(
                seller_id=seller_id,
                product_id=product_id,
                product_delivery_mode=product.delivery_mode,
                terms=terms,
                standing=await self._facts.standing_of(seller_id, self._clock()),
            )
            await self._save(self.offers, offer, request.context)
            return offer

        await _retrying(attempt)
        # The standing may have changed while the offer was being listed, before
        # the reaction that delists the seller's offers could see it.
        await self.enforce_standing(seller_id, request.context, only=[offer_id])
        return await self._offer(offer_id)

    async def change_offer_price(
        self, request: Request, *, offer_id: str, unit_price: int
    ) -> Offer:
        async def attempt() -> Offer:
            offer = await self._offer(offer_id)
            offer.change_price(seller_id=request.actor_id, unit_price=unit_price)
            await self._save(self.offers, offer, request.context)
            return offer

        return await _retrying(attempt)

    async def withdraw_offer(self, request: Request, *, offer_id: str) -> Offer:
        async def attempt() -> Offer:
            offer = await self._offer(offer_id)
            offer.withdraw(seller_id=request.actor_id)
            await self._save(self.offers, offer, request.context)
            return offer

        return await _retrying(attempt)

    async def delist_by_operator(
        self, request: Request, *, offer_id: str, detail: str | None
    ) -> Offer:
        async def attempt() -> Offer:
            offer = await self._offer(offer_id)
            offer.delist(DelistReason.OPERATOR, detail)
            await self._save(self.offers, offer, request.context)
            return offer

        return await _retrying(attempt)

    async def _offer(self, offer_id: str) -> Offer:
        offer = await self.offers.get(offer_id)
        if offer is None:
            raise Rejected.not_found("offer_not_found", f"No offer {offer_id!r}.")
        return offer

    # -- reviews (buyers) ---------------------------------------------------------------------

    async def review_offer(
        self, request: Request, *, offer_id: str, rating: int, comment: str | None
    ) -> Review:
        offer = await self._offer(offer_id)
        buyer_id = request.actor_id
        review = Review(review_id_for(offer_id, buyer_id))
        existing = await self.reviews.get(review.id)
        review = existing or review
        review.post(
            buyer_id=buyer_id,
            offer=ReviewedOffer(offer_id, offer.product_id, offer.seller_id),
            completed_order_id=await self._facts.completed_order_of(buyer_id, offer_id),
            rating=rating,
            comment=comment,
        )
        try:
            await self._save(self.reviews, review, request.context)
        except ConcurrencyError:
            # The same buyer's other request got there first.
            raise Rejected.conflict(
                "already_reviewed", "You have already reviewed this offer."
            ) from None
        return review

    # -- reactions to the seller's standing -----------------------------------------------------

    async def react_to_standing(self, seller_id: str, cause: Envelope[Any]) -> int:
        """After an event changed a seller's standing: delist or restore its offers."""
        context = CommitContext(
            correlation_id=cause.correlation_id,
            causation_id=str(cause.event_id),
            traceparent=cause.traceparent,
        )
        return await self.enforce_standing(seller_id, context)

    async def enforce_standing(
        self, seller_id: str, context: CommitContext, *, only: list[str] | None = None
    ) -> int:
        """Make the seller's offers agree with its standing; returns how many changed.
        Idempotent: an offer already in the right state is left alone."""
        standing = await self._facts.standing_of(seller_id, self._clock())
        offer_ids = only if only is not None else await self._facts.offer_ids_of_seller(seller_id)
        changed = 0
        for offer_id in offer_ids:
            changed += await _retrying(partial(self._align, offer_id, standing, context))
        return changed

    async def _align(self, offer_id: str, standing: SellerStanding, context: CommitContext) -> int:
        offer = await self.offers.get(offer_id)
        if offer is None or offer.status is OfferStatus.NEW:
            return 0
        blocked = standing.blocking_reason()
        changed = offer.delist(blocked) if blocked is not None else offer.restore(standing)
        if changed:
            await self._save(self.offers, offer, context)
        return int(changed)

    async def restore_after_suspensions(self) -> int:
        """Poller: a suspension with an end date sends no event when it ends."""
        restored = 0
        for offer_id in await self._facts.offers_awaiting_suspension_end(self._clock()):
            offer = await self.offers.get(offer_id)
            if offer is None:
                continue
            context = CommitContext(correlation_id=offer_id, causation_id="suspension-ended")
            restored += await self.enforce_standing(offer.seller_id, context, only=[offer_id])
        return restored

    # -- saving -------------------------------------------------------------------------------

    async def _save(
        self, repository: AggregateRepository[Any], aggregate: Any, context: CommitContext
    ) -> None:
        if not aggregate.pending_events:
            return
        await repository.save(aggregate, context)
        await self._after_commit()


async def _retrying(attempt: Callable[[], Awaitable[T]]) -> T:
    """Load-decide-save again when another writer committed to the stream first."""
    for remaining in range(MAX_ATTEMPTS - 1, -1, -1):
        try:
            return await attempt()
        except ConcurrencyError:
            if not remaining:
                raise
    raise AssertionError("unreachable")
