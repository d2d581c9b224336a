"""Persistence: the tortoise models (``models``) and every query on them, nothing else.

Each table has one module that owns its queries (``players``, ``scores``, ``sessions``,
``avatars``, ``webhooks``, ``score_removals``; the batched login write is ``logins``). Their
queries are methods of small objects bound to one :class:`~tiktok_minis.store.database.Database`
(its dialect and its connection); :class:`Store` builds one of each, once, for the services.
"""

from __future__ import annotations

from tiktok_minis.store.avatars import AvatarStore
from tiktok_minis.store.database import Database
from tiktok_minis.store.logins import LoginWriter
from tiktok_minis.store.players import PlayerStore
from tiktok_minis.store.score_removals import ScoreRemovalStore
from tiktok_minis.store.scores import ScoreStore
from tiktok_minis.store.sessions import SessionStore
from tiktok_minis.store.webhooks import WebhookEventStore

__all__ = ["Store"]


class Store:
    """The plugin's queries on one database, one object per table::

        store = Store(database)
        row = await store.players.by_open_id(open_id)
        written = await store.scores.write(ScoreWrite(...))

    Building it opens nothing: the database is opened (and closed) on its own.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self.avatars = AvatarStore(database)
        self.score_removals = ScoreRemovalStore(database)
        self.scores = ScoreStore(database, self.score_removals)
        self.sessions = SessionStore(database)
        self.players = PlayerStore(
            database, scores=self.scores, sessions=self.sessions, avatars=self.avatars
        )
        #: The login write, batched: logins that arrive together are one statement.
        self.logins = LoginWriter(database)
        self.webhook_events = WebhookEventStore(database)

    def __repr__(self) -> str:
        return f"Store(dialect={self.database.dialect!r})"
