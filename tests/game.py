"""The example game running on a loopback port, for end-to-end tests."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from example_server.app import create_app
from tiktok_minis import MINIS_KEY, Settings, TikTokMinis
from tiktok_minis.sandbox import Sandbox, SandboxUser
from tiktok_minis.testing import GameClient, serve

#: The wire's error codes, as the contract (docs/protocol.md) lists them.
DOCUMENTED_CODES: frozenset[str] = frozenset(
    {
        "invalid_payload",
        "not_logged_in",
        "login_failed",
        "not_authorized",
        "upstream_unavailable",
        # An extension of the contract: the game's own database did not answer.
        "storage_unavailable",
        "unknown_board",
        "score_rejected",
        "rate_limited",
        "internal_error",
    }
)

FAST_UPSTREAM: dict[str, Any] = {
    "push_interval_ms": 50,
    "upstream_budget_seconds": 3.0,
    "upstream_attempt_timeout_seconds": 0.5,
    "upstream_max_attempts": 3,
    "upstream_retry_after_cap_seconds": 0.5,
}


@dataclass
class Game:
    """A running example game: its URL, the plugin inside it and its TikTok emulator."""

    url: str
    minis: TikTokMinis
    stack: AsyncExitStack
    clients: list[GameClient] = field(default_factory=list)

    @property
    def sandbox(self) -> Sandbox:
        assert self.minis.sandbox is not None
        return self.minis.sandbox

    async def client(self, session: str | None = None) -> GameClient:
        """A connected Socket.IO client, disconnected when the game stops."""
        client = GameClient(self.url, session=session)
        await client.connect()
        self.clients.append(client)
        self.stack.push_async_callback(client.disconnect)
        return client

    async def logged_in(
        self, user: SandboxUser | None = None
    ) -> tuple[GameClient, SandboxUser, dict[str, Any]]:
        """A client logged in silently as ``user`` (a new sandbox user by default)."""
        user = user or self.sandbox.add_user()
        client = await self.client()
        ack = await client.call("tiktok:login", {"code": self.sandbox.login_code(user.open_id)})
        assert ack["ok"], ack
        return client, user, ack

    def all_received(self) -> str:
        """Everything every client of this game received, as text."""
        return "\n".join(client.received_text() for client in self.clients)


@asynccontextmanager
async def run_game(
    settings: Settings, minis_setup: Any = None, clock: Callable[[], float] | None = None
) -> AsyncIterator[Game]:
    """Start the example game with ``settings`` (and a ``clock``) on a loopback port."""
    app = create_app(settings, clock=clock)
    minis = app[MINIS_KEY]
    if minis_setup is not None:
        minis_setup(minis)
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(serve(app))
        yield Game(url=url, minis=minis, stack=stack)


def issued_tokens(sandbox: Sandbox, open_id: str) -> list[str]:
    """Every access and refresh token the emulator still knows for ``open_id``."""
    return [
        value
        for table in (sandbox.access_tokens, sandbox.refresh_tokens)
        for value, token in table.items()
        if token.open_id == open_id
    ]


async def forget_from_the_shell(database_url: str, open_id: str) -> dict[str, Any]:
    """Run ``python -m tiktok_minis forget`` in another process, as an operator would; its
    JSON answer (the test fails if the command does)."""
    shell = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tiktok_minis",
        "forget",
        "--",  # an open_id may start with "-"
        open_id,
        env={**os.environ, "TTMINIS_SANDBOX": "true", "TTMINIS_DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(shell.communicate(), 60)
    assert shell.returncode == 0, err.decode()
    answer: dict[str, Any] = json.loads(out)
    return answer
