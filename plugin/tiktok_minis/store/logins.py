"""The login write: a token set stored under its ``open_id``, the player created if new.

A login's only write, and the hot path of a login storm, so logins that arrive together are
written together: :class:`LoginWriter` gathers the ones that came in during one pass of the
event loop (and those that came while the previous statement ran) into one multi-row
``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``. Each login is acknowledged only once that
statement committed, so an acknowledged login's tokens are stored; a quiet server writes each
login at once, alone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from tiktok_minis.store.database import Database, Dialect, Queries, db_timestamp, for_dialect
from tiktok_minis.store.models import Consent, PlayerRow

if TYPE_CHECKING:
    from tiktok_minis.store.players import EncryptedTokens

__all__ = ["LoginWriter"]

#: The most logins one statement writes (8 parameters each: far below every driver's limit).
MAX_BATCH = 250

# What the player service reads back: the profile and the ids, no tokens.
_RETURNED = (
    "open_id, public_id, consent, display_name, avatar_url, union_id, profile_fetched_at,"
    " session_epoch"
)


@cache
def _statement(rows: int, dialect: Dialect) -> str:
    """The upsert of ``rows`` logins, with the dialect's numbered placeholders."""
    values = ", ".join(
        f"(${8 * n + 1}, ${8 * n + 2}, '{Consent.UNKNOWN.value}', ${8 * n + 3}, ${8 * n + 4},"
        f" ${8 * n + 5}, ${8 * n + 6}, ${8 * n + 7}, 0, 0, ${8 * n + 8}, ${8 * n + 8})"
        for n in range(rows)
    )
    sql = f"""
        INSERT INTO ttminis_player AS p (open_id, public_id, consent, scopes, access_token,
            access_expires_at, refresh_token, refresh_expires_at, session_epoch,
            refresh_failures, created_at, updated_at)
        VALUES {values}
        ON CONFLICT (open_id) DO UPDATE SET
            scopes = excluded.scopes,
            access_token = excluded.access_token,
            access_expires_at = excluded.access_expires_at,
            refresh_token = excluded.refresh_token,
            refresh_expires_at = excluded.refresh_expires_at,
            updated_at = excluded.updated_at
        RETURNING {_RETURNED}"""  # noqa: S608 (fixed fragments; every value is a parameter)
    return for_dialect(dialect, sql)


@dataclass(slots=True)
class _Login:
    open_id: str
    public_id: str  # the id this login would give a new player
    tokens: EncryptedTokens
    now: datetime
    done: asyncio.Future[tuple[PlayerRow, bool]]


class LoginWriter(Queries):
    """Stores logins on one database, the ones that arrive together in one statement."""

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self._waiting: list[_Login] = []
        self._writing = False

    async def log_in(
        self, open_id: str, public_id: str, tokens: EncryptedTokens, now: datetime
    ) -> tuple[PlayerRow, bool]:
        """Store ``tokens`` under ``open_id`` (a new player gets ``public_id``); the row as
        stored, and whether this login created it. Returns once the write committed.

        The row holds the profile, the ids, the consent and the session epoch only (a partial
        model: no tokens travel back).
        """
        loop = asyncio.get_running_loop()
        login = _Login(open_id, public_id, tokens, now, loop.create_future())
        self._waiting.append(login)
        if not self._writing:
            self._writing = True
            # Not at once: the logins whose answers from TikTok are in this pass join in.
            loop.call_soon(lambda: asyncio.ensure_future(self._write_all()))
        return await login.done

    async def _write_all(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                await self._write(batch)
        finally:
            self._writing = False

    async def _write(self, batch: list[_Login]) -> None:
        try:
            stored = await self._upsert(batch)
        except asyncio.CancelledError:
            for login in batch:
                login.done.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 (each caller of the statement re-raises it)
            for login in batch:
                if not login.done.done():
                    login.done.set_exception(exc)
            return
        for login in batch:
            row = stored[login.open_id]
            if not login.done.done():
                login.done.set_result((row, row.public_id == login.public_id))

    async def _upsert(self, batch: list[_Login]) -> dict[str, PlayerRow]:
        """Write a batch in one statement; the rows as stored, by ``open_id``."""
        # One row per player: a statement may not update a row twice, and a later login's
        # tokens are the ones to keep (a code exchange's tokens are always the newest).
        latest = {login.open_id: login for login in batch}
        values: list[Any] = []
        for login in latest.values():
            tokens = login.tokens
            values += [
                login.open_id,
                login.public_id,
                tokens.scopes,
                tokens.access_token,
                db_timestamp(self.dialect, tokens.access_expires_at),
                tokens.refresh_token,
                db_timestamp(self.dialect, tokens.refresh_expires_at),
                db_timestamp(self.dialect, login.now),
            ]
        sql = _statement(len(latest), self.dialect)
        rows = await self.connection().execute_query_dict(sql, values)
        return {row["open_id"]: PlayerRow._init_from_db(**row) for row in rows}
