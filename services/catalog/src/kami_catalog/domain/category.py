"""The category tree: operators add, rename and move categories; slugs never change."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar

from kami_catalog.domain.errors import Rejected
from kami_catalog.domain.events import (
    SLUG_PATTERN,
    CategoryAdded,
    CategoryMoved,
    CategoryRenamed,
)
from kami_events.aggregate import Aggregate
from kami_events.event import Event

MAX_NAME_LENGTH = 50
_SLUG = re.compile(SLUG_PATTERN)


def check_slug(slug: str) -> None:
    if len(slug) > 64 or not _SLUG.match(slug):
        raise Rejected.invalid(
            "invalid_slug",
            f"{slug!r} is not a slug: lowercase letters, digits and single hyphens, "
            "at most 64 characters.",
        )


def _check_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > MAX_NAME_LENGTH:
        raise Rejected.invalid(
            "invalid_category_name", f"A category name has 1 to {MAX_NAME_LENGTH} characters."
        )
    return cleaned


class Category(Aggregate):
    aggregate_type: ClassVar[str] = "catalog.category"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.exists = False
        self.name = ""
        self.parent_id: str | None = None

    def add(self, name: str, parent_path: Sequence[str] | None, *, by: str) -> None:
        """`parent_path`: the parent's ancestry from the root down to the parent
        itself, or None for a root category."""
        check_slug(self.id)
        if self.exists:
            raise Rejected.conflict("category_exists", f"Category {self.id!r} already exists.")
        parent_id = parent_path[-1] if parent_path else None
        self._trigger(
            CategoryAdded(
                category_id=self.id, name=_check_name(name), parent_id=parent_id, added_by=by
            )
        )

    def rename(self, name: str, *, by: str) -> bool:
        self._require_existing()
        cleaned = _check_name(name)
        if cleaned == self.name:
            return False
        self._trigger(CategoryRenamed(category_id=self.id, name=cleaned, renamed_by=by))
        return True

    def move(self, parent_path: Sequence[str] | None, *, by: str) -> bool:
        """Move under the last category of `parent_path` (root first), or to the
        top when None. A category cannot move into its own subtree."""
        self._require_existing()
        parent_id = parent_path[-1] if parent_path else None
        if parent_path and self.id in parent_path:
            raise Rejected.invalid(
                "category_cycle", f"Category {self.id!r} cannot move into its own subtree."
            )
        if parent_id == self.parent_id:
            return False
        self._trigger(
            CategoryMoved(
                category_id=self.id,
                parent_id=parent_id,
                previous_parent_id=self.parent_id,
                moved_by=by,
            )
        )
        return True

    def _require_existing(self) -> None:
        if not self.exists:
            raise Rejected.not_found("category_not_found", f"No category {self.id!r}.")

    def apply(self, event: Event) -> None:
        if isinstance(event, CategoryAdded):
            self.exists = True
            self.name = event.name
            self.parent_id = event.parent_id
        elif isinstance(event, CategoryRenamed):
            self.name = event.name
        elif isinstance(event, CategoryMoved):
            self.parent_id = event.parent_id
        else:
            super().apply(event)
