"""The emulator's state and rules, all in memory: users, grants, codes, tokens, faults.

:class:`Sandbox` is what a test or the demo drives (add users, press Allow, revoke, inject
faults); the HTTP routes in ``api.py`` and ``control.py`` only translate requests into calls on
it. The OAuth rules themselves live in ``oauth.py``.
"""

from __future__ import annotations

import collections
import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tiktok_minis.sandbox.calls import CallCounter
from tiktok_minis.sandbox.faults import Fault, FaultBook
from tiktok_minis.sandbox.identity import (
    avatar_path,
    avatar_signature,
    fun_name,
    new_log_id,
    new_opaque_id,
    new_token,
)
from tiktok_minis.sandbox.tokens import Code, Token, drop_owned, expire_now, sweep_expired
from tiktok_minis.settings import SANDBOX_CLIENT_KEY, SANDBOX_CLIENT_SECRET

__all__ = ["BASIC_SCOPE", "OPEN_ID_SCOPE", "Sandbox", "SandboxUser"]

#: Granted by silent login: the open_id alone.
OPEN_ID_SCOPE = "user.info.open_id"
#: Granted when the user presses Allow: name, avatar, union_id.
BASIC_SCOPE = "user.info.basic"

_PRUNE_EVERY = 256  # issued codes/tokens between two sweeps of the expired ones


@dataclass(eq=False)
class SandboxUser:
    """A TikTok user of the emulator.

    ``custom_avatar_url`` is the avatar given to :meth:`Sandbox.add_user` or
    :meth:`Sandbox.set_profile`; without one the user has a generated SVG, reached through a
    signed link. ``avatar_url`` is the link user info would return now. ``granted_scopes`` holds
    what the user consented to (``user.info.basic`` after Allow); silent login needs no consent.
    ``denials`` counts the times the user pressed Deny.
    """

    open_id: str
    union_id: str
    display_name: str
    custom_avatar_url: str | None = None
    granted_scopes: set[str] = field(default_factory=set)
    denials: int = 0
    #: The opaque key in the avatar link: a link must not reveal the open_id to other players.
    avatar_id: str = field(default_factory=lambda: new_opaque_id())
    _sandbox: Sandbox | None = field(default=None, init=False, repr=False)

    @property
    def avatar_url(self) -> str:
        """The avatar link as user info gives it: the custom URL, or a fresh signed link."""
        if self.custom_avatar_url:
            return self.custom_avatar_url
        if self._sandbox is None:
            raise RuntimeError("this user does not belong to a Sandbox")
        return self._sandbox.avatar_link(self.open_id)


class Sandbox:
    """The TikTok emulator's state: everything TikTok would know, held in memory.

    ``clock`` is the emulator's time (codes live ``code_ttl`` seconds, tokens ``access_ttl`` and
    ``refresh_ttl``, avatar links ``avatar_ttl``); pass a :class:`ManualClock` to move it in
    tests. ``rotate_refresh_tokens`` makes every refresh return a new refresh token and retire
    the old one. ``user_info_rate_limit`` caps user-info requests per sliding minute (off when
    None). ``avatar_base_url`` is where browsers reach the control app (e.g.
    ``"/ttminis/sandbox"``); when None, avatar links point at the emulator's own URL. ``seed``
    makes generated names repeatable. ``max_devices`` bounds the users the control routes create
    (a public demo must not grow without end): past it, the oldest device's user is forgotten.

    The tables (``codes``, ``access_tokens``, ``refresh_tokens``, ``devices``) are the
    emulator's insides, readable in tests; change state through the methods.
    """

    def __init__(
        self,
        client_key: str = SANDBOX_CLIENT_KEY,
        client_secret: str = SANDBOX_CLIENT_SECRET,
        *,
        access_ttl: int = 86400,
        refresh_ttl: int = 365 * 86400,
        rotate_refresh_tokens: bool = True,
        clock: Callable[[], float] = time.time,
        avatar_base_url: str | None = None,
        user_info_rate_limit: int | None = None,
        code_ttl: int = 300,
        avatar_ttl: int = 6 * 3600,
        seed: int | None = None,
        max_devices: int = 10_000,
    ) -> None:
        for name, ttl in (
            ("access_ttl", access_ttl),
            ("refresh_ttl", refresh_ttl),
            ("code_ttl", code_ttl),
            ("avatar_ttl", avatar_ttl),
        ):
            if ttl <= 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        if max_devices < 1:
            raise ValueError("max_devices must be at least 1")
        if user_info_rate_limit is not None and user_info_rate_limit < 1:
            raise ValueError("user_info_rate_limit must be at least 1 (or None for no limit)")
        if not client_key or not client_secret:
            raise ValueError("client_key and client_secret must be non-empty")
        self.client_key = client_key
        self.client_secret = client_secret
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.clock = clock
        self.avatar_base_url = avatar_base_url
        self.user_info_rate_limit = user_info_rate_limit
        self.code_ttl = code_ttl
        self.avatar_ttl = avatar_ttl
        self.max_devices = max_devices
        #: Where the emulator itself serves the control app; set by :class:`SandboxServer`.
        self.served_avatar_base_url: str | None = None
        #: The app's webhook, called like TikTok does when a user removes the app: an absolute
        #: URL, or a path on the origin the control request came to. ``None``: no webhook.
        self.webhook_url: str | None = None
        #: Requests per endpoint ("token", "revoke", "user_info"), counted as they arrive.
        self.calls = CallCounter()
        #: Every user, by open_id.
        self.users: dict[str, SandboxUser] = {}
        self.devices: dict[str, str] = {}
        self.codes: dict[str, Code] = {}
        self.access_tokens: dict[str, Token] = {}
        self.refresh_tokens: dict[str, Token] = {}
        self.user_info_window: collections.deque[float] = collections.deque()
        self._faults = FaultBook()
        self._avatar_key = secrets.token_bytes(32)
        self._avatar_owners: dict[str, str] = {}
        self._rng = random.Random(seed)
        self._issued = 0

    def __repr__(self) -> str:
        return f"<Sandbox users={len(self.users)} client_key={self.client_key!r}>"

    # -- time and ids ------------------------------------------------------------------------

    def now(self) -> float:
        """The emulator's current time (its ``clock``)."""
        return self.clock()

    def new_log_id(self) -> str:
        """A fresh log id, as every answer carries."""
        return new_log_id(self.now())

    # -- users -------------------------------------------------------------------------------

    def add_user(
        self,
        *,
        display_name: str | None = None,
        avatar_url: str | None = None,
        open_id: str | None = None,
    ) -> SandboxUser:
        """Create a user: a fun random name, a generated avatar and a random open_id by default."""
        if open_id is not None and (not open_id or open_id in self.users):
            raise ValueError("open_id must be non-empty and not already used")
        user = SandboxUser(
            open_id=open_id or new_opaque_id(),
            union_id=new_opaque_id(),
            display_name=fun_name(self._rng) if display_name is None else display_name,
            custom_avatar_url=avatar_url or None,
        )
        user._sandbox = self
        self.users[user.open_id] = user
        self._avatar_owners[user.avatar_id] = user.open_id
        return user

    def user_by_avatar_id(self, avatar_id: str) -> SandboxUser | None:
        """The user whose generated avatar has that id, if any."""
        open_id = self._avatar_owners.get(avatar_id)
        return self.users.get(open_id) if open_id is not None else None

    def user(self, open_id: str) -> SandboxUser:
        """The user with ``open_id``; KeyError when there is none."""
        try:
            return self.users[open_id]
        except KeyError:
            raise KeyError(f"no sandbox user has the open_id {open_id!r}") from None

    def user_for_device(self, device: str) -> SandboxUser:
        """The user logged in to TikTok on ``device`` (any string); created on first use."""
        open_id = self.devices.get(device)
        if open_id is not None and open_id in self.users:
            return self.users[open_id]
        self.devices.pop(device, None)
        while len(self.devices) >= self.max_devices:
            forgotten = self.devices.pop(next(iter(self.devices)))
            if forgotten in self.users:
                self.revoke_user(forgotten)
                self._avatar_owners.pop(self.users.pop(forgotten).avatar_id, None)
        user = self.add_user()
        self.devices[device] = user.open_id
        return user

    def set_profile(
        self, open_id: str, *, display_name: str | None = None, avatar_url: str | None = None
    ) -> None:
        """Change the profile on TikTok's side; ``avatar_url=""`` restores the generated avatar."""
        user = self.user(open_id)
        if display_name is not None:
            user.display_name = display_name
        if avatar_url is not None:
            user.custom_avatar_url = avatar_url or None

    # -- what the user does in the TikTok app --------------------------------------------------

    def login_code(self, open_id: str) -> str:
        """The one-time code ``TTMinis.game.login`` gives the game (silent login)."""
        return self._new_code(open_id, "login")

    def authorize_code(self, open_id: str) -> str:
        """The user pressed Allow: ``user.info.basic`` is granted; returns the success code."""
        self.user(open_id).granted_scopes.add(BASIC_SCOPE)
        return self._new_code(open_id, "authorize")

    def deny(self, open_id: str) -> None:
        """The user pressed Deny: nothing is granted, no code is given (an earlier grant stays)."""
        self.user(open_id).denials += 1

    def revoke_user(self, open_id: str) -> None:
        """The user removed the app: the grant is gone and every code and token stops working."""
        user = self.user(open_id)
        user.granted_scopes.clear()
        drop_owned((self.codes, self.access_tokens, self.refresh_tokens), open_id)

    def _new_code(self, open_id: str, kind: str) -> str:
        self.user(open_id)
        code = Code(secrets.token_urlsafe(32), open_id, kind, self.now() + self.code_ttl)
        self.codes[code.value] = code
        self._count_issue()
        return code.value

    # -- tokens --------------------------------------------------------------------------------

    def issue_tokens(
        self, open_id: str, scopes: frozenset[str], old: Token | None
    ) -> dict[str, Any]:
        """Issue an access token (and a refresh token unless ``old`` is kept): the token answer.

        ``old`` is the refresh token being used, if any: with rotation it is retired and its
        remaining lifetime passes to the new one; without rotation it is returned again.
        """
        now = self.now()
        access = Token(new_token("act"), open_id, scopes, now + self.access_ttl)
        self.access_tokens[access.value] = access
        if old is not None and not self.rotate_refresh_tokens:
            refresh = old
            refresh.scopes = scopes
        else:
            expires_at = old.expires_at if old is not None else now + self.refresh_ttl
            if old is not None:
                self.refresh_tokens.pop(old.value, None)
            refresh = Token(new_token("rft"), open_id, scopes, expires_at)
            self.refresh_tokens[refresh.value] = refresh
        self._count_issue()
        return {
            "open_id": open_id,
            "scope": ",".join(sorted(scopes)),
            "access_token": access.value,
            "expires_in": self.access_ttl,
            "refresh_token": refresh.value,
            "refresh_expires_in": max(0, int(refresh.expires_at - now)),
            "token_type": "Bearer",
        }

    def live_access_token(self, value: str) -> Token | None:
        """The access token ``value`` if it exists and has not expired."""
        token = self.access_tokens.get(value)
        if token is None or self.now() >= token.expires_at:
            return None
        return token

    def expire_access_tokens(self, open_id: str | None = None) -> None:
        """Make the live access tokens (of ``open_id``, or of everyone) expired now."""
        expire_now(self.access_tokens, open_id, self.now())

    def expire_refresh_tokens(self, open_id: str | None = None) -> None:
        """Make the live refresh tokens (of ``open_id``, or of everyone) expired now."""
        expire_now(self.refresh_tokens, open_id, self.now())

    def tokens_of(self, open_id: str) -> list[str]:
        """The live access tokens of ``open_id`` (for assertions in tests)."""
        now = self.now()
        return [
            value
            for value, token in self.access_tokens.items()
            if token.open_id == open_id and now < token.expires_at
        ]

    def _count_issue(self) -> None:
        self._issued += 1
        if self._issued % _PRUNE_EVERY == 0:
            sweep_expired((self.codes, self.access_tokens, self.refresh_tokens), self.now())

    # -- avatars -------------------------------------------------------------------------------

    def avatar_link(self, open_id: str, base_url: str | None = None) -> str:
        """A signed, expiring link to the generated avatar of ``open_id``, like TikTok's CDN's.

        The base is ``base_url``, else ``avatar_base_url``, else the emulator's own URL once
        served, else ``/sandbox`` (relative).
        """
        base = base_url or self.avatar_base_url or self.served_avatar_base_url or "/sandbox"
        avatar_id = self.user(open_id).avatar_id
        expires = int(self.now()) + self.avatar_ttl
        signature = avatar_signature(self._avatar_key, avatar_id, expires)
        query = f"x-expires={expires}&x-signature={signature}"
        return f"{base.rstrip('/')}{avatar_path(avatar_id)}?{query}"

    def check_avatar_link(self, avatar_id: str, expires: str, signature: str) -> bool:
        """Whether an avatar link's ``x-expires`` and ``x-signature`` are genuine and unexpired."""
        if not expires.isdigit() or len(expires) > 12:
            return False
        expected = avatar_signature(self._avatar_key, avatar_id, int(expires))
        return secrets.compare_digest(expected, signature) and self.now() < int(expires)

    # -- faults and calls ----------------------------------------------------------------------

    def inject(
        self,
        endpoint: str,
        *,
        status: int | None = None,
        body: str | bytes | dict[str, Any] | None = None,
        delay: float = 0.0,
        retry_after: float | None = None,
        times: int | None = 1,
        oauth_error: str | None = None,
        api_error: str | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        process_first: bool = False,
        drop: bool = False,
        hold: bool = False,
    ) -> Fault:
        """Make the next ``times`` requests to ``endpoint`` misbehave; returns the fault.

        ``endpoint`` is ``"token"``, ``"revoke"``, ``"user_info"`` or ``"*"``. ``delay`` waits
        that many (real) seconds first without blocking the loop; alone, the request then gets
        its normal answer. ``status`` alone gives the endpoint's own error shape for that status
        (503 gives ``temporarily_unavailable`` or ``internal_error``). ``retry_after`` adds a
        ``Retry-After`` header (status 429 unless given). ``body`` replaces the answer verbatim
        (status 200 unless given; a dict is sent as JSON). ``oauth_error`` answers the flat
        OAuth error with HTTP 200 unless a status is given (on user info it becomes the
        envelope's code); ``api_error`` is the user-info envelope's code, with its documented
        status. ``drop`` closes the connection without an answer. ``process_first`` carries the
        request out (a code is spent, a refresh token rotated) before the fault answers: the
        answer was lost. ``hold`` keeps each request waiting (after ``process_first``, before
        ``delay``) until the returned fault's :meth:`Fault.release`, so a test decides when an
        answer arrives; shutting down answers a held request with 503. ``times=None`` keeps the
        fault until :meth:`clear_faults`.
        """
        fault = Fault(
            endpoint=endpoint,
            status=status,
            body=body,
            delay=delay,
            retry_after=retry_after,
            times=times,
            oauth_error=oauth_error,
            api_error=api_error,
            content_type=content_type,
            headers=dict(headers or {}),
            process_first=process_first,
            drop=drop,
            hold=hold,
        )
        self._faults.add(fault)
        return fault

    def clear_faults(self) -> None:
        """Forget every pending fault."""
        self._faults.clear()

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The faults still pending."""
        return self._faults.pending

    def take_fault(self, endpoint: str) -> Fault | None:
        """The fault for a request arriving at ``endpoint`` now, consumed once."""
        return self._faults.take(endpoint)

    def record_call(self, endpoint: str) -> None:
        """Count a request that arrived at ``endpoint`` and wake whoever waits for it."""
        self.calls.record(endpoint)

    async def wait_for_calls(
        self,
        endpoint: str,
        count: int | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 (a test helper must never hang by default)
    ) -> None:
        """Wait until ``calls[endpoint]`` reaches ``count`` (default: one more than now).

        Give ``count`` when the request may already have arrived; TimeoutError after
        ``timeout`` seconds.
        """
        await self.calls.wait_for(endpoint, count, timeout=timeout)
