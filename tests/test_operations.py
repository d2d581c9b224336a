"""What an operator meets: /metrics, clean structured logs over a whole lifecycle, the admin CLI."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path

import aiohttp
import pytest
from game import FAST_UPSTREAM, Game, issued_tokens, run_game

from tiktok_minis import JsonFormatter, Settings
from tiktok_minis.__main__ import main as admin
from tiktok_minis.sandbox import ManualClock
from tiktok_minis.sandbox.webhooks import authorization_removed, signed_webhook
from tiktok_minis.settings import SANDBOX_CLIENT_SECRET
from tiktok_minis.store.models import PlayerRow, ScoreRow

DAY = 86400.0


def _sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus' text format (0 when absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    match = re.search(r"^" + pattern + r"$", metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_metrics_count_logins_consents_upstream_calls_sockets_and_pushes(
    game: Game, http: aiohttp.ClientSession
) -> None:
    """/metrics on the example server reflects what just happened, and names no player."""
    sandbox = game.sandbox
    allowing, allow_user, _ = await game.logged_in()
    denying, deny_user, _ = await game.logged_in()
    await denying.call("leaderboard:join", {"board": "global"})
    code = sandbox.authorize_code(allow_user.open_id)
    assert (await allowing.call("tiktok:authorize", {"granted": True, "code": code}))["ok"]
    assert (await denying.call("tiktok:authorize", {"granted": False}))["ok"]
    await allowing.call("leaderboard:submit", {"board": "global", "score": 3})
    await denying.wait_for("leaderboard:update")
    await denying.call("leaderboard:submit", {"board": "nope", "score": 1})

    async with http.get(game.url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        metrics = await response.text()
    assert _sample(metrics, "ttminis_logins_total", outcome="ok") == 2
    assert _sample(metrics, "ttminis_authorizations_total", outcome="granted") == 1
    assert _sample(metrics, "ttminis_authorizations_total", outcome="denied") == 1
    assert _sample(metrics, "ttminis_events_total", event="leaderboard:submit", outcome="ok") == 1
    assert (
        _sample(
            metrics, "ttminis_events_total", event="leaderboard:submit", outcome="unknown_board"
        )
        == 1
    )
    assert _sample(metrics, "ttminis_upstream_calls_total", endpoint="token", status="200") == 3
    assert _sample(metrics, "ttminis_upstream_calls_total", endpoint="user_info", status="200") == 1
    assert _sample(metrics, "ttminis_upstream_seconds_count", endpoint="user_info") == 1
    assert _sample(metrics, "ttminis_upstream_attempts_total") == 4
    assert _sample(metrics, "ttminis_connected_sockets") == 2
    assert _sample(metrics, "ttminis_pushes_total", event="leaderboard:update") >= 1
    assert _sample(metrics, "ttminis_pushes_total", event="player:update") >= 1
    for secret in (
        allow_user.open_id,
        deny_user.open_id,
        *issued_tokens(sandbox, allow_user.open_id),
    ):
        assert secret not in metrics


async def test_a_whole_lifecycle_logs_one_json_line_per_event_and_no_secret(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Login, consent, refresh, webhook revocation, forget: no token, secret or open_id logged."""
    clock = ManualClock()
    settings = Settings(
        sandbox=True, database_url=sqlite_url, refresher_enabled=False, **FAST_UPSTREAM
    )
    caplog.set_level(logging.DEBUG)
    async with run_game(settings, clock=clock) as game:
        sandbox = game.sandbox
        client, user, _ = await game.logged_in(sandbox.add_user(display_name="Logged Lady"))
        code = sandbox.authorize_code(user.open_id)
        await client.call("tiktok:authorize", {"granted": True, "code": code})
        await client.call("leaderboard:submit", {"board": "global", "score": 9})
        tokens = issued_tokens(sandbox, user.open_id)
        clock.advance(7.1 * DAY)
        assert (await game.minis.refresher.run_once()).claimed == 1
        tokens += issued_tokens(sandbox, user.open_id)
        body, headers = signed_webhook(
            sandbox.client_secret,
            authorization_removed(sandbox.client_key, user.open_id, create_time=int(clock())),
            timestamp=int(clock()),
        )
        async with (
            aiohttp.ClientSession() as http,
            http.post(game.url + "/ttminis/webhooks/tiktok", data=body, headers=headers) as answer,
        ):
            assert answer.status == 200
        await game.minis.players.forget(user.open_id)

    records = [r for r in caplog.records if r.name.startswith("tiktok_minis")]
    events = {getattr(record, "event", None) for record in records}
    assert {"login", "profile_stored", "refresh_pass", "forget"} <= events
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in records]
    for line in lines:
        assert isinstance(json.loads(line), dict)
    text = "\n".join(lines)
    assert tokens
    for secret in (*tokens, user.open_id, SANDBOX_CLIENT_SECRET, headers["TikTok-Signature"]):
        assert secret not in text


def test_the_admin_cli_migrates_and_forgets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m tiktok_minis migrate`` / ``forget``: JSON out, exit codes, rows gone."""
    url = f"sqlite:///{tmp_path}/admin.sqlite3"
    monkeypatch.setenv("TTMINIS_DATABASE_URL", url)
    monkeypatch.setenv("TTMINIS_SANDBOX", "true")
    for name in ("TTMINIS_CLIENT_KEY", "TTMINIS_CLIENT_SECRET", "TTMINIS_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)

    assert admin(["migrate"]) == 0
    assert json.loads(capsys.readouterr().out)["applied"]
    assert admin(["migrate"]) == 0
    assert json.loads(capsys.readouterr().out) == {"applied": []}

    open_id = _a_player_with_a_score(url)
    assert admin(["forget", open_id]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["scores"] == 1 and result["scores_anonymised"] is False
    assert isinstance(result["forgotten"], str) and open_id not in result["forgotten"]
    assert admin(["forget", open_id]) == 1
    assert json.loads(capsys.readouterr().out)["error"] == "unknown_player"
    with pytest.raises(SystemExit) as usage:
        admin(["forget"])
    assert usage.value.code == 2


def _a_player_with_a_score(url: str) -> str:
    """Play once on the game at ``url`` (logged in, one score), then stop it; the open_id."""

    async def play() -> str:
        async with run_game(Settings(sandbox=True, database_url=url, **FAST_UPSTREAM)) as game:
            client, user, _ = await game.logged_in()
            assert (await client.call("leaderboard:submit", {"board": "global", "score": 4}))["ok"]
            assert await PlayerRow.filter(open_id=user.open_id).count() == 1
            assert await ScoreRow.all().count() == 1
            return user.open_id

    return asyncio.run(play())
