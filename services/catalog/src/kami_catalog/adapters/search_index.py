"""The search index: the products read model held in memory, with inverted
indexes from search terms to products.

FerretDB 1.24 (SQLite backend) answers only `_id` equality from an index;
every other filter or sort scans the whole collection (measured: about 0.1 ms
per document, so 10 s for 100k products). Search therefore runs here: the
index is loaded from the `products` collection at start, and the projector
refreshes the entries of the products it changes, by `_id`. A query
intersects the postings of its terms, filters and ranks the candidates in
Python, and pages with keyset cursors.

Kept lean for large catalogues: one slotted entry per product with what
search filters, ranks and lists by; postings for terms of names and of
aliases/brands; category names are indexed once per category, and a product
matches them through the categories on its path. A product's full details
stay in the read model (`GET /products/{id}`).
"""

from __future__ import annotations

import heapq
import sys
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from functools import partial
from operator import attrgetter, itemgetter
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from kami_catalog.domain.search import (
    ALIAS_WEIGHT,
    CATEGORY_WEIGHT,
    NAME_WEIGHT,
    NO_PRICE_ASC,
    NO_PRICE_DESC,
    SORT_KEYS,
    ParsedQuery,
    SortOrder,
    index_terms,
    score_match,
    squash,
)
from kami_events.mongo import Document

_PROJECTION = {
    field: 1
    for field in (
        "name",
        "kind",
        "category_id",
        "category_path",
        "category_names",
        "aliases",
        "brand",
        "face_value",
        "delivery_mode",
        "image_urls",
        "min_price",
        "sort_price",
        "sort_price_desc",
        "live_offers",
        "in_stock",
        "stock",
        "delivery_modes",
        "sales",
        "rating_milli",
        "rating_count",
        "demoted",
    )
}


@dataclass(slots=True)
class Entry:
    """What search keeps of one product. Indexable like a read-model document
    (`entry["sales"]`, `entry["_id"]`), which is what sort keys read."""

    product_id: str
    name: str
    kind: str
    category_id: str
    category_path: tuple[str, ...]
    category_names: tuple[str, ...]
    aliases: tuple[str, ...]
    brand: str | None
    face_value: int | None
    delivery_mode: str | None
    image_urls: tuple[str, ...]
    min_price: int | None
    sort_price: int
    sort_price_desc: int
    live_offers: int
    in_stock: bool
    stock: int
    delivery_modes: tuple[str, ...]
    sales: int
    rating_milli: int
    rating_count: int
    demoted: bool
    squashed_name: str
    squashed_aliases: tuple[str, ...]

    @classmethod
    def of(cls, doc: Document) -> Entry:
        aliases = tuple(doc.get("aliases") or ())
        return cls(
            product_id=str(doc["_id"]),
            name=doc["name"],
            kind=sys.intern(doc["kind"]),
            category_id=sys.intern(doc["category_id"]),
            category_path=tuple(sys.intern(c) for c in doc.get("category_path") or ()),
            category_names=tuple(sys.intern(c) for c in doc.get("category_names") or ()),
            aliases=aliases,
            brand=doc.get("brand"),
            face_value=doc.get("face_value"),
            delivery_mode=doc.get("delivery_mode"),
            image_urls=tuple(doc.get("image_urls") or ()),
            min_price=doc.get("min_price"),
            sort_price=_or(doc.get("sort_price"), NO_PRICE_ASC),
            sort_price_desc=_or(doc.get("sort_price_desc"), NO_PRICE_DESC),
            live_offers=_or(doc.get("live_offers"), 0),
            in_stock=bool(doc.get("in_stock")),
            stock=_or(doc.get("stock"), 0),
            delivery_modes=tuple(sys.intern(m) for m in doc.get("delivery_modes") or ()),
            sales=_or(doc.get("sales"), 0),
            rating_milli=_or(doc.get("rating_milli"), 0),
            rating_count=_or(doc.get("rating_count"), 0),
            demoted=bool(doc.get("demoted")),
            squashed_name=squash(doc["name"]),
            squashed_aliases=tuple(squash(a) for a in aliases),
        )

    def __getitem__(self, field: str) -> Any:
        return self.product_id if field == "_id" else getattr(self, field)

    def name_terms(self) -> set[str]:
        return index_terms(self.name)

    def alias_terms(self) -> set[str]:
        found: set[str] = set()
        for text in (*self.aliases, self.brand or ""):
            found |= index_terms(text)
        return found

    def as_document(self, *, relevance: int | None = None) -> Document:
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["_id"] = doc.pop("product_id")
        doc["relevance"] = relevance
        return doc


BROWSE_ORDERS = tuple(order for order in SortOrder if order is not SortOrder.RELEVANCE)


def _key_function(order: SortOrder) -> Callable[[Entry, int | None], tuple[Any, ...]]:
    """`domain.search.sort_key` for entries, without the per-field lookups of
    a mapping: the same tuple, built for every candidate of a search."""
    fields_ = [("product_id" if f == "_id" else f, d) for f, d in SORT_KEYS[order]]
    if fields_[0][0] == "relevance":
        rest = attrgetter(*(f for f, _ in fields_[1:]))
        signs = [d for _, d in fields_[1:]]
        return lambda e, score: (
            -(score or 0),
            *(-v if d < 0 else v for v, d in zip(rest(e), signs, strict=True)),
        )
    values = attrgetter(*(f for f, _ in fields_))
    signs = [d for _, d in fields_]
    return lambda e, score: tuple(-v if d < 0 else v for v, d in zip(values(e), signs, strict=True))


def _or(value: Any, missing: int) -> int:
    return missing if value is None else int(value)


class ProductIndex:
    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._name: dict[str, set[str]] = {}
        self._alias: dict[str, set[str]] = {}
        self._in_category: dict[str, set[str]] = {}
        self._category_name: dict[str, str] = {}
        self._category_terms: dict[str, set[str]] = {}
        # Every product's sort key in each browsing order, kept sorted: a page
        # without keywords starts at the cursor and stops when it is full.
        self._key_of = {order: _key_function(order) for order in BROWSE_ORDERS}
        self._sorted: dict[SortOrder, list[tuple[Any, ...]]] = {o: [] for o in BROWSE_ORDERS}

    def __len__(self) -> int:
        return len(self._entries)

    async def load(self, products: AsyncCollection[Document]) -> None:
        """Replace the index with the whole products read model."""
        self.clear()
        async for doc in products.find({}, _PROJECTION):
            if "name" in doc:
                self.put(doc, keep_sorted=False)
        for order, key_of in self._key_of.items():
            self._sorted[order] = sorted(key_of(e, None) for e in self._entries.values())

    async def refresh(self, products: AsyncCollection[Document], ids: Iterable[str]) -> None:
        """Re-read these products by `_id` (one point lookup each)."""
        for product_id in ids:
            doc = await products.find_one({"_id": product_id}, _PROJECTION)
            if doc is None or "name" not in doc:
                self.remove(product_id)
            else:
                self.put(doc)

    def clear(self) -> None:
        for mapping in (
            self._entries,
            self._name,
            self._alias,
            self._in_category,
            self._category_name,
            self._category_terms,
        ):
            mapping.clear()
        for keys in self._sorted.values():
            keys.clear()

    def put(self, doc: Document, *, keep_sorted: bool = True) -> None:
        entry = Entry.of(doc)
        self.remove(entry.product_id)
        self._entries[entry.product_id] = entry
        if keep_sorted:
            for order, key_of in self._key_of.items():
                insort(self._sorted[order], key_of(entry, None))
        for term in entry.name_terms():
            self._name.setdefault(term, set()).add(entry.product_id)
        for term in entry.alias_terms():
            self._alias.setdefault(term, set()).add(entry.product_id)
        for slug, name in zip(entry.category_path, entry.category_names, strict=False):
            self._in_category.setdefault(slug, set()).add(entry.product_id)
            self._name_category(slug, name)

    def remove(self, product_id: str) -> None:
        entry = self._entries.pop(product_id, None)
        if entry is None:
            return
        for order, key_of in self._key_of.items():
            keys, key = self._sorted[order], key_of(entry, None)
            at = bisect_left(keys, key)
            if at < len(keys) and keys[at] == key:
                del keys[at]
        _discard(self._name, entry.name_terms(), product_id)
        _discard(self._alias, entry.alias_terms(), product_id)
        _discard(self._in_category, entry.category_path, product_id)

    def _name_category(self, slug: str, name: str) -> None:
        old = self._category_name.get(slug)
        if old == name:
            return
        if old is not None:
            _discard(self._category_terms, index_terms(old), slug)
        self._category_name[slug] = name
        for term in index_terms(name):
            self._category_terms.setdefault(term, set()).add(slug)

    def _products_with(self, term: str) -> set[str]:
        found = self._name.get(term, set()) | self._alias.get(term, set())
        for slug in self._category_terms.get(term, ()):
            found |= self._in_category.get(slug, set())
        return found

    def _weight(self, product_id: str, entry: Entry, term: str) -> int:
        if product_id in self._name.get(term, ()):
            return NAME_WEIGHT
        if product_id in self._alias.get(term, ()):
            return ALIAS_WEIGHT
        slugs = self._category_terms.get(term, ())
        return CATEGORY_WEIGHT if any(s in slugs for s in entry.category_path) else 0

    def _candidates(self, query: ParsedQuery, filters: Document) -> Iterator[str]:
        sets: list[set[str]] = []
        if filters.get("category") is not None:
            sets.append(self._in_category.get(filters["category"], set()))
        sets.extend(self._products_with(term) for term in query.terms)
        if not sets:
            return iter(self._entries)
        sets.sort(key=len)
        return iter(sets[0].intersection(*sets[1:]))

    def search(
        self,
        query: ParsedQuery,
        filters: Document,
        order: SortOrder,
        after: tuple[Any, ...] | None,
        limit: int,
    ) -> list[Document]:
        """Up to `limit` products matching `query` and `filters`, strictly
        after the sort key `after`, in `order`, as documents. Those of a
        keyword search carry their `relevance`."""
        if query.empty and order in self._sorted:
            return self._browse(filters, order, after, limit)
        key_of = _key_function(order)
        rows: list[tuple[tuple[Any, ...], Entry, int | None]] = []
        for product_id in self._candidates(query, filters):
            entry = self._entries[product_id]
            if not _matches(entry, filters):
                continue
            score = None
            if not query.empty:
                score = score_match(
                    query,
                    partial(self._weight, product_id, entry),
                    entry.squashed_name,
                    entry.squashed_aliases,
                )
            key = key_of(entry, score)
            if after is None or key > after:
                rows.append((key, entry, score))
        best = heapq.nsmallest(limit, rows, key=itemgetter(0))
        return [entry.as_document(relevance=score) for _, entry, score in best]

    def _browse(
        self, filters: Document, order: SortOrder, after: tuple[Any, ...] | None, limit: int
    ) -> list[Document]:
        keys = self._sorted[order]
        category = filters.get("category")
        members = self._in_category.get(category, set()) if category is not None else None
        page: list[Document] = []
        for at in range(bisect_right(keys, after) if after is not None else 0, len(keys)):
            product_id = keys[at][-1]
            if members is not None and product_id not in members:
                continue
            entry = self._entries[product_id]
            if _matches(entry, filters):
                page.append(entry.as_document())
                if len(page) == limit:
                    break
        return page


def _discard(postings: dict[str, set[str]], keys: Iterable[str], value: str) -> None:
    for key in keys:
        posting = postings.get(key)
        if posting is not None:
            posting.discard(value)
            if not posting:
                del postings[key]


def _matches(entry: Entry, filters: Document) -> bool:
    if not _within(entry.face_value, filters.get("face_value")):
        return False
    if not _within(entry.min_price, filters.get("price")):
        return False
    mode = filters.get("delivery_mode")
    if mode is not None and mode not in entry.delivery_modes:
        return False
    return not (filters.get("in_stock") and not entry.in_stock)


def _within(value: int | None, bounds: tuple[int | None, int | None] | None) -> bool:
    if bounds is None:
        return True
    low, high = bounds
    if value is None:
        return False
    return (low is None or value >= low) and (high is None or value <= high)
