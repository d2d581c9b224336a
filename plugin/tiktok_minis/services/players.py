"""The player service: silent login, explicit authorization, tokens and the cached profile.

The rules of the product live here: silent login first and never a user-info call for it;
authorization only when the game asks; the placeholder when the player denies or TikTok says
the scope is missing; a profile cached and refreshed every few days, never on every launch;
access tokens renewed before they fail, one refresh per player at a time, the newest refresh
token always kept. It knows neither Socket.IO nor HTTP.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from tiktok_minis.errors import (
    LoginFailed,
    MinisError,
    NotAuthorized,
    TokenExpired,
    UnknownPlayer,
)
from tiktok_minis.services.clock import Clock, utc_now
from tiktok_minis.services.profile import Forgotten, Placeholder, Player
from tiktok_minis.services.tokens import seal, unseal
from tiktok_minis.store import Store
from tiktok_minis.store.crypto import TokenCipher
from tiktok_minis.store.models import Consent, PlayerRow
from tiktok_minis.store.players import FetchedProfile, new_public_id
from tiktok_minis.support.concurrency import KeyedLock, SingleFlight
from tiktok_minis.support.listeners import Listeners
from tiktok_minis.tiktok.client import TikTokClient
from tiktok_minis.tiktok.models import TikTokUser

__all__ = [
    "AvatarKeeper",
    "Forgotten",
    "Player",
    "PlayerListener",
    "Players",
]

log = logging.getLogger("tiktok_minis.players")

T = TypeVar("T")
PlayerListener = Callable[[Player], None]
#: Turns TikTok's short-lived avatar link into a lasting one (or ``None``: the default avatar).
AvatarKeeper = Callable[[str | None], Awaitable[str | None]]


async def _keep_link(url: str | None) -> str | None:
    return url


class Players:
    """Logs players in, records their consent, fetches and caches their profile."""

    def __init__(
        self,
        store: Store,
        client: TikTokClient,
        cipher: TokenCipher,
        placeholder: Placeholder,
        *,
        refresh_days: tuple[float, float] = (3.0, 7.0),
        token_leeway: timedelta = timedelta(minutes=5),
        clock: Clock = utc_now,
        keep_avatar: AvatarKeeper = _keep_link,
    ) -> None:
        self._store = store.players
        self._logins = store.logins
        self._client = client
        self._keep_avatar = keep_avatar
        self._cipher = cipher
        self._placeholder = placeholder
        self._refresh_days = refresh_days
        self._leeway = token_leeway
        self._clock = clock
        self._token_locks: KeyedLock[str] = KeyedLock()
        self._profile_fetches: SingleFlight[str, Player] = SingleFlight()
        self._profile_writes: KeyedLock[str] = KeyedLock()
        self._listeners: Listeners[Player] = Listeners(log, "player")
        self._forgotten_listeners: Listeners[Player] = Listeners(log, "forgotten player")

    # -- the change feed ---------------------------------------------------------------------

    def subscribe(self, listener: PlayerListener) -> Callable[[], None]:
        """Call ``listener`` with the player whenever what a client sees of them changes."""
        return self._listeners.subscribe(listener)

    def subscribe_forgotten(self, listener: PlayerListener) -> Callable[[], None]:
        """Call ``listener`` with the player as they were, once they have been forgotten."""
        return self._forgotten_listeners.subscribe(listener)

    def _changed(self, player: Player) -> None:
        self._listeners.emit(player)

    # -- reading -----------------------------------------------------------------------------

    def _view(self, row: PlayerRow) -> Player:
        shown = self._placeholder.show(row.display_name, row.avatar_url)
        return Player(
            open_id=row.open_id,
            id=row.public_id,
            display_name=shown.display_name,
            avatar_url=shown.avatar_url,
            placeholder=shown.placeholder,
            consent=row.consent,
            union_id=row.union_id,
            profile_fetched_at=row.profile_fetched_at,
            session_epoch=row.session_epoch,
        )

    async def get(self, open_id: str) -> Player | None:
        """The stored player, or ``None`` if that ``open_id`` never logged in."""
        row = await self._store.by_open_id(open_id)
        return self._view(row) if row else None

    async def get_by_public_id(self, public_id: str) -> Player | None:
        """The player with that public id, or ``None``."""
        row = await self._store.by_public_id(public_id)
        return self._view(row) if row else None

    async def _row(self, open_id: str) -> PlayerRow:
        row = await self._store.by_open_id(open_id)
        if row is None:
            raise UnknownPlayer(
                f"No player has logged in with that open_id ({len(open_id)} chars)."
            )
        return row

    # -- login and authorization -------------------------------------------------------------

    async def login(self, code: str) -> Player:
        """Exchange a silent-login code and store the player: never a user-info call.

        A returning player gets the profile already stored; a new one the placeholder.
        """
        tokens = await self._client.fetch_token(code)
        row, created = await self._logins.log_in(
            tokens.open_id, new_public_id(), seal(self._cipher, tokens), self._clock()
        )
        log.info(
            "player logged in",
            extra={"event": "login", "player": row.public_id, "new_player": created},
        )
        return self._view(row)

    async def authorize(self, open_id: str, granted: bool, code: str | None = None) -> Player:
        """Record the outcome of the consent popup and, when granted, fetch the profile.

        With a ``code`` (from ``TTMinis.game.authorize``) the code is exchanged first and must
        belong to ``open_id``; otherwise the stored token is used (refreshed if it expired).
        Denial records ``denied``, calls nothing upstream and leaves the placeholder. Raises
        :class:`NotAuthorized` (carrying the placeholder player) when TikTok says the scope is
        missing, :class:`LoginFailed` for a bad or foreign code.
        """
        row = await self._row(open_id)
        if not granted:
            return await self._revert(row, Consent.DENIED, reason="denied")
        if code is not None:
            tokens = await self._client.fetch_token(code)
            if tokens.open_id != open_id:
                log.warning(
                    "authorization code of another player refused",
                    extra={"event": "authorize_foreign_code", "player": row.public_id},
                )
                raise LoginFailed("That authorization code belongs to another TikTok account.")
            await self._store.save_tokens(open_id, seal(self._cipher, tokens))
            # A fetch already under way began with the older tokens (a silent login's, say,
            # without user.info.basic): its answer says nothing about this grant, so this one
            # never joins it, and supersedes it (see _write_if_current).
            return await self._profile_fetches.run(
                open_id, lambda: self._fetch_profile(open_id), fresh=True
            )
        return await self.refresh_profile(open_id)

    async def refresh_profile(self, open_id: str) -> Player:
        """Fetch the profile from TikTok now and store it; concurrent calls share one fetch."""
        return await self._profile_fetches.run(open_id, lambda: self._fetch_profile(open_id))

    async def _fetch_profile(self, open_id: str) -> Player:
        """One shared fetch: TikTok's answer stored, unless newer tokens superseded the fetch.

        A superseded fetch writes nothing and its callers get the newer fetch's outcome.
        """
        try:
            user = await self._with_access_token(open_id, self._client.fetch_user)
        except NotAuthorized as exc:
            if exc.player is not None:  # the grant was lost while refreshing, and recorded
                if not self._profile_fetches.is_current(open_id):
                    return await self.refresh_profile(open_id)
                raise
            # TikTok says the scope is not (or no longer) granted: the real name must stop
            # showing, and the client may offer the popup again later.
            player = await self._write_if_current(
                open_id, lambda row: self._revert(row, Consent.UNKNOWN, reason="scope_missing")
            )
            if player is None:
                return await self.refresh_profile(open_id)
            raise NotAuthorized(exc.message, log_id=exc.log_id, player=player) from exc
        # Downloaded before taking the write lock: a slow CDN must not hold up other writers.
        avatar_url = await self._keep_avatar(user.avatar_url)
        stored = await self._write_if_current(
            open_id, lambda row: self._store_profile(row, user, avatar_url)
        )
        return stored if stored is not None else await self.refresh_profile(open_id)

    async def _write_if_current(
        self, open_id: str, write: Callable[[PlayerRow], Awaitable[Player]]
    ) -> Player | None:
        """``write(row)`` from the current fetch; ``None`` (nothing written) from a superseded one.

        One writer per player at a time, the check inside the lock: a fetch that began with older
        tokens cannot write its answer after a newer fetch's, whatever order they finish in.
        """
        async with self._profile_writes.hold(open_id):
            row = await self._row(open_id)
            if not self._profile_fetches.is_current(open_id):
                log.info(
                    "profile answer for older tokens dropped",
                    extra={"event": "profile_fetch_superseded", "player": row.public_id},
                )
                return None
            return await write(row)

    async def _store_profile(
        self, before: PlayerRow, user: TikTokUser, avatar_url: str | None
    ) -> Player:
        now = self._clock()
        low, high = self._refresh_days
        await self._store.set_profile(
            before.open_id,
            FetchedProfile(
                display_name=(user.display_name or "").strip()[:256] or None,
                avatar_url=avatar_url,
                union_id=user.union_id,
                fetched_at=now,
                refresh_at=now + timedelta(days=random.uniform(low, high)),
            ),
        )
        after = self._view(await self._row(before.open_id))
        log.info("profile stored", extra={"event": "profile_stored", "player": after.id})
        if after != self._view(before):
            self._changed(after)
        return after

    async def revoke_grant(self, open_id: str, *, reason: str) -> Player | None:
        """TikTok says the player removed the app: drop tokens and profile, consent ``unknown``.

        Pushed live when a client saw a name. Idempotent; ``None`` for an unknown ``open_id``.
        The next login works as for anyone: a fresh code brings fresh tokens.
        """
        row = await self._store.by_open_id(open_id)
        if row is None:
            return None
        return await self._lose_grant(row, reason=reason)

    async def _lose_grant(self, row: PlayerRow, *, reason: str) -> Player:
        """The grant is gone at TikTok: forget the tokens, back to the placeholder (``unknown``)."""
        await self._store.clear_tokens(row.open_id)
        return await self._revert(row, Consent.UNKNOWN, reason=reason)

    async def forget(self, open_id: str, *, anonymise_scores: bool = False) -> Forgotten:
        """Forget a player: revoke the grant at TikTok, delete tokens, profile and the row.

        Their scores are deleted, or with ``anonymise_scores`` kept under an anonymous stand-in
        shown as the placeholder. Local deletion happens even when TikTok cannot be reached (the
        result says so). Every session of theirs ends, on every process; a later login is a new
        player. Raises :class:`UnknownPlayer` for an ``open_id`` that is not stored.
        """
        row = await self._row(open_id)
        before = self._view(row)
        revoked = await self._revoke_at_tiktok(row)
        scores = await self._store.forget(
            open_id, anonymise_scores=anonymise_scores, now=self._clock()
        )
        log.info(
            "player forgotten",
            extra={
                "event": "forget",
                "player": before.id,
                "revoked": revoked,
                "scores": scores,
                "anonymised": anonymise_scores,
            },
        )
        self._forgotten_listeners.emit(before)
        return Forgotten(before, revoked, scores, anonymise_scores)

    async def _revoke_at_tiktok(self, row: PlayerRow) -> bool:
        """Revoke the stored grant; ``False`` when there was none or TikTok could not be told."""
        if row.refresh_token is None and row.access_token is None:
            return False
        try:
            await self._with_access_token(row.open_id, self._client.revoke_token)
        except NotAuthorized:
            return False  # the grant was already dead: nothing left to revoke
        except MinisError as exc:
            log.warning(
                "revoke at tiktok failed",
                extra={"event": "revoke_failed", "player": row.public_id, "code": exc.code},
            )
            return False
        return True

    async def _revert(self, row: PlayerRow, consent: Consent, *, reason: str) -> Player:
        """Back to the placeholder with ``consent``; pushed if a client saw something else."""
        await self._store.revert_to_placeholder(row.open_id, consent)
        after = self._view(await self._row(row.open_id))
        log.info("player shown as placeholder", extra={"event": reason, "player": after.id})
        if after != self._view(row):
            self._changed(after)
        return after

    # -- tokens ------------------------------------------------------------------------------

    async def access_token(self, open_id: str) -> str:
        """A working access token for ``open_id`` (for payments, say), refreshed if due."""
        return await self._fresh_access_token(open_id, stale=None)

    async def _with_access_token(self, open_id: str, call: Callable[[str], Awaitable[T]]) -> T:
        """Call with a fresh token; on ``access_token_invalid`` refresh then retry once."""
        token = await self._fresh_access_token(open_id, stale=None)
        try:
            return await call(token)
        except TokenExpired:
            token = await self._fresh_access_token(open_id, stale=token)
            return await call(token)

    async def _fresh_access_token(self, open_id: str, *, stale: str | None) -> str:
        """The stored access token, refreshed first if it expires within the leeway or is ``stale``.

        One refresh per player at a time: later callers find the new token when they get the lock.
        """
        async with self._token_locks.hold(open_id):
            row = await self._row(open_id)
            access = unseal(self._cipher, row.access_token)
            expires = row.access_expires_at
            if (
                access is not None
                and access != stale
                and expires is not None
                and expires - self._leeway > self._clock()
            ):
                return access
            return await self._refresh_tokens(row)

    async def _refresh_tokens(self, row: PlayerRow) -> str:
        """Trade the refresh token for new tokens; revert to the placeholder if it is dead."""
        for _ in range(2):  # a second pass only when another process rotated the token meanwhile
            refresh = unseal(self._cipher, row.refresh_token)
            if refresh is None or row.refresh_token is None:
                break
            try:
                tokens = await self._client.refresh_token(refresh)
            except LoginFailed:
                latest = await self._row(row.open_id)
                if latest.refresh_token != row.refresh_token:
                    row = latest  # another process refreshed first: its token is the live one
                    continue
                break
            sealed = seal(self._cipher, tokens)
            if await self._store.replace_tokens(row.open_id, row.refresh_token, sealed):
                log.info(
                    "tokens refreshed", extra={"event": "token_refresh", "player": row.public_id}
                )
                return tokens.access_token
            row = await self._row(row.open_id)
            access = unseal(self._cipher, row.access_token)
            if access is not None:
                return access
        player = await self._lose_grant(row, reason="grant_lost")
        raise NotAuthorized("The player's TikTok grant has expired or was revoked.", player=player)
