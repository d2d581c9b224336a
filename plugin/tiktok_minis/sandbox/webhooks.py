"""Webhook requests as TikTok sends them, signed for the emulator's app (or any app).

TikTok signs each delivery with the app's client secret
(https://developers.tiktok.com/doc/webhooks-verification): the ``TikTok-Signature`` header is
``t=<unix seconds>,s=<hex>``, where ``s`` is the HMAC-SHA256 of ``"<t>.<raw body>"``. This module
signs on its own, apart from the plugin's verifier, so that a test of one checks the other::

    body, headers = signed_webhook(
        sandbox.client_secret,
        authorization_removed(sandbox.client_key, user.open_id, create_time=int(time.time())),
        timestamp=int(time.time()),
    )
    await http.post(f"{game_url}/ttminis/webhooks/tiktok", data=body, headers=headers)
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["SIGNATURE_HEADER", "authorization_removed", "sign", "signed_webhook"]

#: The header TikTok puts the signature in.
SIGNATURE_HEADER = "TikTok-Signature"


def sign(client_secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``client_secret``."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(client_secret.encode(), message, hashlib.sha256).hexdigest()


def signed_webhook(
    client_secret: str, body: Mapping[str, Any] | bytes, *, timestamp: int
) -> tuple[bytes, dict[str, str]]:
    """A delivery signed at ``timestamp``: the body bytes and the headers to send with them.

    ``body`` is an event (serialised as JSON) or raw bytes, to sign a malformed body on purpose.
    """
    raw = body if isinstance(body, bytes) else json.dumps(dict(body)).encode()
    headers = {
        SIGNATURE_HEADER: f"t={timestamp},s={sign(client_secret, timestamp, raw)}",
        "Content-Type": "application/json",
    }
    return raw, headers


def authorization_removed(
    client_key: str, open_id: str, *, create_time: int, reason: int = 1
) -> dict[str, Any]:
    """The ``authorization.removed`` event: the user removed the app (reason 1: in TikTok).

    ``content`` is a JSON string inside the JSON, as TikTok documents it
    (https://developers.tiktok.com/doc/webhooks-events/).
    """
    return {
        "client_key": client_key,
        "event": "authorization.removed",
        "create_time": create_time,
        "user_openid": open_id,
        "content": json.dumps({"reason": reason}),
    }
