"""The player's own events: ``tiktok:login``, ``tiktok:authorize``, ``tiktok:me`` and
``tiktok:logout``, with the limits on failed logins."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tiktok_minis.errors import LoginFailed, RateLimited
from tiktok_minis.realtime._connections import Connection, Connections
from tiktok_minis.realtime._ratelimit import KeyedBuckets
from tiktok_minis.realtime._wire import (
    Ack,
    AuthorizePayload,
    EmptyPayload,
    LoginPayload,
    LogoutPayload,
    parse,
    player_to_wire,
)
from tiktok_minis.services.players import Player, Players
from tiktok_minis.services.sessions import Sessions
from tiktok_minis.settings import Settings

__all__ = ["AccountEvents", "LoginHook"]

log = logging.getLogger("tiktok_minis.realtime")

#: Called with the ``sid`` and the player after each ``tiktok:login`` (not on a resume).
LoginHook = Callable[[str, Player], Awaitable[None]]


class AccountEvents:
    """The handlers of the events a player sends about their own account."""

    def __init__(
        self,
        *,
        players: Players,
        sessions: Sessions,
        connections: Connections,
        settings: Settings,
        login_hooks: list[LoginHook],
    ) -> None:
        self._players = players
        self._sessions = sessions
        self._connections = connections
        self._login_hooks = login_hooks
        self._address_failures = KeyedBuckets(
            settings.failed_logins_per_address_per_minute / 60,
            settings.failed_logins_per_address_burst,
        )

    async def login(self, sid: str, connection: Connection, data: Any) -> Ack:
        """``tiktok:login``: log in with a code from ``TTMinis.game.login``; the ack has the
        player and their session."""
        payload = parse(LoginPayload, data)
        player = await self._login_within_limits(connection, payload.code)
        session = self._sessions.issue(player)
        await self._connections.bind(sid, connection, player, session)
        for hook in self._login_hooks:
            try:
                await hook(sid, player)
            except Exception:
                # The game's hook failing is the game's bug; the player is logged in regardless.
                log.exception("on_login hook failed", extra={"event": "hook_failed"})
        return {"player": player_to_wire(player), "session": session}

    async def _login_within_limits(self, connection: Connection, code: str) -> Player:
        """Log in, unless this connection or its address has failed too often: a failed login
        costs a call to TikTok, so junk codes must not crowd out real players.

        The connection's token is taken before the call (so its concurrent attempts count too)
        and given back when the login succeeds. The address's is charged only when a login
        fails: many players behind one address (a carrier's NAT) may log in at once, while an
        address that keeps failing is refused until its debt is paid back.
        """
        by_address = self._address_failures.bucket(connection.address)
        if not connection.login_failures.take():
            raise RateLimited("Too many failed logins on this connection; wait and retry.")
        if by_address.empty:
            connection.login_failures.refund()
            raise RateLimited("Too many failed logins from this address; wait and retry.")
        try:
            player = await self._players.login(code)
        except LoginFailed:
            by_address.charge()
            raise
        except BaseException:
            # Not the code's fault (TikTok or the database did not answer): it does not count.
            connection.login_failures.refund()
            raise
        connection.login_failures.refund()
        return player

    async def authorize(self, sid: str, connection: Connection, data: Any) -> Ack:
        """``tiktok:authorize``: record the outcome of the authorization popup."""
        payload = parse(AuthorizePayload, data)
        open_id = connection.require_login()
        player = await self._players.authorize(open_id, payload.granted, payload.code)
        return {"player": player_to_wire(player)}

    async def me(self, sid: str, connection: Connection, data: Any) -> Ack:
        """``tiktok:me``: the player logged in here, or ``None``."""
        parse(EmptyPayload, data)
        if connection.open_id is None:
            return {"player": None}
        player = await self._players.get(connection.open_id)
        return {"player": player_to_wire(player) if player else None}

    async def logout(self, sid: str, connection: Connection, data: Any) -> Ack:
        """``tiktok:logout``: unbind this connection and end its session (or all of them)."""
        payload = parse(LogoutPayload, data)
        open_id, public_id, session = connection.open_id, connection.public_id, connection.session
        if open_id is None or public_id is None:
            return {}  # nobody to log out: already the state the client asked for
        await self._connections.unbind(sid, connection)
        if payload.everywhere:
            player = await self._players.get(open_id)
            if player is not None:
                await self._sessions.end_all(player)
        elif session is not None:
            await self._sessions.end(public_id, session)
        return {}
