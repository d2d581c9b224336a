"""Avatars that last: kept from TikTok's expiring links, served from the game's own domain.

Everything runs over real loopback HTTP: the emulator's signed avatar links, a small faulty
image server for the failure cases, and a game app serving the kept avatars. SQLite only.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import socket
import struct
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web

from tiktok_minis import JsonFormatter
from tiktok_minis.sandbox import ManualClock, Sandbox, SandboxServer
from tiktok_minis.services.avatars import IMAGE_TYPES, Avatars
from tiktok_minis.store import Store
from tiktok_minis.store.avatars import StoredAvatar
from tiktok_minis.store.database import Database
from tiktok_minis.store.models import AvatarRow
from tiktok_minis.testing import serve
from tiktok_minis.web.avatars import add_avatar_routes

MAX_BYTES = 4096
TIMEOUT = 0.5
DEFAULT_AVATAR = "/ttminis/static/default-avatar.svg"
STATIC_DIR = Path(__file__).parent.parent / "plugin" / "tiktok_minis" / "static"
LOGGER = "tiktok_minis.avatars"


def tiny_png() -> bytes:
    """A real 1x1 red PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PNG = tiny_png()


def padded_png(size: int) -> bytes:
    """PNG-looking bytes of exactly ``size`` bytes: only the size can make them fail."""
    return PNG + b"\x00" * (size - len(PNG))


# -- the faulty image server ---------------------------------------------------------------------


@dataclass
class Faulty:
    """A small image server that fails in every way an upstream can; ``url`` is its base."""

    url: str
    release: asyncio.Event


def faulty_app(release: asyncio.Event) -> web.Application:
    """The routes of :class:`Faulty`; slow handlers wait on ``release``, set when the test ends."""

    async def ok_png(request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def exact(request: web.Request) -> web.Response:
        return web.Response(body=padded_png(MAX_BYTES), content_type="image/png")

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html><body>Sign in</body></html>", content_type="text/html")

    async def disguised(request: web.Request) -> web.Response:
        # An error page under an image type, as a misconfigured proxy may send.
        return web.Response(body=b"<html>Bad gateway</html>", content_type="image/png")

    async def empty(request: web.Request) -> web.Response:
        return web.Response(body=b"", content_type="image/png")

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.Response(body=PNG, status=code, content_type="image/png")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=padded_png(MAX_BYTES + 1), content_type="image/png")

    async def big_chunked(request: web.Request) -> web.StreamResponse:
        # No Content-Length at all: the size is only known by reading.
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(PNG)
        for _ in range(10):
            await response.write(b"\x00" * 1024)
        await response.write_eof()
        return response

    async def bomb(request: web.Request) -> web.Response:
        # Content-Length says ~1 KiB (the gzip body), the picture is a megabyte once decoded.
        body = gzip.compress(padded_png(1024 * 1024))
        return web.Response(
            body=body, content_type="image/png", headers={"Content-Encoding": "gzip"}
        )

    async def slow_headers(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(body=PNG, content_type="image/png")

    async def slow_body(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.content_length = len(PNG) + 100
        await response.prepare(request)
        await response.write(PNG)
        await release.wait()
        await response.write(b"\x00" * 100)
        return response

    async def hop(request: web.Request) -> web.Response:
        left = int(request.match_info["left"])
        target = "/ok.png" if left == 0 else f"/hop/{left - 1}"
        return web.Response(status=302, headers={"Location": target})

    async def loop(request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": "/loop"})

    async def to(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": request.query["where"]})

    async def nowhere(request: web.Request) -> web.Response:
        return web.Response(status=302)

    app = web.Application()
    app.router.add_get("/ok.png", ok_png)
    app.router.add_get("/exact.png", exact)
    app.router.add_get("/page", html)
    app.router.add_get("/disguised.png", disguised)
    app.router.add_get("/empty.png", empty)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/big.png", big)
    app.router.add_get("/big-chunked.png", big_chunked)
    app.router.add_get("/bomb.png", bomb)
    app.router.add_get("/slow-headers.png", slow_headers)
    app.router.add_get("/slow-body.png", slow_body)
    app.router.add_get("/hop/{left}", hop)
    app.router.add_get("/loop", loop)
    app.router.add_get("/to", to)
    app.router.add_get("/nowhere", nowhere)
    return app


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    """The emulator's clock, moved by hand."""
    return ManualClock(start=1_800_000_000)


@pytest.fixture
async def emulator(clock: ManualClock) -> AsyncIterator[SandboxServer]:
    """The TikTok emulator on a loopback port: its avatar links are absolute and signed."""
    async with SandboxServer(Sandbox(clock=clock, seed=11)) as server:
        yield server


@pytest.fixture
async def faulty() -> AsyncIterator[Faulty]:
    """The faulty image server on a loopback port."""
    release = asyncio.Event()
    async with serve(faulty_app(release)) as url:
        try:
            yield Faulty(url, release)
        finally:
            release.set()  # lets the slow handlers finish so the server stops at once


@pytest.fixture
async def avatars(
    sqlite_db: Database, faulty: Faulty, emulator: SandboxServer
) -> AsyncIterator[Avatars]:
    """The service, started, with a small size limit and a short timeout.

    The faulty server and the emulator listen on loopback, which downloads refuse: their two
    origins, and nothing else internal, are on the allow-list.
    """
    service = Avatars(
        Store(sqlite_db),
        max_bytes=MAX_BYTES,
        timeout_seconds=TIMEOUT,
        default_avatar_url=DEFAULT_AVATAR,
        allowed_origins=(faulty.url, emulator.url),
    )
    await service.start()
    try:
        yield service
    finally:
        await service.close()


@pytest.fixture
async def game_url(avatars: Avatars) -> AsyncIterator[str]:
    """A game app serving the kept avatars and the plugin's default avatar."""
    app = web.Application()
    add_avatar_routes(app, avatars)
    app.router.add_static("/ttminis/static/", STATIC_DIR)
    async with serve(app) as url:
        yield url


async def get(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of ``GET url``, redirects not followed."""
    async with http.get(url, headers=headers, allow_redirects=False) as response:
        return response.status, dict(response.headers), await response.read()


@contextmanager
def socket_that_refuses() -> Iterator[int]:
    """A loopback port that nobody listens on, for as long as the ``with`` lasts."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))  # bound, never listening: connecting is refused
        port: int = bound.getsockname()[1]
        yield port


def avatar_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The warnings this service logged about avatars it did not keep."""
    return [
        record
        for record in caplog.records
        if record.name == LOGGER and getattr(record, "event", None) == "avatar_not_kept"
    ]


# -- kept and served -----------------------------------------------------------------------------


async def test_emulator_avatar_kept_once_and_served_after_the_link_expires(
    avatars: Avatars,
    emulator: SandboxServer,
    clock: ManualClock,
    game_url: str,
    http: aiohttp.ClientSession,
) -> None:
    """The emulator's SVG is stored once under its SHA-256 and outlives TikTok's signed link."""
    user = emulator.sandbox.add_user(display_name="Ada Lovelace")
    link = user.avatar_url
    assert link.startswith(emulator.url + "/sandbox/avatar/") and "x-signature=" in link
    status, _, original = await get(http, link)
    assert status == 200
    digest = hashlib.sha256(original).hexdigest()

    kept = await avatars.keep(link)
    assert kept == f"/ttminis/avatars/{digest}"
    clock.advance(60)  # a later profile fetch: a new signature, the same picture
    later_link = user.avatar_url
    assert later_link != link
    assert await avatars.keep(later_link) == kept
    assert await AvatarRow.all().count() == 1
    stored = await avatars.stored(digest)
    assert stored is not None and (stored.content_type, stored.data) == ("image/svg+xml", original)

    clock.advance(emulator.sandbox.avatar_ttl)
    assert (await get(http, link))[0] == 403, "TikTok's link is dead now"
    status, headers, body = await get(http, game_url + kept)
    assert (status, body) == (200, original)
    assert headers["Content-Type"] == "image/svg+xml"
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert headers["Etag"] == f'"{digest}"'
    assert headers["X-Content-Type-Options"] == "nosniff"


async def test_svg_is_served_with_a_policy_that_forbids_scripts(
    avatars: Avatars, emulator: SandboxServer, game_url: str, http: aiohttp.ClientSession
) -> None:
    """A kept SVG comes with a CSP that runs and loads nothing, sandboxed, and nosniff."""
    kept = await avatars.keep(emulator.sandbox.add_user().avatar_url)
    assert kept is not None
    _, headers, _ = await get(http, game_url + kept)
    policy = [part.strip() for part in headers["Content-Security-Policy"].split(";")]
    assert "default-src 'none'" in policy and "sandbox" in policy
    assert not any(part.startswith("script-src") for part in policy), "no script source allowed"
    assert headers["X-Content-Type-Options"] == "nosniff"


async def test_png_kept_with_its_type(
    avatars: Avatars, faulty: Faulty, game_url: str, http: aiohttp.ClientSession
) -> None:
    """A PNG is stored and served as image/png, byte for byte."""
    kept = await avatars.keep(faulty.url + "/ok.png")
    assert kept == avatars.url_for(hashlib.sha256(PNG).hexdigest())
    status, headers, body = await get(http, game_url + kept)
    assert (status, headers["Content-Type"], body) == (200, "image/png", PNG)
    assert headers["X-Content-Type-Options"] == "nosniff"


async def test_if_none_match_answers_304(
    avatars: Avatars, faulty: Faulty, game_url: str, http: aiohttp.ClientSession
) -> None:
    """A client that holds the avatar's ETag gets 304 with no body; another ETag gets 200."""
    kept = await avatars.keep(faulty.url + "/ok.png")
    assert kept is not None
    _, first, _ = await get(http, game_url + kept)
    for tag in (first["Etag"], f"W/{first['Etag']}", '"other", ' + first["Etag"], "*"):
        status, headers, body = await get(http, game_url + kept, {"If-None-Match": tag})
        assert (status, body) == (304, b""), tag
        assert headers["Etag"] == first["Etag"]
        assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    status, _, body = await get(http, game_url + kept, {"If-None-Match": '"other"'})
    assert (status, body) == (200, PNG)


async def test_head_answers_headers_only(
    avatars: Avatars, faulty: Faulty, game_url: str, http: aiohttp.ClientSession
) -> None:
    """HEAD gives the same headers as GET and no body."""
    kept = await avatars.keep(faulty.url + "/ok.png")
    assert kept is not None
    async with http.head(game_url + kept) as response:
        assert (response.status, response.headers["Content-Type"]) == (200, "image/png")
        assert response.headers["Content-Length"] == str(len(PNG))
        assert await response.read() == b""


@pytest.mark.parametrize(
    "digest",
    [
        "0" * 64,  # well formed, never stored
        "F" * 64,  # upper case: not how digests are written
        "abc",
        "0" * 65,
        "..%2F..%2Fsettings.py",
    ],
)
async def test_unknown_or_malformed_digest_redirects_to_the_default_avatar(
    avatars: Avatars, game_url: str, http: aiohttp.ClientSession, digest: str
) -> None:
    """Anything but a stored digest redirects to the default avatar, which then loads."""
    status, headers, _ = await get(http, f"{game_url}/ttminis/avatars/{digest}")
    assert status == 302
    assert headers["Location"] == DEFAULT_AVATAR
    assert headers["Cache-Control"] == "no-cache"
    async with http.get(f"{game_url}/ttminis/avatars/{digest}") as followed:
        assert (followed.status, followed.content_type) == (200, "image/svg+xml")


async def test_same_picture_kept_concurrently_is_one_row(avatars: Avatars, faulty: Faulty) -> None:
    """Racing downloads of one picture all succeed and leave one row."""
    urls = [f"{faulty.url}/ok.png?n={n}" for n in range(6)]
    kept = await asyncio.gather(*(avatars.keep(url) for url in urls))
    assert set(kept) == {avatars.url_for(hashlib.sha256(PNG).hexdigest())}
    assert await AvatarRow.all().count() == 1


async def test_store_save_is_insert_or_ignore(sqlite_db: Database) -> None:
    """Saving the same digest twice keeps the first row and reports that nothing was inserted."""
    digest = hashlib.sha256(PNG).hexdigest()
    store = Store(sqlite_db).avatars
    assert await store.save(digest, "image/png", PNG) is True
    assert await store.save(digest, "image/png", PNG) is False
    assert await store.by_digest(digest) == StoredAvatar(digest, "image/png", PNG)
    assert await store.delete(digest) is True
    assert await store.by_digest(digest) is None
    assert await store.delete(digest) is False


async def test_redirects_are_followed_a_few_times(avatars: Avatars, faulty: Faulty) -> None:
    """Up to three redirects lead to the picture; the bytes are what counts."""
    assert await avatars.keep(faulty.url + "/hop/2") == await avatars.keep(faulty.url + "/ok.png")


async def test_exactly_max_bytes_is_kept(avatars: Avatars, faulty: Faulty) -> None:
    """The limit is inclusive: a picture of exactly max_bytes is kept."""
    kept = await avatars.keep(faulty.url + "/exact.png")
    assert kept == avatars.url_for(hashlib.sha256(padded_png(MAX_BYTES)).hexdigest())


# -- every failure is None, logged with its reason ----------------------------------------------


@pytest.mark.parametrize(
    ("path", "reason", "status"),
    [
        ("/page", "content_type", 200),
        ("/disguised.png", "not_an_image", 200),
        ("/empty.png", "empty", 200),
        ("/status/404", "status", 404),
        ("/status/500", "status", 500),
        ("/big.png", "too_big", 200),  # Content-Length says too big: refused before reading
        ("/big-chunked.png", "too_big", 200),  # no Content-Length: counted while reading
        ("/bomb.png", "too_big", 200),  # Content-Length is small, the decoded picture is not
        ("/hop/3", "too_many_redirects", None),
        ("/loop", "too_many_redirects", None),
        ("/to?where=file:///etc/passwd", "scheme", None),
        ("/to?where=javascript:alert(1)", "scheme", None),
        ("/nowhere", "redirect_without_location", 302),
    ],
)
async def test_upstream_failures_give_none(
    avatars: Avatars,
    faulty: Faulty,
    caplog: pytest.LogCaptureFixture,
    path: str,
    reason: str,
    status: int | None,
) -> None:
    """Each way an upstream can fail ends in None, no row, and one warning naming the reason."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert await avatars.keep(faulty.url + path) is None
    assert await AvatarRow.all().count() == 0
    [record] = avatar_records(caplog)
    assert record.levelno == logging.WARNING
    assert (getattr(record, "reason", None), getattr(record, "status", None)) == (reason, status)


async def test_redirect_to_a_url_with_credentials_is_refused(
    avatars: Avatars, faulty: Faulty, caplog: pytest.LogCaptureFixture
) -> None:
    """A redirect must not smuggle in user info; the password never reaches the log."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    target = faulty.url.replace("http://", "http://user:hunter2@") + "/ok.png"
    assert await avatars.keep(f"{faulty.url}/to?where={target}") is None
    [record] = avatar_records(caplog)
    assert getattr(record, "reason", None) == "credentials_in_url"
    assert "hunter2" not in caplog.text


@pytest.mark.parametrize("path", ["/slow-headers.png", "/slow-body.png"])
async def test_slow_upstream_times_out(
    avatars: Avatars, faulty: Faulty, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    """A server that stalls before or during the body is given up after timeout_seconds."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    started = time.monotonic()
    assert await avatars.keep(faulty.url + path) is None
    # Generous: the point is that keep() gave up rather than waiting on the stalled server.
    assert time.monotonic() - started < TIMEOUT + 2
    [record] = avatar_records(caplog)
    assert getattr(record, "reason", None) == "timeout"


async def test_unreachable_host_gives_none(
    avatars: Avatars, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused connection is a network failure, logged by its class only."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with socket_that_refuses() as port:
        # Allowed, so that the connection is attempted (and refused by the operating system).
        avatars.allowed_origins |= {f"http://127.0.0.1:{port}"}
        assert await avatars.keep(f"http://127.0.0.1:{port}/a.png?x-signature=s3cr3t") is None
    [record] = avatar_records(caplog)
    assert getattr(record, "reason", None) == "network"
    assert getattr(record, "error", None) == "ClientConnectorError"
    assert "s3cr3t" not in caplog.text


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://127.0.0.1/a.png", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("data:image/png;base64,iVBORw0KGgo=", "scheme"),
        ("/ttminis/sandbox/avatar/x.svg?x-signature=abc", "relative_url"),
        ("avatar.png", "relative_url"),
        ("//127.0.0.1/a.png", "relative_url"),  # scheme-relative: no scheme of its own
        ("http://user:pw@127.0.0.1/a.png", "credentials_in_url"),
        ("http:///a.png", "malformed_url"),
        ("http://127.0.0.1:99999/a.png", "malformed_url"),
        ("http://127.0.0.1/a b.png", "malformed_url"),
        ("http://127.0.0.1/\u00e9.png", "malformed_url"),
    ],
)
async def test_links_refused_without_a_request(
    avatars: Avatars, caplog: pytest.LogCaptureFixture, url: str, reason: str
) -> None:
    """Links that are not absolute http(s) without credentials are refused before any request."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert await avatars.keep(url) is None
    [record] = avatar_records(caplog)
    assert getattr(record, "reason", None) == reason
    assert "pw@" not in caplog.text


@pytest.mark.parametrize("url", [None, ""])
async def test_no_link_is_none_and_no_warning(
    avatars: Avatars, caplog: pytest.LogCaptureFixture, url: str | None
) -> None:
    """A profile without a picture is not a failure: None, and nothing logged."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert await avatars.keep(url) is None
    assert avatar_records(caplog) == []


async def test_expired_link_is_none_and_its_signature_never_logged(
    avatars: Avatars,
    emulator: SandboxServer,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An expired TikTok link gives None; the log names host, path and 403, never the query."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    link = emulator.sandbox.add_user().avatar_url
    signature = parse_qs(urlsplit(link).query)["x-signature"][0]
    clock.advance(emulator.sandbox.avatar_ttl + 1)
    assert await avatars.keep(link) is None
    [record] = avatar_records(caplog)
    assert (getattr(record, "reason", None), getattr(record, "status", None)) == ("status", 403)
    assert getattr(record, "link", None) == link.split("?")[0]
    formatter = JsonFormatter()
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    assert signature not in logged and "x-expires" not in logged


# -- lifecycle and URLs --------------------------------------------------------------------------


async def test_keep_before_start_is_a_programming_error(sqlite_db: Database) -> None:
    """keep() without start() raises instead of silently showing default avatars."""
    service = Avatars(
        Store(sqlite_db), max_bytes=MAX_BYTES, timeout_seconds=1, default_avatar_url=DEFAULT_AVATAR
    )
    with pytest.raises(RuntimeError, match="start"):
        await service.keep("https://example.com/a.png")
    await service.start()
    await service.start()  # harmless
    await service.close()
    await service.close()  # harmless
    with pytest.raises(RuntimeError, match="start"):
        await service.keep("https://example.com/a.png")


def test_digest_of_reads_back_only_its_own_urls() -> None:
    """digest_of() inverts url_for() and ignores anything else."""
    service = Avatars(
        Store(Database("sqlite://:memory:")),  # never opened: no query is made
        max_bytes=MAX_BYTES,
        timeout_seconds=1,
        default_avatar_url=DEFAULT_AVATAR,
        url_prefix="/game/avatars/",
    )
    digest = hashlib.sha256(b"x").hexdigest()
    assert service.url_for(digest) == f"/game/avatars/{digest}"
    assert service.digest_of(service.url_for(digest)) == digest
    for other in (None, "", DEFAULT_AVATAR, f"/other/{digest}", "/game/avatars/abc"):
        assert service.digest_of(other) is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_bytes": 0}, "max_bytes"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"url_prefix": "avatars"}, "url_prefix"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    """Nonsense limits fail at construction with a sentence naming the option."""
    arguments: dict[str, object] = {
        "max_bytes": MAX_BYTES,
        "timeout_seconds": 1.0,
        "default_avatar_url": DEFAULT_AVATAR,
        **options,
    }
    with pytest.raises(ValueError, match=message):
        Avatars(Store(Database("sqlite://:memory:")), **arguments)  # type: ignore[arg-type]


def test_image_types_are_an_allow_list_of_images() -> None:
    """Only image types a browser renders in <img> are kept; never HTML or octet-stream."""
    assert {"image/png", "image/jpeg", "image/webp", "image/gif", "image/svg+xml"} <= IMAGE_TYPES
    assert all(kind.startswith("image/") for kind in IMAGE_TYPES)
