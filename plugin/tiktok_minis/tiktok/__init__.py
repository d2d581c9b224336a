"""The TikTok Open API client: no Socket.IO, no database, nothing about games."""

from tiktok_minis.tiktok.client import TikTokClient
from tiktok_minis.tiktok.models import USER_INFO_FIELDS, TikTokUser, TokenSet

__all__ = ["USER_INFO_FIELDS", "TikTokClient", "TikTokUser", "TokenSet"]
