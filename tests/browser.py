"""Headless Chromium for the browser tests: the launch, phone-sized pages and screenshots.

Needs Debian's Chromium at /usr/bin/chromium (``.ci/run`` installs it). Without it the tests skip,
or fail when TTMINIS_REQUIRE_SERVICES=1 (as in CI). Screenshots go to ``artifacts/browser/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("TTMINIS_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("TTMINIS_ARTIFACTS", "artifacts")) / "browser"
# Without these, Chromium reaches for Google's services, which this network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 10_000


def _chromium_path() -> str:
    """Where Chromium is; skip (or fail, when CI requires it) if it is not installed."""
    found = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if found is None:
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("TTMINIS_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


async def chromium_browser() -> AsyncIterator[Any]:
    """A headless Chromium driven by Playwright (the ``browser`` fixture)."""
    executable = _chromium_path()
    async_api = pytest.importorskip("playwright.async_api")
    async with async_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def blank_player_page(browser: Any) -> Any:
    """A phone-sized page in its own context, not navigated yet (to set routes up first).

    Its uncaught page errors collect in ``page.errors``.
    """
    context = await browser.new_context(viewport={"width": 400, "height": 820})
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    return page


async def player_page(browser: Any, url: str) -> Any:
    """A phone-sized page in its own context: its own storage, so its own TikTok account."""
    page = await blank_player_page(browser)
    await page.goto(url)
    return page


async def name_of(page: Any) -> str:
    """The player name the demo's header shows."""
    return str(await page.text_content("#me-name")).strip()


async def screenshot(page: Any, name: str) -> None:
    """Save the page as artifacts/browser/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
