"""The demo in a real headless Chromium: two players, consent, live renames, the cached profile.

The Chromium plumbing (launch, pages, screenshots) is in ``tests/browser.py``.
"""

from __future__ import annotations

from typing import Any

from browser import name_of, player_page, screenshot
from game import Game


async def test_allow_on_one_page_renames_live_on_the_other(browser: Any, game: Game) -> None:
    """Player A allows; player B, watching the board after a denial, sees A's name appear live."""
    alice = await player_page(browser, game.url + "/")
    bob = await player_page(browser, game.url + "/")
    await alice.wait_for_function("document.getElementById('me-name').textContent.trim() !== ''")
    assert await name_of(alice) == "TikTok Player"
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
    real_name = await name_of(alice)
    await bob.wait_for_function(
        "name => document.getElementById('entries').textContent.includes(name)", arg=real_name
    )
    await screenshot(alice, "alice-allowed")
    await screenshot(bob, "bob-sees-alice")
    assert await alice.query_selector("#entries li.mine") is not None
    assert alice.errors == [] and bob.errors == []


async def test_denial_keeps_the_placeholder_and_never_prompts_again(
    browser: Any, game: Game
) -> None:
    """Deny shows "TikTok Player"; opening the board again, even after a reload, asks nothing."""
    page = await player_page(browser, game.url + "/")
    await page.click("#open-board")
    await page.click(".ttminis-deny")
    await page.wait_for_function(
        "document.getElementById('me-consent').textContent.includes('private')"
    )
    assert await name_of(page) == "TikTok Player"
    await page.reload()
    await page.click("#open-board")
    await page.wait_for_selector("#board:not([hidden])")
    await page.wait_for_load_state("networkidle")
    assert await page.query_selector(".ttminis-consent") is None
    assert await name_of(page) == "TikTok Player"
    await screenshot(page, "denied-no-second-popup")


async def test_reload_shows_the_cached_profile_before_the_network(browser: Any, game: Game) -> None:
    """A returning player sees their name at once, even while the server does not answer."""
    page = await player_page(browser, game.url + "/")
    await page.click("#open-board")
    await page.click(".ttminis-allow")
    await page.wait_for_function(
        "!document.getElementById('me-name').textContent.includes('TikTok Player')"
    )
    real_name = await name_of(page)

    async def swallow(websocket: Any) -> None:
        """Accept the socket and never answer: the server is unreachable."""

    await page.route_web_socket("**/socket.io/**", swallow)
    await page.reload(wait_until="domcontentloaded")
    await page.wait_for_function(
        "name => document.getElementById('me-name').textContent === name", arg=real_name
    )
    assert await page.text_content("#status") != "connected"
    await screenshot(page, "cached-profile-offline")
