"""Made-up identities for the emulator: ids, fun names, log ids, generated avatars and their links.

Nothing here touches the emulator's state: these are pure helpers that ``state.py`` and the
routes share.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
import time
from html import escape
from urllib.parse import quote

__all__ = [
    "avatar_path",
    "avatar_signature",
    "avatar_svg",
    "fun_name",
    "initials",
    "new_log_id",
    "new_opaque_id",
    "new_token",
]

_ADJECTIVES = (
    "Pixel", "Turbo", "Cosmic", "Neon", "Lucky", "Sneaky", "Mighty", "Fuzzy", "Happy", "Rapid",
    "Sunny", "Shadow", "Crispy", "Bouncy", "Brave", "Wild", "Jolly", "Zippy", "Frosty", "Golden",
)  # fmt: skip
_ANIMALS = (
    "Fox", "Panda", "Otter", "Tiger", "Koala", "Falcon", "Llama", "Dragon", "Penguin", "Gecko",
    "Badger", "Shark", "Owl", "Lynx", "Moose", "Raccoon", "Hamster", "Dolphin", "Wombat", "Yak",
)  # fmt: skip


def fun_name(rng: random.Random) -> str:
    """A random friendly display name, like ``"Pixel Fox 42"``."""
    return f"{rng.choice(_ADJECTIVES)} {rng.choice(_ANIMALS)} {rng.randint(1, 99)}"


def new_opaque_id() -> str:
    """An opaque, URL-safe identifier (open_id, union_id): 32 characters."""
    return secrets.token_urlsafe(24)


def new_token(prefix: str) -> str:
    """A token in TikTok's form: ``act.``/``rft.`` + random text + a ``!<digits>.va`` tail.

    The ``!`` tail mirrors real TikTok tokens: it catches clients that forget to form-encode.
    """
    tail = secrets.randbelow(9000) + 1000
    return f"{prefix}.{secrets.token_hex(16)}{secrets.token_urlsafe(18)}!{tail}.va"


def new_log_id(now: float) -> str:
    """A fresh log id shaped like TikTok's: a UTC timestamp then random upper-case hex."""
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(now)) + secrets.token_hex(10).upper()


def avatar_signature(key: bytes, avatar_id: str, expires: int) -> str:
    """The ``x-signature`` of an avatar link: an HMAC over the avatar id and the expiry."""
    message = f"{avatar_id}\n{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def avatar_path(avatar_id: str) -> str:
    """The avatar route's path for ``avatar_id``, relative to the control app's mount point."""
    return f"/avatar/{quote(avatar_id, safe='')}.svg"


def initials(display_name: str) -> str:
    """Up to two initials from a display name (``"Pixel Fox 42"`` gives ``"PF"``)."""
    words = [word for word in display_name.split() if word[:1].isalpha()]
    letters = "".join(word[0] for word in words[:2]).upper()
    if letters:
        return letters
    stripped = display_name.strip()
    return stripped[:1].upper() or "?"


def _hue(open_id: str) -> int:
    return int.from_bytes(hashlib.sha256(open_id.encode()).digest()[:2], "big") % 360


def avatar_svg(open_id: str, display_name: str, size: int = 168) -> str:
    """A round avatar: the user's initials on a gradient whose colour comes from the open_id."""
    hue = _hue(open_id)
    text = escape(initials(display_name))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
        f'viewBox="0 0 100 100" role="img" aria-label="{escape(display_name)}">'
        '<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1">'
        f'<stop offset="0" stop-color="hsl({hue},70%,62%)"/>'
        f'<stop offset="1" stop-color="hsl({(hue + 40) % 360},65%,45%)"/>'
        "</linearGradient></defs>"
        '<circle cx="50" cy="50" r="50" fill="url(#g)"/>'
        '<text x="50" y="50" dy=".35em" text-anchor="middle" fill="#fff" '
        'font-family="system-ui,-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif" '
        f'font-size="40" font-weight="600">{text}</text></svg>'
    )
