"""Browser tests: a real headless Chromium, driven with Playwright, over the
whole platform (every service a process, the web service among them, in a
namespace of its own, as tests/e2e runs it).

The browser is the system's Chromium (`KAMI_CHROMIUM`, else `chromium` or
`chromium-browser` on the PATH; `scripts/test` installs Debian's package),
never one Playwright downloads. Without one these tests skip, saying so,
except in CI (`CI=true`), where they fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from kami_events.mongo import connect
from kami_local import Platform
from tests.conftest import Servers
from tests.e2e.conftest import running_platform

SCREENSHOTS = Path(__file__).parent / "screenshots"
WIDTHS = {"mobile": 390, "desktop": 1280}


def find_chromium() -> str | None:
    for candidate in (os.environ.get("KAMI_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    found = find_chromium()
    if found is None:
        reason = "no Chromium found (set KAMI_CHROMIUM, or apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser tests cannot run in CI: {reason}")
        pytest.skip(reason)
    return found


@pytest.fixture(scope="session")
async def web_platform(
    chromium_path: str, servers: Servers, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    """After the Chromium check: no platform is started for tests that skip.
    Its databases are dropped at the end."""
    with running_platform(servers, tmp_path_factory.mktemp("browser-platform")) as instance:
        yield instance
    client = connect(servers.mongodb_uri, app_name="kami-browser-cleanup")
    try:
        for name in await client.list_database_names():
            if name.startswith(f"{instance.database_prefix}_"):
                await client.drop_database(name)
    finally:
        await client.close()


@pytest.fixture(scope="session")
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_path,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS
