"""The example server as an operator and a browser meet it: the page, its assets, health, CLI."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from game import Game, run_game

from example_server.__main__ import main
from example_server.app import create_app
from tiktok_minis import Settings
from tiktok_minis.testing import serve


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


def test_without_sandbox_or_credentials_the_server_does_not_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No credentials and no --sandbox: exit 2 with one sentence naming what to set, no serve."""
    for name in ("TTMINIS_CLIENT_KEY", "TTMINIS_CLIENT_SECRET", "TTMINIS_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("TTMINIS_SANDBOX", raising=False)
    assert main(["--port", "0"]) == 2
    error = capsys.readouterr().err
    assert "TTMINIS_CLIENT_KEY" in error and "TTMINIS_SANDBOX=true" in error
    assert "--sandbox" in error
    assert error.count("\n") == 1


async def test_outside_sandbox_mode_the_emulator_is_not_there(sqlite_url: str) -> None:
    """With real credentials: no emulator, no control routes, and the sandbox's public secret
    signs no webhook that the game accepts."""
    from tiktok_minis import Settings
    from tiktok_minis.sandbox.webhooks import authorization_removed, signed_webhook
    from tiktok_minis.settings import SANDBOX_CLIENT_KEY, SANDBOX_CLIENT_SECRET
    from tiktok_minis.web.webhook import DEFAULT_PATH

    settings = Settings(
        client_key="aw-production-key",
        client_secret="a-production-client-secret",
        secret_key="k" * 40,
        database_url=sqlite_url,
    )
    async with run_game(settings) as game, aiohttp.ClientSession() as http:
        assert game.minis.sandbox is None
        for path in ("/ttminis/sandbox/", "/ttminis/sandbox/login", "/ttminis/sandbox/profile"):
            async with http.post(game.url + path, json={"device": "x"}) as response:
                assert response.status == 404, path
        async with http.get(game.url + "/ttminis/static/sandbox-sdk.js") as response:
            assert response.status == 404  # a production page cannot load the stand-in
        async with http.get(game.url + "/ttminis/static/ttminis.js") as response:
            assert response.status == 200
        for client_key in (SANDBOX_CLIENT_KEY, "aw-production-key"):
            body, headers = signed_webhook(
                SANDBOX_CLIENT_SECRET,
                authorization_removed(client_key, "some-open-id", create_time=int(time.time())),
                timestamp=int(time.time()),
            )
            async with http.post(game.url + DEFAULT_PATH, data=body, headers=headers) as response:
                assert response.status in (400, 401, 403), await response.text()


async def test_a_stopping_server_says_goodbye_and_hangs_up_itself(game_settings: Settings) -> None:
    """At shutdown every client gets the close packet and the server closes the websocket,
    not waiting for the client to hang up (that held a SIGTERM for seconds with a tab open)."""
    app = create_app(game_settings)
    # A long shutdown_timeout: if the server waited for this client, the stop would hang.
    stopping = serve(app, shutdown_timeout=60)
    url = await stopping.__aenter__()
    ws_url = url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, autoclose=False) as ws:
        assert (await ws.receive_str()).startswith("0")  # engine.io open
        await ws.send_str("40")
        assert (await ws.receive_str()).startswith("40")  # socket.io connected
        stop = asyncio.create_task(stopping.__aexit__(None, None, None))
        frames = []
        async with asyncio.timeout(10):
            while (message := await ws.receive()).type == aiohttp.WSMsgType.TEXT:
                frames.append(message.data)
            assert message.type == aiohttp.WSMsgType.CLOSE  # the server hung up
            await ws.close()
            await stop
    assert frames[-1] == "1"  # engine.io close: reconnect elsewhere and resume
