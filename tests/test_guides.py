"""The guides' code runs: the embedding example in docs/ serves a real client over real sockets."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

from tiktok_minis.testing import GameClient, serve

DOCS = Path(__file__).resolve().parent.parent / "docs"
EXAMPLE = DOCS / "examples" / "embed_game.py"


@pytest.fixture
def embed_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    """docs/examples/embed_game.py, imported fresh as the README tells a developer to run it."""
    for name in ("TTMINIS_CLIENT_KEY", "TTMINIS_CLIENT_SECRET", "TTMINIS_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TTMINIS_DATABASE_URL", f"sqlite://{tmp_path / 'embed.sqlite3'}")
    monkeypatch.setenv("TTMINIS_SANDBOX", "true")
    spec = importlib.util.spec_from_file_location("embed_game", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def embed_url(embed_example: ModuleType) -> AsyncIterator[str]:
    async with serve(embed_example.app) as url:
        yield url


async def _logged_in(example: ModuleType, url: str) -> tuple[GameClient, dict[str, object]]:
    sandbox = example.minis.sandbox
    user = sandbox.add_user()
    client = GameClient(url)
    await client.connect()
    ack = await client.call("tiktok:login", {"code": sandbox.login_code(user.open_id)})
    assert ack["ok"], ack
    return client, ack


async def test_the_games_own_event_finds_its_player_and_scores(
    embed_example: ModuleType, embed_url: str
) -> None:
    """Login through the plugin, then the game's match:end adds kills on the plugin's board."""
    client, _ = await _logged_in(embed_example, embed_url)
    try:
        first = await client.call("match:end", {"kills": 3})
        second = await client.call("match:end", {"kills": 4})
        assert first == {"ok": True, "rank": 1, "score": 3}
        assert second == {"ok": True, "rank": 1, "score": 7}
        board = await client.call("leaderboard:join", {"board": "kills"})
        assert [entry["score"] for entry in board["entries"]] == [7]
    finally:
        await client.disconnect()


async def test_the_games_own_event_refuses_strangers_and_bad_payloads(
    embed_example: ModuleType, embed_url: str
) -> None:
    """Before login, and with a payload that is not {kills: int}, nothing is scored."""
    async with GameClient(embed_url) as stranger:
        refused = await stranger.call("match:end", {"kills": 3})
        assert refused["ok"] is False
    client, _ = await _logged_in(embed_example, embed_url)
    try:
        for payload in ({"kills": "3"}, ["kills"], {"kills": 2**70}):
            assert (await client.call("match:end", payload))["ok"] is False, payload
        board = await client.call("leaderboard:join", {"board": "kills"})
        assert board["entries"] == []
    finally:
        await client.disconnect()


async def test_a_resumed_session_reaches_the_games_own_event(
    embed_example: ModuleType, embed_url: str
) -> None:
    """open_id_of covers a connection resumed with its session (no on_login hook runs there)."""
    client, ack = await _logged_in(embed_example, embed_url)
    await client.disconnect()
    async with GameClient(embed_url, session=str(ack["session"])) as resumed:
        assert (await resumed.call("match:end", {"kills": 5}))["score"] == 5


def test_the_guide_shows_the_example_as_it_is() -> None:
    """docs/embedding.md quotes docs/examples/embed_game.py word for word (less its docstring)."""
    guide = (DOCS / "embedding.md").read_text()
    quoted = re.search(r"```python\n(.*?)```", guide, re.DOTALL)
    assert quoted is not None
    code = EXAMPLE.read_text().split('"""', 2)[2].strip()
    assert quoted.group(1).strip() == code
