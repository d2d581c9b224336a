"""The demo in a real headless Chromium: two players, consent, live renames, the cached profile.

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
from game import Game

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


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Chromium driven by Playwright."""
    executable = _chromium_path()
    async_api = pytest.importorskip("playwright.async_api")
    async with async_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def _player_page(browser: Any, url: str) -> Any:
    """A phone-sized page in its own context: its own storage, so its own TikTok account."""
    context = await browser.new_context(viewport={"width": 400, "height": 820})
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    await page.goto(url)
    return page


async def _name(page: Any) -> str:
    return str(await page.text_content("#me-name")).strip()


async def _screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


async def test_allow_on_one_page_renames_live_on_the_other(browser: Any, game: Game) -> None:
    """Player A allows; player B, watching the board after a denial, sees A's name appear live."""
    alice = await _player_page(browser, game.url + "/")
    bob = await _player_page(browser, game.url + "/")
    await alice.wait_for_function("document.getElementById('me-name').textContent.trim() !== ''")
    assert await _name(alice) == "TikTok Player"
    for _ in range(4):
        await alice.click("#tap")
    await alice.wait_for_function("Number(document.getElementById('best').textContent) > 0")

    await bob.click("#open-board")
    await bob.click(".ttminis-deny")
    await bob.wait_for_selector("#entries li")
    assert "TikTok Player" in str(await bob.text_content("#entries"))

    await alice.click("#open-board")
    await alice.click(".ttminis-allow")
    await alice.wait_for_function(
        "!document.getElementById('me-name').textContent.includes('TikTok Player')"
    )
    real_name = await _name(alice)
    await bob.wait_for_function(
        "name => document.getElementById('entries').textContent.includes(name)", arg=real_name
    )
    await _screenshot(alice, "alice-allowed")
    await _screenshot(bob, "bob-sees-alice")
    assert await alice.query_selector("#entries li.mine") is not None
    assert alice.errors == [] and bob.errors == []


async def test_denial_keeps_the_placeholder_and_never_prompts_again(
    browser: Any, game: Game
) -> None:
    """Deny shows "TikTok Player"; opening the board again, even after a reload, asks nothing."""
    page = await _player_page(browser, game.url + "/")
    await page.click("#open-board")
    await page.click(".ttminis-deny")
    await page.wait_for_function(
        "document.getElementById('me-consent').textContent.includes('private')"
    )
    assert await _name(page) == "TikTok Player"
    await page.reload()
    await page.click("#open-board")
    await page.wait_for_selector("#board:not([hidden])")
    await page.wait_for_load_state("networkidle")
    assert await page.query_selector(".ttminis-consent") is None
    assert await _name(page) == "TikTok Player"
    await _screenshot(page, "denied-no-second-popup")


async def test_reload_shows_the_cached_profile_before_the_network(browser: Any, game: Game) -> None:
    """A returning player sees their name at once, even while the server does not answer."""
    page = await _player_page(browser, game.url + "/")
    await page.click("#open-board")
    await page.click(".ttminis-allow")
    await page.wait_for_function(
        "!document.getElementById('me-name').textContent.includes('TikTok Player')"
    )
    real_name = await _name(page)

    async def swallow(websocket: Any) -> None:
        """Accept the socket and never answer: the server is unreachable."""

    await page.route_web_socket("**/socket.io/**", swallow)
    await page.reload(wait_until="domcontentloaded")
    await page.wait_for_function(
        "name => document.getElementById('me-name').textContent === name", arg=real_name
    )
    assert await page.text_content("#status") != "connected"
    await _screenshot(page, "cached-profile-offline")
