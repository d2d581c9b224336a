"""Junk login codes cannot starve real players: failed logins are limited per connection and
per client address, refused without a call to TikTok, and successes never count."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from game import FAST_UPSTREAM, Game, run_game

from tiktok_minis import Settings
from tiktok_minis.support.proxies import TrustedProxies
from tiktok_minis.testing import GameClient

LIMITS: dict[str, Any] = {
    "failed_logins_burst": 3,
    "failed_logins_per_minute": 1,
    "failed_logins_per_address_burst": 5,
    "failed_logins_per_address_per_minute": 1,
    "trusted_proxies": ["127.0.0.1"],
}


@pytest.fixture
async def limited_game(sqlite_url: str) -> AsyncIterator[Game]:
    """The example game behind a trusted proxy on loopback, with small failed-login limits."""
    settings = Settings(sandbox=True, database_url=sqlite_url, **FAST_UPSTREAM, **LIMITS)
    async with run_game(settings) as game:
        yield game


async def _client(game: Game, address: str) -> GameClient:
    client = GameClient(game.url, headers={"X-Forwarded-For": address})
    await client.connect()
    game.stack.push_async_callback(client.disconnect)
    return client


async def _junk(client: GameClient, count: int) -> list[str]:
    acks = [await client.call("tiktok:login", {"code": f"junk-{i}"}) for i in range(count)]
    return [ack["error"]["code"] for ack in acks]


async def test_a_connection_that_keeps_failing_is_refused_without_calling_tiktok(
    limited_game: Game,
) -> None:
    """Past the burst of failures the connection gets rate_limited and TikTok hears nothing."""
    game = limited_game
    client = await _client(game, "198.51.100.1")
    before = game.sandbox.calls["token"]
    assert await _junk(client, 5) == ["login_failed"] * 3 + ["rate_limited"] * 2
    assert game.sandbox.calls["token"] - before == 3
    # The refusal covers a good code too, on this connection: it is the connection that is slowed.
    user = game.sandbox.add_user()
    ack = await client.call("tiktok:login", {"code": game.sandbox.login_code(user.open_id)})
    assert ack["error"]["code"] == "rate_limited"
    assert game.sandbox.calls["token"] - before == 3


async def test_concurrent_junk_on_one_connection_counts_every_attempt(limited_game: Game) -> None:
    """Junk sent all at once is limited as strictly as junk sent one by one."""
    game = limited_game
    client = await _client(game, "198.51.100.2")
    acks = await asyncio.gather(
        *(client.call("tiktok:login", {"code": f"junk-{i}"}) for i in range(10))
    )
    codes = sorted(ack["error"]["code"] for ack in acks)
    assert codes == ["login_failed"] * 3 + ["rate_limited"] * 7
    assert game.sandbox.calls["token"] == 3


async def test_an_address_is_limited_across_its_sockets_and_others_go_on(
    limited_game: Game,
) -> None:
    """Many sockets from one address share its budget; a player from elsewhere logs in."""
    game = limited_game
    attackers = [await _client(game, "198.51.100.3") for _ in range(4)]
    codes = [code for attacker in attackers for code in await _junk(attacker, 3)]
    assert codes.count("login_failed") == 5
    assert codes.count("rate_limited") == 7
    assert game.sandbox.calls["token"] == 5

    user = game.sandbox.add_user()
    player = await _client(game, "203.0.113.9")
    ack = await player.call("tiktok:login", {"code": game.sandbox.login_code(user.open_id)})
    assert ack["ok"], ack


async def test_successful_logins_never_use_the_budget_up(limited_game: Game) -> None:
    """A connection that logs in again and again, successfully, is never refused."""
    game = limited_game
    client = await _client(game, "203.0.113.10")
    user = game.sandbox.add_user()
    for _ in range(10):
        ack = await client.call("tiktok:login", {"code": game.sandbox.login_code(user.open_id)})
        assert ack["ok"], ack


async def test_an_untrusted_peer_cannot_pick_its_address(sqlite_url: str) -> None:
    """Without a trusted proxy, X-Forwarded-For is ignored: rotating it buys no new budget."""
    limits = {**LIMITS, "trusted_proxies": []}
    settings = Settings(sandbox=True, database_url=sqlite_url, **FAST_UPSTREAM, **limits)
    async with run_game(settings) as game:
        codes = []
        for i in range(4):
            attacker = await _client(game, f"192.0.2.{i}")
            codes += await _junk(attacker, 2)
        assert codes.count("login_failed") == 5
        assert game.sandbox.calls["token"] == 5


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "client"),
    [
        ([], "10.0.0.5", "1.2.3.4", "10.0.0.5"),
        (["10.0.0.0/8"], "10.0.0.5", "1.2.3.4", "1.2.3.4"),
        (["10.0.0.0/8"], "10.0.0.5", "6.6.6.6, 1.2.3.4, 10.0.0.9", "1.2.3.4"),
        (["10.0.0.0/8"], "192.0.2.1", "1.2.3.4", "192.0.2.1"),
        (["10.0.0.0/8"], "10.0.0.5", None, "10.0.0.5"),
        (["10.0.0.0/8"], "10.0.0.5", " , ", "10.0.0.5"),
        (["::1"], "::1", "2001:db8::7", "2001:db8::7"),
        (["10.0.0.0/8"], None, None, "unknown"),
    ],
)
def test_the_client_address_is_the_first_untrusted_hop(
    trusted: list[str], peer: str | None, forwarded: str | None, client: str
) -> None:
    """Reading X-Forwarded-For from the right, trusted proxies are skipped, and only they."""
    assert TrustedProxies(trusted).client_address(peer, forwarded) == client


def test_a_bad_trusted_proxy_stops_the_start() -> None:
    """TTMINIS_TRUSTED_PROXIES takes addresses and networks, and names a bad one."""
    with pytest.raises(ValueError, match="TTMINIS_TRUSTED_PROXIES"):
        Settings(sandbox=True, trusted_proxies="10.0.0.0/8, not-an-address")
    assert Settings(sandbox=True, trusted_proxies="10.0.0.0/8, ::1").trusted_proxies == [
        "10.0.0.0/8",
        "::1",
    ]


async def test_many_players_behind_one_address_log_in_at_once(limited_game: Game) -> None:
    """Forty real players behind one address (a carrier's NAT) logging in together all succeed:
    only failures use an address's budget up."""
    game = limited_game
    users = [game.sandbox.add_user() for _ in range(40)]
    clients = [await _client(game, "100.64.0.1") for _ in users]
    acks = await asyncio.gather(
        *(
            client.call("tiktok:login", {"code": game.sandbox.login_code(user.open_id)})
            for client, user in zip(clients, users, strict=True)
        )
    )
    assert all(ack["ok"] for ack in acks), [ack for ack in acks if not ack["ok"]][:1]
