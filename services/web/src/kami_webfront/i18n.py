"""Message catalogues (`locales/<lang>.json`): zh-CN by default, English on request.

The language is the `kami_lang` cookie (set by the switch in every page's
header), else the default. A key missing from a catalogue falls back to the
default language's text, then to the key itself (a test keeps the two
catalogues' keys the same).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path

LANGUAGES = ("zh-CN", "en")
LANGUAGE_COOKIE = "kami_lang"
_LOCALES = Path(__file__).parent / "locales"

Translate = Callable[..., str]


@cache
def catalogue(language: str) -> dict[str, str]:
    """`locales/<lang>.json`, and each area's own `locales/<area>/<lang>.json`
    (the seller center and the console keep theirs apart)."""
    messages: dict[str, str] = json.loads((_LOCALES / f"{language}.json").read_text("utf-8"))
    for area in sorted(_LOCALES.glob(f"*/{language}.json")):
        messages.update(json.loads(area.read_text("utf-8")))
    return messages


def translator(language: str, default: str = "zh-CN") -> Translate:
    primary, fallback = catalogue(language), catalogue(default)

    def translate(key: str, **values: object) -> str:
        text = primary.get(key) or fallback.get(key) or key
        return text.format(**values) if values else text

    return translate


def choose_language(cookie: str | None, default: str) -> str:
    return cookie if cookie in LANGUAGES else default
