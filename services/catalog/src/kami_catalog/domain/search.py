"""Keyword search that works for Chinese and Latin text, without a `$text` index.

Chinese has no spaces between words, so a product's searchable text is
indexed as character bigrams of each run of CJK characters (原神空月 → 原神,
神空, 空月), plus single characters, plus the bigram across a space between
two CJK runs; Latin letters and digits become lowercase word tokens (`Steam`
→ `steam`, `100元` → `100`, 元). Full-width characters are folded first
(NFKC), so `１００` finds `100`. The terms are stored on the product document
(`terms`) and indexed in memory (`adapters/search_index.py`); a query matches
the products that have every one of its bigrams and words.

Relevance is computed over the matching candidates: where a query term was
found (name > alias and brand > category name) and whether a whole query
segment occurs verbatim in the name or an alias.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from kami_catalog.domain.errors import Rejected

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# A run of CJK characters, or a run of other letters and digits.
_RUN = re.compile(rf"([{_CJK}]+)|([^\W_{_CJK}]+)")
# Two CJK runs separated by whitespace only.
_ACROSS_SPACE = re.compile(rf"([{_CJK}])\s+(?=([{_CJK}]))")

MAX_QUERY_LENGTH = 100
MAX_QUERY_TERMS = 24


def normalize(text: str) -> str:
    """Full-width to half-width, compatibility forms folded, lowercase."""
    return unicodedata.normalize("NFKC", text).lower()


def _runs(text: str) -> Iterable[tuple[str, bool]]:
    for match in _RUN.finditer(text):
        cjk, word = match.groups()
        yield (cjk, True) if cjk else (word, False)


def index_terms(text: str) -> set[str]:
    """Every term under which `text` can be found."""
    normalized = normalize(text)
    terms: set[str] = set()
    for run, is_cjk in _runs(normalized):
        if is_cjk:
            terms.update(run)
            terms.update(run[i : i + 2] for i in range(len(run) - 1))
        else:
            terms.add(run)
    for match in _ACROSS_SPACE.finditer(normalized):
        terms.add(match.group(1) + match.group(2))
    return terms


@dataclass(frozen=True)
class ParsedQuery:
    """A query split at whitespace into segments, and the terms that must match."""

    text: str
    segments: tuple[str, ...]
    terms: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.terms


def parse_query(text: str | None) -> ParsedQuery:
    raw = (text or "").strip()
    if len(raw) > MAX_QUERY_LENGTH:
        raise Rejected.invalid(
            "query_too_long", f"A search has at most {MAX_QUERY_LENGTH} characters."
        )
    normalized = normalize(raw)
    segments = tuple(s for s in normalized.split() if any(True for _ in _runs(s)))
    terms: list[str] = []
    for segment in segments:
        for run, is_cjk in _runs(segment):
            if is_cjk and len(run) > 1:
                terms.extend(run[i : i + 2] for i in range(len(run) - 1))
            else:
                terms.append(run)
    unique = tuple(dict.fromkeys(terms))
    if len(unique) > MAX_QUERY_TERMS:
        raise Rejected.invalid("query_too_long", "The search has too many words.")
    return ParsedQuery(raw, segments, unique)


@dataclass(frozen=True)
class SearchableText:
    """The text of one product that a query is matched against."""

    name: str
    aliases: Sequence[str] = ()
    brand: str | None = None
    category_names: Sequence[str] = ()

    def terms(self) -> set[str]:
        found = index_terms(self.name)
        for text in (*self.aliases, self.brand or "", *self.category_names):
            found |= index_terms(text)
        return found


NAME_WEIGHT = 30
ALIAS_WEIGHT = 20
CATEGORY_WEIGHT = 10
NAME_PHRASE_BONUS = 15
ALIAS_PHRASE_BONUS = 10
EXACT_NAME_BONUS = 50


def squash(text: str) -> str:
    """Normalized, without whitespace: for verbatim phrase matches."""
    return "".join(normalize(text).split())


@dataclass(frozen=True)
class ScoringText:
    """A product's text, tokenized once, for scoring queries against it."""

    name_terms: frozenset[str]
    alias_terms: frozenset[str]
    category_terms: frozenset[str]
    name: str
    aliases: tuple[str, ...]

    @classmethod
    def of(cls, product: SearchableText) -> ScoringText:
        alias_terms: set[str] = set()
        for text in (*product.aliases, product.brand or ""):
            alias_terms |= index_terms(text)
        category_terms: set[str] = set()
        for text in product.category_names:
            category_terms |= index_terms(text)
        return cls(
            name_terms=frozenset(index_terms(product.name)),
            alias_terms=frozenset(alias_terms),
            category_terms=frozenset(category_terms),
            name=squash(product.name),
            aliases=tuple(squash(a) for a in product.aliases),
        )

    def weight_of(self, term: str) -> int:
        if term in self.name_terms:
            return NAME_WEIGHT
        if term in self.alias_terms:
            return ALIAS_WEIGHT
        return CATEGORY_WEIGHT if term in self.category_terms else 0


def relevance(query: ParsedQuery, product: SearchableText | ScoringText) -> int:
    """How well `product` answers `query`: an integer, higher is better."""
    text = product if isinstance(product, ScoringText) else ScoringText.of(product)
    return score_match(query, text.weight_of, text.name, text.aliases)


def score_match(
    query: ParsedQuery,
    weight_of: Callable[[str], int],
    name: str,
    aliases: Sequence[str],
) -> int:
    """The relevance of a product given where each term occurs in it
    (`weight_of`) and its squashed name and aliases."""
    score = sum(weight_of(term) for term in query.terms)
    for segment in query.segments:
        if segment in name:
            score += NAME_PHRASE_BONUS
        elif any(segment in alias for alias in aliases):
            score += ALIAS_PHRASE_BONUS
    if query.segments and "".join(query.segments) == name:
        score += EXACT_NAME_BONUS
    return score


# -- ordering and pagination ------------------------------------------------------------------


class SortOrder(StrEnum):
    RELEVANCE = "relevance"
    PRICE_ASC = "price_asc"
    PRICE_DESC = "price_desc"
    SALES = "sales"
    RATING = "rating"


# Fields of the product read model each order sorts by, with directions; the
# product id last makes every key unique, so cursors never skip or repeat.
SORT_KEYS: dict[SortOrder, tuple[tuple[str, int], ...]] = {
    SortOrder.RELEVANCE: (("relevance", -1), ("sales", -1), ("_id", 1)),
    SortOrder.PRICE_ASC: (("sort_price", 1), ("_id", 1)),
    SortOrder.PRICE_DESC: (("sort_price_desc", -1), ("_id", 1)),
    SortOrder.SALES: (("sales", -1), ("_id", 1)),
    SortOrder.RATING: (("rating_milli", -1), ("sales", -1), ("_id", 1)),
}

# Products with no live offer sort after every priced one, in both directions.
NO_PRICE_ASC = 2**62
NO_PRICE_DESC = -1
# Products sold only by flagged sellers (demoted) sort after the others by
# price, before the unpriced ones: their sort price is shifted by this.
DEMOTED_OFFSET = 2**40


def effective_order(requested: SortOrder | None, query: ParsedQuery) -> SortOrder:
    """Relevance needs a query; without one the default is best sellers first."""
    if requested is None or requested is SortOrder.RELEVANCE:
        return SortOrder.SALES if query.empty else SortOrder.RELEVANCE
    return requested


class Fields(Protocol):
    """A product read-model document, or anything indexable like one."""

    def __getitem__(self, field: str, /) -> Any: ...


def sort_key(order: SortOrder, values: Fields) -> tuple[Any, ...]:
    """A tuple that sorts ascending in `order`'s sequence."""
    key: list[Any] = []
    for field, direction in SORT_KEYS[order]:
        value = values[field]
        key.append(-value if direction < 0 else value)
    return tuple(key)


def key_values(order: SortOrder, values: Fields) -> list[Any]:
    return [values[field] for field, _ in SORT_KEYS[order]]


def fingerprint(parts: dict[str, Any]) -> str:
    """Ties a cursor to the query, filters and order it was issued for."""
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_cursor(order: SortOrder, print_: str, last: list[Any]) -> str:
    body = json.dumps({"o": order.value, "f": print_, "k": last}, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, order: SortOrder, print_: str) -> list[Any]:
    """The sort key of the last item of the previous page."""
    invalid = Rejected.invalid(
        "invalid_cursor", "The cursor is not one this search returned; start from the first page."
    )
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid from None
    if not isinstance(body, dict) or body.get("o") != order.value or body.get("f") != print_:
        raise invalid
    last = body.get("k")
    fields = SORT_KEYS[order]
    if not isinstance(last, list) or len(last) != len(fields):
        raise invalid
    for (field, _), value in zip(fields, last, strict=True):
        expected = str if field == "_id" else int
        if not isinstance(value, expected) or isinstance(value, bool):
            raise invalid
    return last
