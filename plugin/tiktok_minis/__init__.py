"""tiktok-minis: TikTok mini-game login, consented profiles and live leaderboards.

The public API, and nothing else::

    from tiktok_minis import TikTokMinis, Settings, Board

    minis = TikTokMinis(Settings())
    minis.boards.define(Board("global", order="desc", operator="best", client_scores=True))
    minis.attach(sio, app)
"""

from tiktok_minis.errors import (
    ConfigurationError,
    InternalError,
    InvalidPayload,
    LoginFailed,
    MinisError,
    NotAuthorized,
    NotLoggedIn,
    RateLimited,
    ScoreRejected,
    StorageUnavailable,
    TokenExpired,
    UnknownBoard,
    UnknownPlayer,
    UpstreamRejected,
    UpstreamUnavailable,
)
from tiktok_minis.minis import MINIS_KEY, TikTokMinis
from tiktok_minis.ops.logs import JsonFormatter
from tiktok_minis.services.leaderboards import Board, Entry, EntryPlayer
from tiktok_minis.services.players import Player
from tiktok_minis.settings import Settings
from tiktok_minis.store.models import Consent

__all__ = [
    "MINIS_KEY",
    "Board",
    "ConfigurationError",
    "Consent",
    "Entry",
    "EntryPlayer",
    "InternalError",
    "InvalidPayload",
    "JsonFormatter",
    "LoginFailed",
    "MinisError",
    "NotAuthorized",
    "NotLoggedIn",
    "Player",
    "RateLimited",
    "ScoreRejected",
    "Settings",
    "StorageUnavailable",
    "TikTokMinis",
    "TokenExpired",
    "UnknownBoard",
    "UnknownPlayer",
    "UpstreamRejected",
    "UpstreamUnavailable",
]
