"""TikTok's webhook: a player who removes the app goes back to the placeholder at once.

TikTok calls the app's callback URL with ``authorization.removed`` when a user removes the app
(body: https://developers.tiktok.com/doc/webhooks-events/). A request counts only once it
verifies as https://developers.tiktok.com/doc/webhooks-verification describes: the
``TikTok-Signature`` header is ``t=<unix seconds>,s=<hex>``, ``s`` is the HMAC-SHA256 keyed with
the app's client secret of ``"<t>.<raw body>"``, and ``t`` lies within the tolerance of our clock.

Delivery (https://developers.tiktok.com/doc/webhooks-overview/) is at least once, retried with
backoff for up to 72 hours until the endpoint answers 200. Hence:

- every verified, well-formed event is answered 200, acted on or not, or TikTok retries it;
- before acting, an event is claimed under the SHA-256 of its body (which holds the user, the
  event's ``create_time`` and its content): a second delivery, re-signed by TikTok or replayed
  byte for byte within the tolerance, finds the claim and changes nothing, even if the player
  has authorized again since;
- a removal older than the player's latest profile fetch was overtaken by a new grant (a fetch
  cannot succeed with the revoked tokens) and changes nothing either;
- when acting fails the claim is released and the answer is 500, so TikTok's retry acts.

This is an HTTP face on the player service, like ``realtime`` is the Socket.IO one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from enum import StrEnum

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tiktok_minis.services.players import Player, Players
from tiktok_minis.services.webhook_events import (
    TIKTOK_RETRY_WINDOW,
    WebhookEvents,
    event_retention,
)

__all__ = [
    "DEFAULT_PATH",
    "MAX_BODY_BYTES",
    "SIGNATURE_HEADER",
    "TIKTOK_RETRY_WINDOW",
    "Verdict",
    "add_webhook_route",
    "event_digest",
    "event_retention",
    "verify_signature",
]

log = logging.getLogger("tiktok_minis.webhook")

#: The header TikTok signs each delivery in.
SIGNATURE_HEADER = "TikTok-Signature"
#: Where the route is mounted unless told otherwise.
DEFAULT_PATH = "/ttminis/webhooks/tiktok"
#: TikTok's events are small JSON objects; this bounds what an unsigned flood can make us hold.
MAX_BODY_BYTES = 64 * 1024

REMOVED = "authorization.removed"

_MAX_HEADER = 1024
_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits: str.isdigit would accept other scripts
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_EVENT_LOGGED = 64  # the event name is TikTok's (signed) but still bounded in a log line


class Verdict(StrEnum):
    """What :func:`verify_signature` found; only ``VALID`` lets a request through."""

    VALID = "valid"
    MISSING = "missing"  # no TikTok-Signature header
    MALFORMED = "malformed"  # no single numeric t, or no hex s
    MISMATCH = "mismatch"  # no s is the signature of this body under our secret
    EXPIRED = "expired"  # signed by TikTok, but t is outside the tolerance (either side)


def _parse_header(header: str) -> tuple[str, list[str]] | None:
    """The timestamp and the candidate signatures of a ``t=...,s=...`` header, or ``None``."""
    if len(header) > _MAX_HEADER:
        return None
    timestamps: list[str] = []
    signatures: list[str] = []
    for element in header.split(","):
        prefix, _, value = element.partition("=")
        prefix, value = prefix.strip(), value.strip()
        if prefix == "t":
            timestamps.append(value)
        elif prefix == "s" and _HEX_SHA256.fullmatch(value):
            signatures.append(value.lower())
        # Other prefixes are skipped: the docs speak of "signatures", and a later scheme may
        # add elements next to the ones we check.
    if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]) or not signatures:
        return None
    return timestamps[0], signatures


def verify_signature(
    header: str | None,
    body: bytes,
    *,
    client_secret: str,
    tolerance_seconds: float,
    now: float,
) -> Verdict:
    """Check a delivery's ``TikTok-Signature`` header against its raw ``body``.

    The signed payload is the header's timestamp as sent, a ``.``, then the body's bytes; the
    comparison runs in constant time. The timestamp is checked after the signature, as the docs
    order it, and must be within ``tolerance_seconds`` of ``now`` (a Unix time).
    """
    if not header:
        return Verdict.MISSING
    parsed = _parse_header(header)
    if parsed is None:
        return Verdict.MALFORMED
    timestamp, signatures = parsed
    message = f"{timestamp}.".encode() + body
    expected = hmac.new(client_secret.encode(), message, hashlib.sha256).hexdigest()
    matched = False
    for candidate in signatures:  # every candidate compared: no early exit to time
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        return Verdict.MISMATCH
    if abs(now - int(timestamp)) > tolerance_seconds:
        return Verdict.EXPIRED
    return Verdict.VALID


def event_digest(body: bytes) -> str:
    """The key an event is claimed under: the SHA-256 of its body, hex.

    The body rather than the signed payload: TikTok may sign a retry of an event afresh (a new
    ``t``), and a retry of an event already handled must change nothing.
    """
    return hashlib.sha256(body).hexdigest()


class _Event(BaseModel):
    """The envelope every event shares. Only what every event type carries is required, so a
    type this plugin ignores is still answered 200 and not retried for three days."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    client_key: str
    event: str
    create_time: int | None = None
    user_openid: str | None = Field(default=None, min_length=1)
    content: str | None = None


def _reason(content: str | None) -> int | None:
    """``reason`` from the event's ``content`` (a JSON string), for the log; ``None`` if unreadable.

    Only logged: the removal stands whatever the reason, so a malformed ``content`` must not
    keep a name on screen that its owner took back.
    """
    if not content:
        return None
    try:
        parsed = json.loads(content)
    except (ValueError, RecursionError):
        return None
    reason = parsed.get("reason") if isinstance(parsed, dict) else None
    return reason if isinstance(reason, int) and not isinstance(reason, bool) else None


def _ok() -> web.Response:
    return web.json_response({"ok": True})


def _failure(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error": {"code": code, "message": message}}, status=status
    )


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The raw body, or ``None`` once it is longer than ``limit`` (declared or streamed)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


class _RevocationWebhook:
    """The route's handler, holding what it was wired with."""

    def __init__(
        self,
        players: Players,
        events: WebhookEvents,
        *,
        client_key: str,
        client_secret: str,
        tolerance_seconds: int,
        clock: Callable[[], float],
    ) -> None:
        self._players = players
        self._events = events
        self._client_key = client_key
        self._client_secret = client_secret
        self._tolerance = tolerance_seconds
        self._clock = clock

    async def handle(self, request: web.Request) -> web.Response:
        verified = await self._verified(request)
        if isinstance(verified, web.Response):
            return verified
        body, event = verified
        logged = {"tiktok_event": event.event[:_EVENT_LOGGED]}
        if event.client_key != self._client_key:
            # Signed with our secret yet for another app: a misconfiguration, never ours to act on.
            log.warning("webhook ignored", extra={"event": "webhook_other_app", **logged})
            return _ok()
        if event.event != REMOVED:
            log.info("webhook ignored", extra={"event": "webhook_ignored", **logged})
            return _ok()
        if event.user_openid is None or event.create_time is None:
            log.warning("webhook refused", extra={"event": "webhook_malformed", **logged})
            return _failure(400, "invalid_payload", f"{REMOVED} needs user_openid and create_time.")
        try:
            outcome, player = await self._removed(
                event_digest(body), event.user_openid, event.create_time
            )
        except Exception:
            reference = secrets.token_hex(6)
            log.exception(
                "webhook failed",
                extra={"event": "webhook_failed", "reference": reference, **logged},
            )
            return _failure(500, "internal_error", f"Internal error (reference {reference}).")
        log.info(
            "webhook handled",
            extra={
                "event": f"webhook_{outcome}",
                "player": player.id if player else None,
                "reason": _reason(event.content),
                **logged,
            },
        )
        return _ok()

    async def _verified(self, request: web.Request) -> tuple[bytes, _Event] | web.Response:
        """The body and the event it holds once the signature verifies; else the refusal."""
        body = await _read_body(request, MAX_BODY_BYTES)
        if body is None:
            log.warning("webhook refused", extra={"event": "webhook_too_large"})
            return _failure(
                413, "payload_too_large", f"The body must be at most {MAX_BODY_BYTES} bytes."
            )
        verdict = verify_signature(
            request.headers.get(SIGNATURE_HEADER),
            body,
            client_secret=self._client_secret,
            tolerance_seconds=self._tolerance,
            now=self._clock(),
        )
        if verdict is not Verdict.VALID:
            log.warning(
                "webhook refused", extra={"event": "webhook_bad_signature", "verdict": verdict}
            )
            return _failure(
                401,
                "invalid_signature",
                f"The {SIGNATURE_HEADER} header is missing, malformed, wrong or too old.",
            )
        try:
            event = _Event.model_validate_json(body)
        except ValidationError:
            log.warning("webhook refused", extra={"event": "webhook_malformed"})
            return _failure(400, "invalid_payload", "The body is not a TikTok webhook event.")
        return body, event

    async def _removed(
        self, digest: str, open_id: str, create_time: int
    ) -> tuple[str, Player | None]:
        """Act on a verified removal once: the outcome for the log, and the player if known."""
        outcome = await self._events.once(
            digest, REMOVED, lambda: self._revoke(open_id, create_time)
        )
        return outcome if outcome is not None else ("replay", None)

    async def _revoke(self, open_id: str, create_time: int) -> tuple[str, Player | None]:
        player = await self._players.get(open_id)
        if player is None:
            return "unknown_player", None
        if self._overtaken(player, create_time):
            return "overtaken", player
        after = await self._players.revoke_grant(open_id, reason="webhook_removed")
        return ("revoked", after) if after is not None else ("unknown_player", None)

    def _overtaken(self, player: Player, create_time: int) -> bool:
        """Whether the player's profile was fetched after the removal: they granted again since.

        The tolerance that bounds a signature's age also absorbs the skew between TikTok's clock
        and ours and ``create_time``'s whole seconds; within it, the removal wins: showing a
        name its owner withdrew is worse than asking for consent once more.
        """
        fetched = player.profile_fetched_at
        return fetched is not None and fetched.timestamp() > create_time + self._tolerance


def add_webhook_route(
    app: web.Application,
    *,
    players: Players,
    events: WebhookEvents,
    client_key: str,
    client_secret: str,
    tolerance_seconds: int,
    clock: Callable[[], float] = time.time,
    path: str = DEFAULT_PATH,
) -> None:
    """Serve TikTok's webhook at ``POST path`` on ``app``.

    A verified ``authorization.removed`` for ``client_key`` takes the player back to the
    placeholder through :meth:`Players.revoke_grant` (which pushes the change), once per event
    (``events`` keeps the claims). Answers: 200
    ``{"ok": true}`` for every verified event, acted on or not; 401 for a missing, wrong or
    stale signature; 400 for a body that is not an event; 413 past :data:`MAX_BODY_BYTES`;
    500 when acting failed (TikTok retries). ``clock`` gives the Unix time the signature's
    timestamp is checked against.
    """
    webhook = _RevocationWebhook(
        players,
        events,
        client_key=client_key,
        client_secret=client_secret,
        tolerance_seconds=tolerance_seconds,
        clock=clock,
    )
    app.router.add_post(path, webhook.handle)
