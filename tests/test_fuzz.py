"""Property tests of every client event against the wire contract, over real loopback sockets.

Each test starts the example game once (sandbox mode, SQLite) and lets hypothesis drive a few
hundred cases of one event through real Socket.IO clients: valid payloads, almost valid ones (one
field of the wrong type, missing, null, empty, too long, a bool or float for an int, ints at and
beyond the signed 64-bit bounds, nested junk, unicode, extra fields), arbitrary JSON, no payload
at all and extra positional arguments. Hypothesis runs in a worker thread and hands each case to
the test's event loop, where the game serves.

Every case must get exactly one ack of the contract's shape, with the code the case calls for
(decided here from the payload, not by asking the payload models), and leave the connection usable.
Integer literals longer than a JSON encoder of this process writes (over 100 digits) go out as
raw websocket frames, in the last test.

``TTMINIS_FUZZ_EXAMPLES`` sets the cases per event (default 500). The counts per event and
outcome are printed: ``pytest tests/test_fuzz.py -rP``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import aiohttp
import socketio
from game import DOCUMENTED_CODES, FAST_UPSTREAM, Game, run_game
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiktok_minis import Board, Settings, TikTokMinis
from tiktok_minis.sandbox import SandboxUser
from tiktok_minis.testing import GameClient

T = TypeVar("T")

EXAMPLES: Final = int(os.environ.get("TTMINIS_FUZZ_EXAMPLES", "500"))

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
#: The longest code the server takes (a bound of the plugin's; TikTok documents none).
CODE_MAX: Final = 1024
BOARD_NAME: Final = re.compile(r"[a-z0-9_-]{1,64}")
#: The capped board's validator accepts scores up to this.
CAP: Final = 1000

PLAYER_KEYS: Final = frozenset(
    {"id", "open_id", "display_name", "avatar_url", "placeholder", "consent"}
)
ENTRY_KEYS: Final = frozenset({"rank", "score", "player"})
ENTRY_PLAYER_KEYS: Final = frozenset({"id", "display_name", "avatar_url", "placeholder"})
CONSENTS: Final = frozenset({"unknown", "granted", "denied"})
OK_KEYS: Final = {
    "tiktok:login": frozenset({"ok", "player", "session"}),
    "tiktok:authorize": frozenset({"ok", "player"}),
    "tiktok:logout": frozenset({"ok"}),
    "tiktok:me": frozenset({"ok", "player"}),
    "leaderboard:join": frozenset({"ok", "board", "entries", "me"}),
    "leaderboard:leave": frozenset({"ok"}),
    "leaderboard:submit": frozenset({"ok", "board", "me"}),
    "leaderboard:around": frozenset({"ok", "board", "entries"}),
}


@dataclass(frozen=True)
class BoardSpec:
    """What the test knows of a board the game defines."""

    order: str = "desc"
    operator: str = "best"
    client_scores: bool = True
    cap: int | None = None
    live_size: int = 10


BOARDS: Final = {
    "global": BoardSpec(),  # defined by the example game
    "latest_asc": BoardSpec(order="asc", operator="latest"),
    "tally": BoardSpec(operator="incr"),
    "capped": BoardSpec(cap=CAP),
    "server_only": BoardSpec(client_scores=False),
}


def _define_boards(minis: TikTokMinis) -> None:
    minis.boards.define(Board("latest_asc", order="asc", operator="latest", client_scores=True))
    minis.boards.define(Board("tally", operator="incr", client_scores=True))
    minis.boards.define(
        Board("capped", client_scores=True, validator=lambda _open_id, score: score <= CAP)
    )
    minis.boards.define(Board("server_only"))


# -- cases ------------------------------------------------------------------------------------


class _Absent:
    """No payload at all (the event is emitted with its name only)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()


@dataclass(frozen=True)
class Fresh:
    """A code the sandbox makes when the case runs: ``login`` (a new login code of the
    connection's own user), ``used`` (a login code already exchanged), ``authorize`` (an
    authorization code of the own user), ``foreign`` (an authorization code of another user)."""

    kind: str


@dataclass(frozen=True)
class Case:
    """One emit: the positional arguments after the event name (``()``: no payload) and whether
    the connection is logged in when it is sent."""

    args: tuple[Any, ...]
    logged_in: bool

    @property
    def payload(self) -> Any:
        return self.args[0] if self.args else ABSENT


# JSON values. Integers stay within 99 digits: engine.io's decoder refuses longer literals and
# the in-process client shares it; longer literals go through raw frames in their own test.
KEYS = st.text(max_size=8)
# Surrogates that stay lone on the wire: low ones never open a pair, and a high one alone has no
# partner. (A high then a low is a valid pair in JSON, decoded as one real character.)
LONE_SURROGATES = st.one_of(
    st.text(st.characters(min_codepoint=0xDC00, max_codepoint=0xDFFF), min_size=1, max_size=3),
    st.just("\ud800"),
)
TEXT = st.one_of(st.text(max_size=20), LONE_SURROGATES)
EDGE_INTS: Final = [
    0,
    1,
    -1,
    5,
    50,
    51,
    CAP,
    CAP + 1,
    2**31,
    2**53 + 1,
    INT64_MAX,
    INT64_MIN,
    INT64_MAX + 1,
    INT64_MIN - 1,
    2**64,
    -(2**64),
    10**99 - 1,
    -(10**99 - 1),
]
INTS = st.one_of(st.integers(-(10**99) + 1, 10**99 - 1), st.sampled_from(EDGE_INTS))
FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.0, 5.0, 1e19, float(INT64_MAX)]),
)
SCALARS = st.one_of(st.none(), st.booleans(), INTS, FLOATS, TEXT)
JSON = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)
    ),
    max_leaves=10,
)
NOT_STR = st.one_of(
    st.none(),
    st.booleans(),
    INTS,
    FLOATS,
    st.lists(JSON, max_size=3),
    st.dictionaries(KEYS, JSON, max_size=3),
)
NOT_INT = st.one_of(
    st.none(),
    st.booleans(),
    FLOATS,
    TEXT,
    INTS.map(str),
    st.lists(INTS, min_size=1, max_size=2),
    st.dictionaries(KEYS, INTS, max_size=2),
)


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Draw from one of the strategies, each chosen with its weight (``one_of`` draws its
    branches about evenly)."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def almost_text(max_len: int) -> st.SearchStrategy[Any]:
    """Strings and non-strings around a text field of 1 to ``max_len`` characters."""
    return st.one_of(
        st.just(""),
        st.text(min_size=max_len + 1, max_size=max_len + 40),
        st.text(max_size=20),
        LONE_SURROGATES,
        NOT_STR,
    )


VALID_BOARD = weighted(
    (3, st.sampled_from(sorted(BOARDS))),
    (1, st.from_regex(BOARD_NAME, fullmatch=True)),  # well formed, nearly always unknown
)
ALMOST_BOARD = st.one_of(
    st.sampled_from(
        [
            "",
            "GLOBAL",
            "Global",
            "global\n",
            "\nglobal",
            " global",
            "global ",
            "glo bal",
            "gl\u043ebal",  # a Cyrillic o
            "\uff47\uff4c\uff4f\uff42\uff41\uff4c",  # fullwidth letters
            "global\x00",
            "global\ud800",
            "../etc",
            "global/x",
            "g" * 65,
            "é",
        ]
    ),
    st.from_regex(r"[a-z0-9_-]{65,90}", fullmatch=True),
    st.text(max_size=70),
    NOT_STR,
)
ALMOST_INT = weighted(
    (2, st.sampled_from(EDGE_INTS)),
    (3, st.sampled_from([True, False, 0.0, -0.0, 1.0, 5.0, 1e19, "1", "5", None, [1], {"v": 1}])),
    (1, INTS),
    (1, NOT_INT),
)
ALMOST_BOOL = st.one_of(
    st.sampled_from([0, 1, 0.0, 1.0, "true", "false", "", "yes", None, [], {}]), JSON
)
SCORE = weighted(
    (2, st.integers(-(10**6), 10**6)),
    (1, st.integers(INT64_MIN, INT64_MAX)),
    (2, st.sampled_from([INT64_MIN, INT64_MIN + 1, INT64_MAX - 1, INT64_MAX, 0, CAP, CAP + 1])),
)

Field = tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]


def _replacing(name: str) -> Callable[[tuple[dict[str, Any], Any]], dict[str, Any]]:
    return lambda pair: {**pair[0], name: pair[1]}


def _without(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda fields: {key: value for key, value in fields.items() if key != name}


def payloads(
    required: dict[str, Field] | None = None, optional: dict[str, Field] | None = None
) -> st.SearchStrategy[Any]:
    """Valid payloads, almost valid ones and arbitrary JSON for an event with these fields,
    each ``(valid values, almost valid values)``; ``ABSENT`` for no payload at all."""
    required = required or {}
    optional = optional or {}
    valid = st.fixed_dictionaries(
        {name: values for name, (values, _) in required.items()},
        optional={name: values for name, (values, _) in optional.items()},
    )
    extras = st.dictionaries(KEYS, JSON, max_size=3)
    variants: list[tuple[int, st.SearchStrategy[Any]]] = [
        # Extra fields, beside the real ones (ignored) or over them (then judged as they are).
        (1, st.tuples(valid, extras).map(lambda pair: {**pair[1], **pair[0]})),
        (1, st.tuples(valid, extras).map(lambda pair: {**pair[0], **pair[1]})),
        (1, JSON),
        (1, st.sampled_from([ABSENT, None, {}, [], "", 0, False])),
    ]
    for name, (_, almost) in {**required, **optional}.items():
        variants += [
            (3, st.tuples(valid, almost).map(_replacing(name))),
            (1, st.tuples(valid, JSON).map(_replacing(name))),
            (1, valid.map(_without(name))),
        ]
    # About half the cases well formed, to reach the outcomes past validation.
    return weighted((sum(weight for weight, _ in variants), valid), *variants)


def cases(payload: st.SearchStrategy[Any], *, logged_in: int = 1) -> st.SearchStrategy[Case]:
    """The payload as the first positional argument, sometimes with more after it, sent by a
    connection logged in ``logged_in`` times as often as by an anonymous one."""

    def to_args(pair: tuple[Any, list[Any]]) -> tuple[Any, ...]:
        first, more = pair
        return () if first is ABSENT else (first, *more)

    extra = st.one_of(st.just([]), st.lists(JSON, min_size=1, max_size=2))
    return st.builds(
        Case,
        args=st.tuples(payload, extra).map(to_args),
        logged_in=weighted((logged_in, st.just(True)), (1, st.just(False))),
    )


LOGIN_CASES = cases(
    payloads(
        required={
            "code": (
                weighted(
                    (3, st.just(Fresh("login"))),
                    (1, st.just(Fresh("used"))),
                    (1, st.text(min_size=1, max_size=40)),
                    (1, st.text(min_size=CODE_MAX, max_size=CODE_MAX)),
                ),
                almost_text(CODE_MAX),
            )
        }
    )
)
AUTHORIZE_CASES = cases(
    payloads(
        required={"granted": (st.booleans(), ALMOST_BOOL)},
        optional={
            "code": (
                weighted(
                    (2, st.just(Fresh("authorize"))),
                    (1, st.sampled_from([Fresh("foreign"), Fresh("login"), Fresh("used")])),
                    (1, st.none()),
                    (1, st.text(min_size=1, max_size=40)),
                ),
                almost_text(CODE_MAX),
            )
        },
    ),
    logged_in=3,
)
LOGOUT_CASES = cases(payloads(optional={"everywhere": (st.booleans(), ALMOST_BOOL)}))
ME_CASES = cases(payloads())
BOARD_CASES = cases(payloads(required={"board": (VALID_BOARD, ALMOST_BOARD)}))
SUBMIT_CASES = cases(
    payloads(required={"board": (VALID_BOARD, ALMOST_BOARD), "score": (SCORE, ALMOST_INT)}),
    logged_in=3,
)
AROUND_CASES = cases(
    payloads(
        required={"board": (VALID_BOARD, ALMOST_BOARD)},
        optional={"radius": (st.integers(1, 50), ALMOST_INT)},
    ),
    logged_in=3,
)


# -- what the contract says a case gets ---------------------------------------------------------

OK: Final = "ok"
MISSING: Final = object()


def fields_of(payload: Any) -> dict[str, Any] | None:
    """The fields the server reads from ``payload``: none for no payload or JSON null, ``None``
    when it is not a JSON object (always ``invalid_payload``)."""
    if payload is ABSENT or payload is None:
        return {}
    return payload if isinstance(payload, dict) else None


def is_text(value: Any, max_len: int) -> bool:
    """A string of 1 to ``max_len`` characters that is valid Unicode (no lone surrogate)."""
    return (
        type(value) is str
        and 1 <= len(value) <= max_len
        and not any(0xD800 <= ord(char) <= 0xDFFF for char in value)
    )


def is_board_name(value: Any) -> bool:
    return type(value) is str and BOARD_NAME.fullmatch(value) is not None


def is_int64(value: Any) -> bool:
    return type(value) is int and INT64_MIN <= value <= INT64_MAX


def is_code(value: Any) -> bool:
    return isinstance(value, Fresh) or is_text(value, CODE_MAX)


# -- shapes -----------------------------------------------------------------------------------


def check_player(player: Any) -> dict[str, Any]:
    """A ``Player``: exactly its keys, each of its type."""
    assert type(player) is dict and set(player) == PLAYER_KEYS, player
    for key in ("id", "open_id", "display_name", "avatar_url"):
        assert type(player[key]) is str and player[key], (key, player)
    assert player["id"] != player["open_id"], "the public id must not be the open_id"
    assert type(player["placeholder"]) is bool, player
    assert player["consent"] in CONSENTS, player
    return player


def check_entry(entry: Any, open_ids: set[str]) -> dict[str, Any]:
    """An ``Entry``: exactly its keys and types, and no ``open_id`` anywhere in it."""
    assert type(entry) is dict and set(entry) == ENTRY_KEYS, entry
    assert type(entry["rank"]) is int and entry["rank"] >= 1, entry
    assert is_int64(entry["score"]), entry
    shown = entry["player"]
    assert type(shown) is dict and set(shown) == ENTRY_PLAYER_KEYS, entry
    for key in ("id", "display_name", "avatar_url"):
        assert type(shown[key]) is str and shown[key], (key, entry)
    assert type(shown["placeholder"]) is bool, entry
    assert not any(open_id in json.dumps(entry) for open_id in open_ids), "open_id in an Entry"
    return entry


def check_entries(entries: Any, order: str, open_ids: set[str]) -> list[dict[str, Any]]:
    """A list of entries with consecutive ranks, best first."""
    assert type(entries) is list, entries
    for entry in entries:
        check_entry(entry, open_ids)
    ranks = [entry["rank"] for entry in entries]
    assert not ranks or ranks == list(range(ranks[0], ranks[0] + len(ranks))), ranks
    scores = [entry["score"] for entry in entries]
    assert scores == sorted(scores, reverse=order == "desc"), (order, scores)
    return entries


def check_ack(event: str, ack: Any, allowed: set[str]) -> str:
    """The ack's outcome (``ok`` or its code), after checking its envelope and that the
    outcome is one the case allows."""
    assert type(ack) is dict, f"{event}: the ack is not one JSON object: {ack!r}"
    assert ack.get("ok") is True or ack.get("ok") is False, ack
    if ack["ok"]:
        assert set(ack) == OK_KEYS[event], (event, ack)
        outcome = OK
    else:
        error = ack.get("error")
        assert type(error) is dict and set(error) == {"code", "message"}, ack
        outcome = error["code"]
        assert outcome in DOCUMENTED_CODES, ack
        message = error["message"]
        assert type(message) is str and message.strip(), ack
        assert len(message) < 500, "an error message must not echo the input"
        expected_keys = {"ok", "error"} | ({"player"} if outcome == "not_authorized" else set())
        assert set(ack) == expected_keys, ack
        if outcome == "not_authorized":
            check_player(ack["player"])
    assert outcome in allowed, f"{event}: got {outcome!r}, the case calls for {sorted(allowed)}"
    return outcome


# -- the harness --------------------------------------------------------------------------------


@dataclass
class Peer:
    """A connection of the game and what the test knows of it."""

    client: GameClient
    user: SandboxUser
    player: dict[str, Any] | None = None  # the Player it is logged in as
    session: str | None = None
    #: How many acks arrived for each ack id (the client itself keeps the first only).
    acks: Counter[int] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        # python-socketio hands every ack packet to this method and drops the ones whose
        # callback is gone: wrapping it is the only way to see a second ack for one event.
        handle = self.client.sio._handle_ack

        async def counted(namespace: str | None, ack_id: int, data: Any) -> None:
            self.acks[ack_id] += 1
            await handle(namespace, ack_id, data)

        self.client.sio._handle_ack = counted


@dataclass
class Fuzz:
    """A running game, the cases it was sent and what they got."""

    game: Game
    event: str
    outcomes: Counter[str] = field(default_factory=Counter)
    open_ids: set[str] = field(default_factory=set)
    #: Login codes that were exchanged: TikTok refuses them from then on.
    used_codes: list[str] = field(default_factory=list)

    def user(self) -> SandboxUser:
        user = self.game.sandbox.add_user()
        self.open_ids.add(user.open_id)
        return user

    async def peer(self, *, logged_in: bool = False) -> Peer:
        client = await self.game.client()
        client.timeout = 5
        peer = Peer(client, self.user())
        if logged_in:
            await self.log_in(peer)
        return peer

    async def log_in(self, peer: Peer) -> None:
        code = self.game.sandbox.login_code(peer.user.open_id)
        ack = await peer.client.call("tiktok:login", {"code": code})
        assert ack["ok"], ack
        self.used_codes.append(code)
        peer.player, peer.session = check_player(ack["player"]), ack["session"]

    async def log_out(self, peer: Peer) -> None:
        assert await peer.client.call("tiktok:logout", {}) == {"ok": True}
        peer.player = peer.session = None

    async def ready(self, peer: Peer, logged_in: bool) -> None:
        """Bring ``peer`` to the login state a case asks for."""
        if logged_in and peer.player is None:
            await self.log_in(peer)
        elif not logged_in and peer.player is not None:
            await self.log_out(peer)

    def resolve(self, case: Case, peer: Peer, other: SandboxUser) -> tuple[Any, ...]:
        """The case's arguments with its :class:`Fresh` code made now."""
        payload = case.payload
        if not (isinstance(payload, dict) and isinstance(payload.get("code"), Fresh)):
            return case.args
        sandbox = self.game.sandbox
        kind = payload["code"].kind
        if kind == "login":
            code = sandbox.login_code(peer.user.open_id)
        elif kind == "used":
            code = self.used_codes[-1]
        elif kind == "authorize":
            code = sandbox.authorize_code(peer.user.open_id)
        else:
            code = sandbox.authorize_code(other.open_id)
        return ({**payload, "code": code}, *case.args[1:])

    async def send(self, peer: Peer, args: tuple[Any, ...], allowed: set[str]) -> dict[str, Any]:
        """Emit the case and return its ack, checked against the envelope and ``allowed``."""
        try:
            ack = await peer.client.call(self.event, args if args else None)
        except socketio.exceptions.TimeoutError:
            raise AssertionError(f"{self.event}: no ack for {args!r}") from None
        self.outcomes[check_ack(self.event, ack, allowed)] += 1
        result: dict[str, Any] = ack
        return result

    async def still_usable(self, peer: Peer) -> None:
        """The connection answers ``tiktok:me``, bound to whom the test thinks it is, and no
        event so far got more than one ack."""
        assert peer.client.sio.connected, "the connection was closed"
        me = await peer.client.call("tiktok:me")
        assert type(me) is dict and me.get("ok") is True and set(me) == OK_KEYS["tiktok:me"], me
        if peer.player is None:
            assert me["player"] is None, me
        else:
            assert check_player(me["player"])["id"] == peer.player["id"], (me, peer.player)
        assert max(peer.acks.values()) == 1, "an event got more than one ack"

    async def can_resume(self, session: str) -> bool:
        """Whether a new connection that passes ``session`` is accepted."""
        client = GameClient(self.game.url, session=session, timeout=5)
        try:
            await client.connect()
        except socketio.exceptions.ConnectionError:
            return False
        await client.disconnect()
        return True

    def report(self, required: set[str]) -> None:
        total = sum(self.outcomes.values())
        print(f"\n{self.event}: {total} cases, {dict(sorted(self.outcomes.items()))}")
        assert total >= EXAMPLES * 0.9, f"only {total} cases ran"
        missing = required - set(self.outcomes)
        assert not missing, f"the strategies never reached {sorted(missing)}"


def fuzz_settings(tmp_path: Path) -> Settings:
    return Settings(
        sandbox=True,
        database_url=f"sqlite:///{tmp_path}/fuzz.sqlite3",
        events_per_second=1e6,
        events_burst=10**6,
        failed_logins_per_minute=1e9,
        failed_logins_burst=10**6,
        failed_logins_per_address_per_minute=1e9,
        failed_logins_per_address_burst=10**6,
        upstream_rate_per_second=1e6,
        user_info_rate_per_second=1e6,
        refresher_enabled=False,
        **FAST_UPSTREAM,
    )


@asynccontextmanager
async def fuzz_game(tmp_path: Path, event: str) -> AsyncIterator[Fuzz]:
    async with run_game(fuzz_settings(tmp_path), _define_boards) as game:
        yield Fuzz(game, event)


async def run_cases(
    strategy: st.SearchStrategy[Case], check: Callable[[Case], Coroutine[Any, Any, None]]
) -> None:
    """Run hypothesis over ``strategy`` in a worker thread; each case runs on this loop."""
    loop = asyncio.get_running_loop()

    def on_loop(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=strategy)
    def run(case: Case) -> None:
        on_loop(check(case))

    await asyncio.to_thread(run)


async def seed(fuzz: Fuzz, scores: dict[str, list[int]]) -> None:
    """Other players' scores on the boards, so that lists have something in them."""
    for board, values in scores.items():
        for value in values:
            peer = await fuzz.peer(logged_in=True)
            ack = await peer.client.call("leaderboard:submit", {"board": board, "score": value})
            assert ack["ok"], ack


# -- the tests ----------------------------------------------------------------------------------


async def test_login(tmp_path: Path) -> None:
    """Any tiktok:login gets one ack: ok for a live code, else login_failed or invalid_payload."""
    async with fuzz_game(tmp_path, "tiktok:login") as fuzz:
        peer = await fuzz.peer(logged_in=True)
        other = fuzz.user()

        async def check(case: Case) -> None:
            await fuzz.ready(peer, case.logged_in)
            fields = fields_of(case.payload)
            code = MISSING if fields is None else fields.get("code", MISSING)
            if fields is None or not is_code(code):
                allowed = {"invalid_payload"}
            elif code == Fresh("login"):
                allowed = {OK}
            else:
                allowed = {"login_failed"}
            args = fuzz.resolve(case, peer, other)
            ack = await fuzz.send(peer, args, allowed)
            if ack["ok"]:
                fuzz.used_codes.append(args[0]["code"])
                player = check_player(ack["player"])
                assert player["open_id"] == peer.user.open_id, player
                assert type(ack["session"]) is str and ack["session"], ack
                peer.player, peer.session = player, ack["session"]
            await fuzz.still_usable(peer)

        await run_cases(LOGIN_CASES, check)
        fuzz.report({OK, "invalid_payload", "login_failed"})


async def test_authorize(tmp_path: Path) -> None:
    """Any tiktok:authorize gets one ack: what its grant, its code and the login call for."""
    async with fuzz_game(tmp_path, "tiktok:authorize") as fuzz:
        peer = await fuzz.peer(logged_in=True)
        other = fuzz.user()

        async def check(case: Case) -> None:
            await fuzz.ready(peer, case.logged_in)
            fields = fields_of(case.payload)
            granted = MISSING if fields is None else fields.get("granted", MISSING)
            code = None if fields is None else fields.get("code")
            if fields is None or type(granted) is not bool or not (code is None or is_code(code)):
                allowed = {"invalid_payload"}
            elif peer.player is None:
                allowed = {"not_logged_in"}
            elif not granted or code == Fresh("authorize"):
                allowed = {OK}
            elif code is None or code == Fresh("login"):
                # The stored (or the new) token decides; TikTok may say the scope is missing.
                allowed = {OK, "not_authorized"}
            else:
                allowed = {"login_failed"}  # another player's, a used or an unknown code
            ack = await fuzz.send(peer, fuzz.resolve(case, peer, other), allowed)
            if "player" in ack:
                player = check_player(ack["player"])
                assert peer.player is not None and player["id"] == peer.player["id"], ack
                if ack["ok"] and not granted:
                    assert player["consent"] == "denied" and player["placeholder"], player
                elif ack["ok"]:
                    assert player["consent"] == "granted" and not player["placeholder"], player
                else:
                    assert player["placeholder"], player
                me = await peer.client.call("tiktok:me")
                assert me == {"ok": True, "player": player}, (me, ack)
            await fuzz.still_usable(peer)

        await run_cases(AUTHORIZE_CASES, check)
        fuzz.report({OK, "invalid_payload", "not_logged_in", "login_failed"})


async def test_logout(tmp_path: Path) -> None:
    """Any tiktok:logout gets one ack; a valid one unbinds and ends the sessions it names."""
    async with fuzz_game(tmp_path, "tiktok:logout") as fuzz:
        peer = await fuzz.peer()
        # Another device of the same player, with a session of its own.
        device = await fuzz.peer()
        device.user = peer.user

        async def check(case: Case) -> None:
            await fuzz.ready(peer, case.logged_in)
            await fuzz.ready(device, logged_in=True)
            fields = fields_of(case.payload)
            everywhere = False if fields is None else fields.get("everywhere", False)
            valid = fields is not None and type(everywhere) is bool
            session = peer.session
            ended: asyncio.Future[Any] | None = None
            if valid and everywhere and session is not None:
                ended = asyncio.ensure_future(device.client.wait_for("session:ended", within=5))
            try:
                ack = await fuzz.send(peer, case.args, {OK} if valid else {"invalid_payload"})
                if ack["ok"]:
                    assert ack == {"ok": True}, ack
                    peer.player = peer.session = None
                if ended is not None:
                    assert await ended == {"reason": "logout"}
                    device.player = device.session = None
            finally:
                if ended is not None:
                    ended.cancel()
            await fuzz.still_usable(peer)
            await fuzz.still_usable(device)
            if session is not None:
                assert await fuzz.can_resume(session) is not valid, (
                    "a logout must end the session; a refused one must leave it"
                )

        await run_cases(LOGOUT_CASES, check)
        fuzz.report({OK, "invalid_payload"})


async def test_me(tmp_path: Path) -> None:
    """Any tiktok:me gets one ack: the bound Player or null; invalid_payload for a non-object."""
    async with fuzz_game(tmp_path, "tiktok:me") as fuzz:
        peer = await fuzz.peer()

        async def check(case: Case) -> None:
            await fuzz.ready(peer, case.logged_in)
            valid = fields_of(case.payload) is not None
            ack = await fuzz.send(peer, case.args, {OK} if valid else {"invalid_payload"})
            if ack["ok"]:
                if peer.player is None:
                    assert ack["player"] is None, ack
                else:
                    assert ack["player"] == peer.player, (ack, peer.player)
            await fuzz.still_usable(peer)

        await run_cases(ME_CASES, check)
        fuzz.report({OK, "invalid_payload"})


def board_outcome(fields: dict[str, Any] | None) -> set[str] | None:
    """``invalid_payload`` or ``unknown_board`` from the payload's board, or ``None``."""
    board = MISSING if fields is None else fields.get("board", MISSING)
    if fields is None or not is_board_name(board):
        return {"invalid_payload"}
    if board not in BOARDS:
        return {"unknown_board"}
    return None


async def test_join(tmp_path: Path) -> None:
    """Any leaderboard:join gets one ack; a known board: its top entries and the caller's own."""
    async with fuzz_game(tmp_path, "leaderboard:join") as fuzz:
        await seed(fuzz, {"global": [5, 9, 9, 1, -3], "latest_asc": [7, 2], "tally": [1]})
        anonymous = await fuzz.peer()
        player = await fuzz.peer(logged_in=True)
        own = {"global": 7, "capped": 3}
        for board, score in own.items():
            ack = await player.client.call("leaderboard:submit", {"board": board, "score": score})
            assert ack["ok"], ack

        async def check(case: Case) -> None:
            peer = player if case.logged_in else anonymous
            fields = fields_of(case.payload)
            allowed = board_outcome(fields) or {OK}
            ack = await fuzz.send(peer, case.args, allowed)
            if ack["ok"]:
                assert fields is not None
                board = fields["board"]
                spec = BOARDS[board]
                assert ack["board"] == board, ack
                entries = check_entries(ack["entries"], spec.order, fuzz.open_ids)
                assert len(entries) <= spec.live_size
                assert not entries or entries[0]["rank"] == 1, entries
                if peer is player and board in own:
                    me = check_entry(ack["me"], fuzz.open_ids)
                    assert peer.player is not None and me["player"]["id"] == peer.player["id"]
                    assert me["score"] == own[board], me
                    assert me["rank"] > len(entries) or entries[me["rank"] - 1] == me, ack
                else:
                    assert ack["me"] is None, ack
            await fuzz.still_usable(peer)

        await run_cases(BOARD_CASES, check)
        fuzz.report({OK, "invalid_payload", "unknown_board"})


async def test_leave(tmp_path: Path) -> None:
    """Any leaderboard:leave gets one ack: ok for a known board, unknown_board, invalid_payload."""
    async with fuzz_game(tmp_path, "leaderboard:leave") as fuzz:
        anonymous = await fuzz.peer()
        player = await fuzz.peer(logged_in=True)

        async def check(case: Case) -> None:
            peer = player if case.logged_in else anonymous
            allowed = board_outcome(fields_of(case.payload)) or {OK}
            ack = await fuzz.send(peer, case.args, allowed)
            if ack["ok"]:
                assert ack == {"ok": True}, ack
            await fuzz.still_usable(peer)

        await run_cases(BOARD_CASES, check)
        fuzz.report({OK, "invalid_payload", "unknown_board"})


async def test_submit(tmp_path: Path) -> None:
    """Any leaderboard:submit gets one ack; a valid score is stored and acked as the own Entry."""
    async with fuzz_game(tmp_path, "leaderboard:submit") as fuzz:
        anonymous = await fuzz.peer()
        player = await fuzz.peer(logged_in=True)
        stored: dict[str, int] = {}  # the player's score per board

        def expected_score(board: str, score: int) -> int | None:
            """The stored score after submitting ``score``; ``None`` when it is rejected."""
            spec = BOARDS[board]
            if not spec.client_scores or (spec.cap is not None and score > spec.cap):
                return None
            before = stored.get(board)
            if spec.operator == "incr":
                after = (before or 0) + score
                return after if is_int64(after) else None
            if spec.operator == "latest" or before is None:
                return score
            return max(before, score) if spec.order == "desc" else min(before, score)

        async def check(case: Case) -> None:
            peer = player if case.logged_in else anonymous
            fields = fields_of(case.payload)
            score: Any = MISSING if fields is None else fields.get("score", MISSING)
            after: int | None = None
            allowed = board_outcome(fields)
            if fields is None or not is_board_name(fields.get("board")) or not is_int64(score):
                allowed = {"invalid_payload"}
            elif not case.logged_in:
                # The contract does not order these two; either is right.
                allowed = {"not_logged_in"} | (allowed or set())
            elif allowed is None:
                after = expected_score(fields["board"], score)
                allowed = {OK} if after is not None else {"score_rejected"}
            ack = await fuzz.send(peer, case.args, allowed)
            if ack["ok"]:
                assert fields is not None and after is not None
                board = fields["board"]
                stored[board] = after
                assert ack["board"] == board, ack
                me = check_entry(ack["me"], fuzz.open_ids)
                assert peer.player is not None and me["player"]["id"] == peer.player["id"], ack
                assert me["score"] == after and me["rank"] == 1, (after, ack)
            await fuzz.still_usable(peer)

        await run_cases(SUBMIT_CASES, check)
        fuzz.report({OK, "invalid_payload", "not_logged_in", "unknown_board", "score_rejected"})


async def test_around(tmp_path: Path) -> None:
    """Any leaderboard:around gets one ack; ok lists the ranks within radius of the caller."""
    async with fuzz_game(tmp_path, "leaderboard:around") as fuzz:
        # 24 others on global, 12 above the player and 12 below: a radius shows on both sides.
        await seed(fuzz, {"global": [10 * i for i in range(24)], "latest_asc": [1]})
        anonymous = await fuzz.peer()
        player = await fuzz.peer(logged_in=True)
        for board, score in {"global": 115, "latest_asc": 2}.items():
            ack = await player.client.call("leaderboard:submit", {"board": board, "score": score})
            assert ack["ok"], ack
        # The player's rank and the board's length, on the boards it scored on.
        ranked = {"global": (13, 25), "latest_asc": (2, 2)}

        async def check(case: Case) -> None:
            peer = player if case.logged_in else anonymous
            fields = fields_of(case.payload)
            radius = 5 if fields is None else fields.get("radius", 5)
            allowed = board_outcome(fields)
            if allowed == {"invalid_payload"} or not (is_int64(radius) and 1 <= radius <= 50):
                allowed = {"invalid_payload"}
            elif not case.logged_in:
                allowed = {"not_logged_in"} | (allowed or set())
            ack = await fuzz.send(peer, case.args, allowed or {OK})
            if ack["ok"]:
                assert fields is not None
                board = fields["board"]
                assert ack["board"] == board, ack
                entries = check_entries(ack["entries"], BOARDS[board].order, fuzz.open_ids)
                if board in ranked:
                    rank, size = ranked[board]
                    ranks = [entry["rank"] for entry in entries]
                    assert ranks == list(range(max(1, rank - radius), min(size, rank + radius) + 1))
                    mine = entries[ranks.index(rank)]
                    assert peer.player is not None and mine["player"]["id"] == peer.player["id"]
                else:
                    assert entries == [], ack
            await fuzz.still_usable(peer)

        await run_cases(AROUND_CASES, check)
        fuzz.report({OK, "invalid_payload", "not_logged_in", "unknown_board"})


# -- integer literals of any length, in raw frames ---------------------------------------------


class RawSocket:
    """A bare Socket.IO client on one websocket, to send text no JSON encoder would write."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.acks: dict[int, Any] = {}
        self.repeated: list[int] = []  # ack ids that were answered more than once

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str) -> AsyncIterator[RawSocket]:
        ws_url = url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
            raw = cls(ws)
            assert (await raw._text()).startswith("0"), "no engine.io open packet"
            await ws.send_str("40")
            assert (await raw._text()).startswith("40"), "the namespace refused the connection"
            yield raw

    async def _text(self) -> str:
        message = await asyncio.wait_for(self.ws.receive(), 5)
        assert message.type is aiohttp.WSMsgType.TEXT, message
        text: str = message.data
        return text

    async def emit(self, ack_id: int, arguments: str) -> None:
        """Send ``42<id>[<arguments>]``: the event name and its arguments as raw JSON text."""
        await self.ws.send_str(f"42{ack_id}[{arguments}]")

    async def wait_acks(self, ids: set[int], within: float) -> None:
        """Read until every ack in ``ids`` arrived, or ``within`` seconds passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not ids <= set(self.acks) and (left := deadline - loop.time()) > 0:
            try:
                message = await asyncio.wait_for(self.ws.receive(), left)
            except TimeoutError:
                break
            assert message.type is aiohttp.WSMsgType.TEXT, f"the server closed: {message}"
            text: str = message.data
            if text == "2":
                await self.ws.send_str("3")  # engine.io's ping
            elif text.startswith("43"):
                head, _, body = text[2:].partition("[")
                if int(head) in self.acks:
                    self.repeated.append(int(head))
                self.acks[int(head)] = json.loads("[" + body)[0]


BIG_DIGITS: Final = [20, 99, 100, 101, 4300, 4301, 30_000]
#: Where a long integer literal goes: the event, its arguments with ``N`` for the literal, and
#: whether an ok ack is right too (where the literal lands in something the server ignores).
PLACEMENTS: Final = [
    ("tiktok:login", '{"code":N}', False),
    ("tiktok:authorize", '{"granted":N}', False),
    ("tiktok:logout", '{"everywhere":N}', False),
    ("tiktok:me", "N", False),
    ("leaderboard:join", '{"board":N}', False),
    ("leaderboard:leave", '{"board":[N]}', False),
    ("leaderboard:submit", '{"board":"global","score":N}', False),
    ("leaderboard:around", '{"board":"global","radius":N}', False),
    ("leaderboard:join", '{"board":"global","extra":N}', True),
    ("leaderboard:join", '{"board":"global"},N', True),
]


async def test_integer_literals_of_any_length_get_one_ack(tmp_path: Path) -> None:
    """An integer literal of any length gets one ack: invalid_payload where it is read."""
    async with (
        run_game(fuzz_settings(tmp_path), _define_boards) as game,
        RawSocket.connect(game.url) as raw,
    ):
        sent: dict[int, tuple[str, str, int, bool]] = {}
        for digits in BIG_DIGITS:
            for sign in ("", "-"):
                for event, arguments, ignored in PLACEMENTS:
                    ack_id = len(sent)
                    sent[ack_id] = (event, arguments, len(sign) + digits, ignored)
                    literal = sign + "9" * digits
                    await raw.emit(
                        ack_id, json.dumps(event) + "," + arguments.replace("N", literal)
                    )
        await raw.wait_acks(set(sent), within=5)
        missing = sorted({sent[ack_id][:3] for ack_id in set(sent) - set(raw.acks)})
        assert not missing, f"no ack for {len(missing)} of {len(sent)} frames: {missing[:5]} ..."
        assert not raw.repeated, f"more than one ack for {[sent[i] for i in raw.repeated]}"
        for ack_id, (event, _, _, ignored) in sent.items():
            allowed = {OK, "invalid_payload"} if ignored else {"invalid_payload"}
            check_ack(event, raw.acks[ack_id], allowed)
        await raw.emit(len(sent), '"tiktok:me"')
        await raw.wait_acks({len(sent)}, within=5)
        assert raw.acks[len(sent)] == {"ok": True, "player": None}
        print(f"\nraw frames: {len(sent)} cases, integer literals of {BIG_DIGITS} digits")
