"""Tortoise models: fields and ``Meta`` only. Queries live beside them in this package.

``open_id`` is a player's primary key: every score, token and profile hangs off it. Only the
player's own connections are told it; everyone else (leaderboards, other players) sees
``public_id``.
"""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

__all__ = [
    "AvatarRow",
    "Consent",
    "PlayerRow",
    "ScoreRemovalRow",
    "ScoreRow",
    "SessionEndRow",
    "WebhookEventRow",
]


class Consent(StrEnum):
    """Whether the player granted ``user.info.basic`` (the wire's ``consent`` field)."""

    UNKNOWN = "unknown"
    GRANTED = "granted"
    DENIED = "denied"


class PlayerRow(Model):
    """A TikTok player of this app, keyed by ``open_id``; tokens are encrypted at rest."""

    open_id = fields.CharField(primary_key=True, max_length=128)
    public_id = fields.CharField(max_length=32, unique=True)
    consent = fields.CharEnumField(Consent, max_length=16, default=Consent.UNKNOWN)
    display_name = fields.CharField(max_length=256, null=True)
    avatar_url = fields.TextField(null=True)
    union_id = fields.CharField(max_length=128, null=True)
    profile_fetched_at = fields.DatetimeField(null=True)
    profile_refresh_at = fields.DatetimeField(null=True, db_index=True)
    # The background refresher's bookkeeping: a claim (lease) so that several processes never
    # refresh one player twice, and the failures in a row that set its backoff.
    refresh_claimed_until = fields.DatetimeField(null=True)
    refresh_failures = fields.IntField(default=0)
    scopes = fields.CharField(max_length=512, default="")
    access_token = fields.TextField(null=True)  # Fernet ciphertext, never the token itself
    access_expires_at = fields.DatetimeField(null=True)
    refresh_token = fields.TextField(null=True)  # Fernet ciphertext
    refresh_expires_at = fields.DatetimeField(null=True)
    session_epoch = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "ttminis_player"


class ScoreRow(Model):
    """A player's score on one board in one period (``all`` for boards that never reset).

    ``reached_at`` is when the player reached the current score: ties rank it first-come.
    Scores hold no names: a board is rendered by joining the current profile.
    """

    id = fields.BigIntField(primary_key=True)
    board = fields.CharField(max_length=64)
    period = fields.CharField(max_length=16)
    player: fields.ForeignKeyRelation[PlayerRow] = fields.ForeignKeyField(
        "ttminis.PlayerRow", related_name="scores", on_delete=fields.CASCADE, to_field="open_id"
    )
    score = fields.BigIntField()
    reached_at = fields.DatetimeField()
    updated_at = fields.DatetimeField(auto_now=True)
    # Moves on with every write of the row: rank indexes shared by several processes apply a
    # row's writes in this order, whatever order they arrive in.
    version = fields.BigIntField(default=0)

    class Meta:
        table = "ttminis_score"
        unique_together = (("board", "period", "player"),)
        # The second index serves deleting a player: PostgreSQL does not index foreign keys.
        # The third lets a shared rank index re-apply the rows written lately (its repair).
        indexes = (("board", "period", "score", "reached_at"), ("player",), ("updated_at",))


class AvatarRow(Model):
    """An avatar image fetched from TikTok, stored under the SHA-256 of its bytes.

    Content-addressed: players with the same picture share a row, and a row never changes.
    """

    digest = fields.CharField(primary_key=True, max_length=64)
    content_type = fields.CharField(max_length=64)
    data = fields.BinaryField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "ttminis_avatar"


class WebhookEventRow(Model):
    """A webhook event already handled, by the digest of its signed body: replays are ignored."""

    digest = fields.CharField(primary_key=True, max_length=64)
    event = fields.CharField(max_length=64)
    received_at = fields.DatetimeField(auto_now_add=True, db_index=True)

    class Meta:
        table = "ttminis_webhook_event"


class SessionEndRow(Model):
    """Sessions that ended: one session string (``digest``), or every session of a player issued
    under an epoch below ``epoch`` (logout everywhere, forget).

    Resuming checks it; every server process follows it by ``id`` to unbind its own connections,
    so an end recorded by any process (the operator's shell included) reaches all of them.
    Rows are kept as long as a session can live, then housekeeping deletes them.
    """

    id = fields.BigIntField(primary_key=True)
    public_id = fields.CharField(max_length=32)
    digest = fields.CharField(max_length=64, null=True, unique=True)
    epoch = fields.IntField(null=True)
    reason = fields.CharField(max_length=16)
    created_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "ttminis_session_end"


class ScoreRemovalRow(Model):
    """A score row that was deleted (a forgotten player's): every process follows these by
    ``id`` and drops the rows from its rank index. Housekeeping deletes old ones."""

    id = fields.BigIntField(primary_key=True)
    board = fields.CharField(max_length=64)
    period = fields.CharField(max_length=16)
    row_id = fields.BigIntField()
    created_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "ttminis_score_removal"
