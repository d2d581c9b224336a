"""Opening and closing the database: tortoise-orm initialised once for the app's life.

Opening also brings the schema up to date with tortoise's migrations (see ``store.schema``);
``migrate`` does only that, for an operator upgrading a deployment.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import re
import socket
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tortoise import Tortoise, connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.exceptions import BaseORMException, DBConnectionError, IntegrityError

from tiktok_minis.errors import ConfigurationError
from tiktok_minis.store.schema import apply_migrations, tortoise_config

__all__ = [
    "Database",
    "Dialect",
    "Queries",
    "connection",
    "db_timestamp",
    "for_dialect",
    "is_outage",
    "migrate",
]

Dialect = Literal["sqlite", "postgres"]

_PLACEHOLDER = re.compile(r"\$(\d+)")


def for_dialect(dialect: Dialect, sql: str) -> str:
    """The statement with the dialect's placeholders: ``$n`` for PostgreSQL, ``?n`` for SQLite.

    Both take numbered parameters, so a statement may use one parameter several times.
    """
    return sql if dialect == "postgres" else _PLACEHOLDER.sub(r"?\1", sql)


def db_timestamp(dialect: Dialect, at: datetime) -> datetime | str:
    """``at`` as a raw statement's parameter for the dialect (bulk loaders use it too).

    SQLite keeps timestamps as text and compares them as text: a fixed width (always the
    microseconds, always UTC) keeps that comparison chronological. Tortoise reads it back.
    A naive ``at`` is taken to be UTC.
    """
    at = at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)
    if dialect == "postgres":
        return at
    return at.isoformat(" ", timespec="microseconds")


def _connection_name(dialect: Dialect) -> str:
    # One name per dialect: tortoise caches compiled SQL per connection name, so a process that
    # opens SQLite and later PostgreSQL (a test run does) must not reuse the SQLite statements.
    return f"ttminis_{dialect}"


def connection() -> BaseDBAsyncClient:
    """The connection the plugin's models use (the database opened last)."""
    client: BaseDBAsyncClient = connections.get(_current_connection[0])
    return client


_current_connection: list[str] = [_connection_name("sqlite")]


class _ProcessState:
    """Tortoise keeps one global context per process: plugin instances share it, counted."""

    url: str | None = None
    users = 0


# SQLite tuned for a server (tortoise already opens it in WAL mode). synchronous=NORMAL: in WAL
# mode a commit is durable against a crash of the process (SIGKILL included: the log is in the
# operating system's hands), and only a power loss or a kernel crash can lose the last commits;
# FULL would add an fsync to every commit for that. busy_timeout: a writer waits for another
# connection's lock (the admin command's, say) rather than failing at once.
_SQLITE_TUNING = {"synchronous": "NORMAL", "busy_timeout": "5000"}


async def _rollback_only(connection: Any) -> None:
    """What a pooled PostgreSQL connection needs on release: no transaction left open.

    asyncpg's default reset sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET
    ALL`` on every release, a round trip per statement (the leaderboard benchmark's profile
    showed it). The plugin holds no session state to reset: its one advisory lock is
    transaction-scoped, it never listens, declares cursors across statements or runs ``SET``.
    """
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


def _tuned(url: str, pool_size: int) -> str:
    """The URL with the server's defaults, unless it names its own: a pool size on PostgreSQL
    (tortoise's default of 5 starves a server), the pragmas above on SQLite."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if parts.scheme == "sqlite":
        # Appended as text: splitting and joining again would fold sqlite:////abs/path's slashes.
        missing = {key: value for key, value in _SQLITE_TUNING.items() if key not in query}
        return url + ("&" if parts.query else "?") + urlencode(missing) if missing else url
    query.setdefault("maxsize", str(pool_size))
    query.setdefault("minsize", "1")
    return urlunsplit(parts._replace(query=urlencode(query)))


_MISSING_DRIVER = (
    "TTMINIS_DATABASE_URL names PostgreSQL but its driver is not installed: "
    "pip install 'tiktok-minis[postgres]'"
)


class Database:
    """The plugin's database: one tortoise initialisation, the schema migrated on opening.

    ``open`` uses tortoise's global fallback so that tasks which did not inherit the context that
    opened it (every Socket.IO handler, for one) can still query.
    """

    def __init__(self, url: str, pool_size: int = 20) -> None:
        self.url = url
        self._pool_size = pool_size
        self._open = False
        if self.dialect == "postgres" and importlib.util.find_spec("asyncpg") is None:
            # Said when the game builds the plugin, before its server listens, not at startup.
            raise ConfigurationError(_MISSING_DRIVER)

    @property
    def dialect(self) -> Dialect:
        """Which SQL dialect the queries must speak."""
        return "sqlite" if self.url.startswith("sqlite") else "postgres"

    def connection(self) -> BaseDBAsyncClient:
        """The connection this database's queries run on, once it is open."""
        client: BaseDBAsyncClient = connections.get(_connection_name(self.dialect))
        return client

    async def open(self) -> None:
        """Connect and apply any pending migration. Opening an open database does nothing.

        An empty database gets the whole schema; one made before migrations existed is adopted
        as it stands. Several instances in one process (two game apps in a test, say) share one
        tortoise context, so they must name the same database; the first one migrates it.
        """
        await self._open_and_migrate()

    async def _open_and_migrate(self) -> list[str]:
        """``open``, returning the names of the migrations it applied."""
        if self._open:
            return []
        if _ProcessState.users:
            if _ProcessState.url != self.url:
                raise ConfigurationError(
                    "Another database is already open in this process; tortoise-orm keeps one "
                    "global context, so every TikTokMinis in a process must use the same URL."
                )
            _ProcessState.users += 1
            self._open = True
            return []
        _check_sqlite_folder(self.url)
        name = _connection_name(self.dialect)
        config = tortoise_config(name, _tuned(self.url, self._pool_size))
        if self.dialect == "postgres":
            connection_config = expand_db_url(config["connections"][name])
            connection_config["credentials"]["reset"] = _rollback_only
            config["connections"][name] = connection_config
        try:
            await Tortoise.init(config=config, _enable_global_fallback=True)
            applied = await apply_migrations(name)
        except BaseException as exc:
            # Not open: the next open starts from a clean context rather than a half-open one.
            # An init that failed half-way may have registered nothing to close: that failure
            # would hide the one that matters.
            with contextlib.suppress(Exception):
                await Tortoise.close_connections()
            problem = _why_unopenable(self.url, exc)
            if problem is not None:
                raise ConfigurationError(problem) from exc
            raise
        _current_connection[0] = name
        _ProcessState.url, _ProcessState.users = self.url, 1
        self._open = True
        return applied

    async def close(self) -> None:
        """Close every connection. Closing twice is harmless."""
        if not self._open:
            return
        self._open = False
        _ProcessState.users -= 1
        if _ProcessState.users == 0:
            _ProcessState.url = None
            await Tortoise.close_connections()

    async def ping(self) -> bool:
        """Whether the database answers a trivial query."""
        if not self._open:
            return False
        try:
            await connection().execute_query("SELECT 1")
        except Exception:  # noqa: BLE001 (any driver error means "not answering")
            return False
        return True


class Queries:
    """What every store object is: the queries on one table, bound to one database (its
    dialect and its connection) when the :class:`~tiktok_minis.store.Store` is built."""

    def __init__(self, database: Database) -> None:
        self.database = database
        #: Which SQL dialect this object's raw statements speak.
        self.dialect: Dialect = database.dialect

    def connection(self) -> BaseDBAsyncClient:
        """The connection the raw statements run on (the database must be open)."""
        return self.database.connection()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dialect={self.dialect!r})"


# SQLSTATE classes (and one code) that say the server is not there to answer, whatever the
# query: 08 connection exception, 53 insufficient resources (too many connections, disk full),
# 57 operator intervention (57P01 admin shutdown, 57P02 crash shutdown, 57P03 "the database
# system is starting up / shutting down", 57014 a statement cut short), 58 system error (I/O).
_OUTAGE_SQLSTATE_PREFIXES = ("08", "53", "57", "58")

# SQLite's primary result codes of the same kind: busy or locked past the busy timeout, out of
# memory, I/O error, disk full, cannot open the file. A syntax error or a missing table (also
# sqlite3.OperationalError) is a bug, not one of these.
_OUTAGE_SQLITE_CODES = frozenset({5, 6, 7, 10, 13, 14})

# asyncpg's protocol errors: raised when a connection the server has just cut (a FATAL
# "terminating connection due to administrator command" landing on an idle pooled connection)
# is used in the moment before asyncpg notices the socket closed. The pool replaces it.
_ASYNCPG_BROKEN_CONNECTION = frozenset({"InternalClientError", "ConnectionDoesNotExistError"})

_NETWORK_ERRNOS = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}
)

_MAX_CHAIN = 8


def _where(url: str) -> str:
    """The database a URL names, for a message: no user, no password."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return f"SQLite file {url.partition('://')[2].split('?')[0] or '(none)'}"
    host = parts.hostname or "localhost"
    return (
        f"PostgreSQL database {parts.path.lstrip('/') or '(none)'!r} on {host}:{parts.port or 5432}"
    )


def _check_sqlite_folder(url: str) -> None:
    """Refuse an SQLite file whose folder does not exist, before the driver's thread tries
    (its failure arrives after the caller has moved on, as a stray thread error)."""
    if not url.startswith("sqlite"):
        return
    path = expand_db_url(url)["credentials"]["file_path"]
    if path != ":memory:" and not Path(path).parent.is_dir():
        raise ConfigurationError(
            f"The {_where(url)} cannot be opened (its folder does not exist): check the path."
        )


def _why_unopenable(url: str, exc: BaseException) -> str | None:
    """One sentence on why the database cannot be opened, when it is the deployment's doing
    (a driver missing, the server down, a database or a password wrong); ``None`` for a bug."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    names = {type(error).__name__ for error in chain}
    where = _where(url)
    if "InvalidCatalogNameError" in names:
        return f"The {where} does not exist: create it (createdb), or fix TTMINIS_DATABASE_URL."
    if names & {"InvalidPasswordError", "InvalidAuthorizationSpecificationError"}:
        return f"The {where} refused the user or password in TTMINIS_DATABASE_URL."
    if any(isinstance(e, OSError | TimeoutError) for e in chain) or "DBConnectionError" in names:
        return f"The {where} does not answer ({chain[-1]}): start it, or fix TTMINIS_DATABASE_URL."
    if url.startswith("sqlite") and "unable to open database file" in str(chain[-1]):
        return f"The {where} cannot be opened ({chain[-1]}): check the path and its folder."
    return None


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is not answering (down, restarting, unreachable),
    as opposed to a bug in a query: the caller answers ``storage_unavailable``, not
    ``internal_error``.

    Seen against a PostgreSQL restarted under traffic (tests/test_faults.py): refused and reset
    connections, asyncpg's ``CannotConnectNowError`` (57P03) while it stops and starts, and
    ``InternalClientError`` from a pooled connection the server had just terminated. tortoise
    passes most asyncpg errors through unwrapped, and wraps some in ``OperationalError``
    (the driver's error as its cause).
    """
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < _MAX_CHAIN:
        seen += 1
        if _is_outage_itself(current):
            return True
        if not isinstance(current, BaseORMException) or isinstance(current, IntegrityError):
            return False
        # tortoise wraps the driver's error; a lost connection shows in its cause.
        current = current.__cause__ or current.__context__
    return False


def _is_outage_itself(exc: BaseException) -> bool:
    if isinstance(exc, DBConnectionError | ConnectionError | TimeoutError | socket.gaierror):
        return True  # refused, reset, a timeout, a host name that does not resolve
    if type(exc) is OSError and exc.errno in _NETWORK_ERRNOS:
        return True  # no route to the host (a plain OSError, not a ConnectionError)
    sqlstate = getattr(exc, "sqlstate", None)  # asyncpg's PostgresError (psycopg: .sqlstate)
    if isinstance(sqlstate, str) and sqlstate.startswith(_OUTAGE_SQLSTATE_PREFIXES):
        return True
    sqlite_code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, sqlite3.Error) and isinstance(sqlite_code, int):
        return sqlite_code & 0xFF in _OUTAGE_SQLITE_CODES
    kind = type(exc)
    return kind.__module__.startswith("asyncpg") and kind.__name__ in _ASYNCPG_BROKEN_CONNECTION


async def migrate(url: str) -> list[str]:
    """Bring the database at ``url`` up to date; the names of the migrations applied, in order.

    For operators: upgrade a deployment once, ahead of starting the new version, and see what
    ran. Game servers also migrate when they open the database, so this step is optional; it is
    safe while servers start against the same PostgreSQL (they wait on one advisory lock). An
    empty list means the database was already current (or already opened by this process).
    """
    database = Database(url, pool_size=2)
    try:
        return await database._open_and_migrate()
    finally:
        await database.close()
