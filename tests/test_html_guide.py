"""The HTML guide runs as written: docs/examples/embed_game.py serving html_game/index.html.

The example is started as docs/html-client.md says (``TTMINIS_SANDBOX=true python
docs/examples/embed_game.py``, with ``PORT`` for a free port and a fresh SQLite file), and two
players use its page in Chromium (tests/browser.py).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from browser import player_page, screenshot
from ports import free_port
from static_files import assert_served_as_checked_in

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLE = DOCS / "examples" / "embed_game.py"
PAGE = DOCS / "examples" / "html_game" / "index.html"
GUIDE = DOCS / "html-client.md"
RUN = "TTMINIS_SANDBOX=true .venv/bin/python docs/examples/embed_game.py"
START_TIMEOUT = 30

NAME = "document.getElementById('name').textContent"
NAMED = f"!['…', 'TikTok Player'].includes({NAME})"


@asynccontextmanager
async def running_example(folder: Path, **settings: str) -> AsyncIterator[str]:
    """``python docs/examples/embed_game.py`` from the clone; yields its URL once it listens."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("TTMINIS_")}
    env.update(
        TTMINIS_DATABASE_URL=f"sqlite://{folder / 'game.sqlite3'}",
        PORT=str(port),
        PYTHONUNBUFFERED="1",  # aiohttp's "Running on" line arrives when printed
        **settings,
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE.relative_to(ROOT)),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    output = bytearray()
    drain: asyncio.Task[bytes] | None = None
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while b"Running on" not in output:
                line = await process.stdout.readline()
                if not line:
                    pytest.fail(f"the example stopped before listening:\n{output.decode()}")
                output += line
        # Keep reading, so a full pipe never stalls the server's logging.
        drain = asyncio.create_task(process.stdout.read())
        yield f"http://127.0.0.1:{port}"
    finally:
        if process.returncode is None:
            process.terminate()
        async with asyncio.timeout(START_TIMEOUT):
            await process.wait()
        if drain is not None:
            await drain


@pytest.fixture
async def example(tmp_path: Path) -> AsyncIterator[str]:
    """The embedding example in sandbox mode, as the HTML guide runs it."""
    async with running_example(tmp_path, TTMINIS_SANDBOX="true") as url:
        yield url


def _html_block(text: str) -> str:
    quoted = re.search(r"```html\n(.*?)```", text, re.DOTALL)
    assert quoted is not None, "no ```html block"
    return quoted.group(1)


def test_the_guide_quotes_the_page_and_runs_the_example_as_the_test_does() -> None:
    """docs/html-client.md shows html_game/index.html word for word, and the command we run."""
    guide = GUIDE.read_text()
    assert _html_block(guide) == PAGE.read_text()
    assert RUN in guide
    assert "../shared" not in guide


async def test_every_static_path_the_docs_name_is_served(example: str) -> None:
    """Each /ttminis/static/ path in the README, docs/ and docs/examples/ answers 200 with the
    checked-in file."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        paths = await assert_served_as_checked_in(http, example)
        assert {"/ttminis/static/ttminis.js", "/ttminis/static/ttminis.d.ts"} <= paths
        async with http.get(example + "/") as response:
            assert response.status == 200
            assert await response.text() == PAGE.read_text()


async def _text(page: Any, selector: str) -> str:
    return str(await page.text_content(selector)).strip()


async def _finish_match(page: Any, kills: int, total: int) -> None:
    """Score ``kills`` on the page, then its "Finish match": the game's own match:end event."""
    for _ in range(kills):
        await page.click("#kill")
    await page.click("#finish")
    await page.wait_for_function(
        "total => document.getElementById('result').textContent.startsWith(`${total} kills`)",
        arg=total,
    )


async def _board_shows(page: Any, name: str, kills: int) -> None:
    """Wait until the page's leaderboard has the row ``<name>: <kills> kills``."""
    await page.wait_for_function(
        "row => document.getElementById('board').textContent.includes(row)",
        arg=f"{name}: {kills} kills",
    )


async def test_two_players_log_in_score_consent_and_watch_live(browser: Any, example: str) -> None:
    """A scores and allows; B denies and watches A's real name and kills arrive, live."""
    alice = await player_page(browser, example + "/")
    bob = await player_page(browser, example + "/")
    for page in (alice, bob):  # silent login: the placeholder, no popup
        await page.wait_for_function(f"{NAME} === 'TikTok Player'")
        assert await page.query_selector(".ttminis-consent") is None

    await _finish_match(alice, kills=3, total=3)
    await alice.click("#open-board")
    await alice.wait_for_selector(".ttminis-consent")
    await screenshot(alice, "html-guide-consent")
    await alice.click(".ttminis-allow")
    await alice.wait_for_function(NAMED)
    real_name = await _text(alice, "#name")
    await _board_shows(alice, real_name, 3)

    # Bob's browser cannot load the avatar: the board falls back to the default one.
    await bob.route("**/ttminis/avatars/**", lambda route: route.fulfill(status=404))
    await bob.click("#open-board")
    await bob.click(".ttminis-deny")
    await _board_shows(bob, real_name, 3)
    assert await _text(bob, "#name") == "TikTok Player"
    await bob.wait_for_function(
        "document.querySelector('#board img').src.endsWith('/ttminis/static/default-avatar.svg')"
    )

    await _finish_match(alice, kills=2, total=5)  # bob's board is pushed the change
    await _board_shows(bob, real_name, 5)
    await screenshot(alice, "html-guide-alice")
    await screenshot(bob, "html-guide-bob-watching")
    assert "/ttminis/avatars/" in await alice.get_attribute("#board img", "src")
    for page in (alice, bob):
        assert page.errors == []
        assert await _text(page, "#error") == ""


async def test_outside_sandbox_mode_the_page_does_not_load_the_stand_in(
    browser: Any, tmp_path: Path
) -> None:
    """With real credentials and no TikTok around, the page never fetches sandbox-sdk.js: the
    login fails with sdk_unavailable on the error line (a desktop browser in production)."""
    credentials = {
        "TTMINIS_CLIENT_KEY": "aw-production-key",
        "TTMINIS_CLIENT_SECRET": "a-production-client-secret",
        "TTMINIS_SECRET_KEY": "k" * 40,
    }
    async with running_example(tmp_path, **credentials) as url:
        page = await player_page(browser, url + "/")
        await page.wait_for_function("document.getElementById('error').textContent !== ''")
        assert (await _text(page, "#error")).startswith("sdk_unavailable: ")
        assert await page.evaluate("typeof window.TTMinis") == "undefined"
        loaded = await page.evaluate(
            "performance.getEntriesByType('resource').map((entry) => entry.name)"
        )
        assert not any("sandbox-sdk.js" in name for name in loaded)
        assert page.errors == []
