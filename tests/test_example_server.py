"""The example server as an operator and a browser meet it: the page, its assets, health, CLI."""

from __future__ import annotations

import aiohttp
import pytest
from game import Game

from example_server.__main__ import main


async def test_demo_page_and_assets_are_served(game: Game) -> None:
    """/ serves the demo page; the client helper, SDK stand-in and Socket.IO client load."""
    async with aiohttp.ClientSession() as http:
        async with http.get(game.url + "/") as response:
            assert response.status == 200
            page = await response.text()
        assert "/ttminis/static/sandbox-sdk.js" in page
        assert "/static/demo.js" in page
        for path in (
            "/ttminis/static/ttminis.js",
            "/ttminis/static/sandbox-sdk.js",
            "/ttminis/static/vendor/socket.io.min.js",
            "/ttminis/static/default-avatar.svg",
            "/static/demo.js",
            "/static/demo.css",
        ):
            async with http.get(game.url + path) as response:
                assert response.status == 200, path
                assert len(await response.read()) > 100, path


async def test_healthz_answers_once_the_database_does(game: Game) -> None:
    """/healthz is 200 with the database up, 503 once it is closed."""
    async with aiohttp.ClientSession() as http:
        async with http.get(game.url + "/healthz") as response:
            assert response.status == 200
            assert await response.json() == {"ok": True, "sandbox": True}
        await game.minis.database.close()
        async with http.get(game.url + "/healthz") as response:
            assert response.status == 503


async def test_sandbox_stand_in_issues_codes_the_game_accepts(game: Game) -> None:
    """The browser's TTMinis stand-in gets a code on the game's origin that logs in."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(game.url + "/ttminis/sandbox/login", json={"device": "phone-1"}) as response,
    ):
        code = (await response.json())["code"]
    client = await game.client()
    ack = await client.call("tiktok:login", {"code": code})
    assert ack["ok"] and ack["player"]["placeholder"] is True


def test_bad_settings_stop_the_server_with_a_sentence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A client key without its secret exits 2 and says which variable to set."""
    monkeypatch.setenv("TTMINIS_CLIENT_KEY", "aw123")
    monkeypatch.delenv("TTMINIS_CLIENT_SECRET", raising=False)
    assert main(["--port", "0"]) == 2
    assert "TTMINIS_CLIENT_SECRET" in capsys.readouterr().err
