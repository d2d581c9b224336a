"""Tokens at rest, for the player service: a TikTok token set sealed for the store, and a stored
token read back. Only ciphertexts reach the store; a ciphertext that no configured key opens
reads back as no token at all, so the player logs in (or authorizes) again."""

from __future__ import annotations

import logging

from tiktok_minis.store.crypto import InvalidToken, TokenCipher
from tiktok_minis.store.players import EncryptedTokens
from tiktok_minis.tiktok.models import TokenSet

__all__ = ["seal", "unseal"]

log = logging.getLogger("tiktok_minis.players")


def seal(cipher: TokenCipher, tokens: TokenSet) -> EncryptedTokens:
    """``tokens`` as the store keeps them: both tokens encrypted, the scopes sorted."""
    return EncryptedTokens(
        access_token=cipher.encrypt(tokens.access_token),
        access_expires_at=tokens.access_expires_at,
        refresh_token=cipher.encrypt(tokens.refresh_token),
        refresh_expires_at=tokens.refresh_expires_at,
        scopes=",".join(sorted(tokens.scopes)),
    )


def unseal(cipher: TokenCipher, ciphertext: str | None) -> str | None:
    """The token in ``ciphertext``; ``None`` when there is none or no configured key opens it."""
    if ciphertext is None:
        return None
    try:
        return cipher.decrypt(ciphertext)
    except InvalidToken:
        # Encrypted under a key no longer configured: as good as no token at all.
        log.warning("stored token unreadable", extra={"event": "token_unreadable"})
        return None
