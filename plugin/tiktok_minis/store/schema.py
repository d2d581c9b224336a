"""The database schema: tortoise-orm's built-in migrations, applied when the database opens.

The migrations live in ``tiktok_minis.store.migrations``. tortoise's executor applies them; this
module adds what a plugin that upgrades itself at startup needs beyond it:

- Several processes starting at once against one PostgreSQL must not apply a migration twice:
  the whole run is one transaction that first takes an advisory lock, so the second process
  waits, then finds the work done. On PostgreSQL, DDL is transactional: a failed upgrade leaves
  the database as it was.
- A database that ``generate_schemas`` made before migrations existed has tables and no history.
  It is adopted (see ``_adopt``) rather than migrated from nothing into "table already exists".
- The names of the migrations applied, for the operator's command.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.connection import get_connection
from tortoise.migrations.executor import MigrationExecutor
from tortoise.migrations.graph import MigrationKey
from tortoise.migrations.operations import Operation
from tortoise.migrations.schema_editor import (
    AsyncpgSchemaEditor,
    BaseSchemaEditor,
    SqliteSchemaEditor,
)
from tortoise.migrations.schema_generator.state import State
from tortoise.migrations.schema_generator.state_apps import StateApps
from tortoise.transactions import in_transaction

from tiktok_minis.errors import ConfigurationError

__all__ = ["APP", "TORTOISE_ORM", "apply_migrations", "tortoise_config"]

log = logging.getLogger("tiktok_minis.store")

APP = "ttminis"
_MODELS = "tiktok_minis.store.models"
_MIGRATIONS = "tiktok_minis.store.migrations"

# pg_advisory_xact_lock takes a bigint; this one is "ttminis" in ASCII, readable in pg_locks.
_LOCK_KEY = int.from_bytes(b"ttminis", "big")

Columns = frozenset[tuple[str, str]]
"""A schema as the set of its (table, column) pairs: all that adoption needs to compare."""


def tortoise_config(connection_name: str, url: str) -> dict[str, Any]:
    """The tortoise configuration of the plugin's one app on one connection."""
    return {
        "connections": {connection_name: url},
        "apps": {APP: _app_config(connection_name)},
        "use_tz": True,
        "timezone": "UTC",
    }


def _app_config(connection_name: str) -> dict[str, Any]:
    return {"models": [_MODELS], "default_connection": connection_name, "migrations": _MIGRATIONS}


TORTOISE_ORM = tortoise_config("default", "sqlite://:memory:")
"""The configuration for tortoise's own CLI (``makemigrations``, ``sqlmigrate``, ``heads``).

Generating a migration needs no database, hence the in-memory SQLite. Deployments migrate through
``tiktok_minis.store.database.migrate`` (or by opening the database), which adds the lock and the
adoption of older databases; tortoise's ``migrate`` command has neither.
"""


async def apply_migrations(connection_name: str) -> list[str]:
    """Apply every pending migration on an initialised connection; the names applied, in order.

    A database made before migrations existed is adopted first: what it already holds is
    recorded without running, and only the migrations that then ran are listed.
    """
    applied: list[str] = []

    def progress(event: str, app_label: str, name: str) -> None:
        if event == "apply_done" and app_label == APP:
            applied.append(name)

    async with _exclusive(connection_name) as client:
        executor = MigrationExecutor(client, {APP: _app_config(connection_name)})
        await executor.recorder.ensure_schema(_schema_editor(client, atomic=False))
        history = [
            key for key in await executor.recorder.applied_migrations() if key.app_label == APP
        ]
        if not history and await _columns(client):
            applied += await _adopt(executor, connection_name)
        # Forward only: starting up never unapplies a migration; a plan that would is refused.
        await executor.migrate(direction="forward", progress=progress)
    if applied:
        log.info("schema migrated", extra={"event": "schema_migrated", "migrations": applied})
    return applied


@asynccontextmanager
async def _exclusive(connection_name: str) -> AsyncIterator[BaseDBAsyncClient]:
    """The client to migrate with, alone among the processes that share the database."""
    client = get_connection(connection_name)
    if client.capabilities.dialect != "postgres":
        # SQLite is the embedded, one-process database (the demo, the tests); tortoise applies
        # each migration in its own transaction. No outer transaction: tortoise creates its
        # history table with executescript, which would commit it halfway.
        yield client
        return
    async with in_transaction(connection_name) as transaction:
        # Held until the transaction ends: a process that crashes mid-upgrade releases it too.
        await transaction.execute_query("SELECT pg_advisory_xact_lock($1)", [_LOCK_KEY])
        yield transaction


def _schema_editor(client: BaseDBAsyncClient, *, atomic: bool) -> BaseSchemaEditor:
    if client.capabilities.dialect == "postgres":
        return AsyncpgSchemaEditor(client, atomic=atomic)
    return SqliteSchemaEditor(client, atomic=atomic)


async def _columns(client: BaseDBAsyncClient) -> Columns:
    """The plugin's tables and their columns, as the database holds them now."""
    if client.capabilities.dialect == "postgres":
        _, rows = await client.execute_query(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name LIKE 'ttminis\\_%'"
        )
        return frozenset((row["table_name"], row["column_name"]) for row in rows)
    _, tables = await client.execute_query(
        "SELECT name FROM sqlite_master"
        " WHERE type = 'table' AND name LIKE 'ttminis\\_%' ESCAPE '\\'"
    )
    columns: set[tuple[str, str]] = set()
    for table in tables:
        # PRAGMA takes no parameters; the name comes from sqlite_master, quoted all the same.
        quoted = '"' + table["name"].replace('"', '""') + '"'
        _, rows = await client.execute_query(f"PRAGMA table_info({quoted})")
        columns.update((table["name"], row["name"]) for row in rows)
    return frozenset(columns)


def _state_columns(state: State) -> Columns:
    """The (table, column) pairs that a migration state describes."""
    columns: set[tuple[str, str]] = set()
    for app_label, name in state.models:
        model = state.apps.get_model(app_label, name)
        columns.update(
            (model._meta.db_table, column) for column in model._meta.fields_db_projection.values()
        )
    return frozenset(columns)


def _plan(executor: MigrationExecutor) -> list[MigrationKey]:
    keys: list[MigrationKey] = []
    graph = executor.loader.graph
    for leaf in graph.leaf_nodes(APP):
        keys.extend(key for key in graph.forwards_plan(leaf) if key not in keys)
    return keys


async def _adopt(executor: MigrationExecutor, connection_name: str) -> list[str]:
    """Give a database made by ``generate_schemas`` the history of what it holds.

    ``generate_schemas(safe=True)`` only ever created whole tables, each as the models of its day
    described it, and never altered one. So, walking the migrations in order: a migration whose
    tables and columns are all there is recorded as applied without running; any other runs, less
    the steps whose tables or columns are already there (a table that a later version of the
    models created whole). Returns the migrations that ran.
    """
    await executor.loader.build_graph()
    present = await _columns(executor.connection)
    state = State(models={}, apps=StateApps(default_connections={APP: connection_name}))
    recorded: list[str] = []
    ran: list[str] = []
    for key in _plan(executor):
        migration = executor.loader.graph.nodes[key]
        if migration is None:  # named as a dependency but not on disk: a broken installation
            raise ConfigurationError(
                f"Migration {key.name} is missing from {_MIGRATIONS}; reinstall tiktok-minis."
            )
        before = state.clone()
        await migration.apply(state, dry_run=True)
        if _state_columns(state) <= present:
            await executor.recorder.record_applied(APP, key.name)
            recorded.append(key.name)
            continue
        state = before
        editor = _schema_editor(executor.connection, atomic=migration.atomic)
        if editor.atomic_migration:
            async with in_transaction(connection_name) as transaction:
                editor.client = transaction
                await _complete(migration.operations, state, present, editor)
        else:
            await _complete(migration.operations, state, present, editor)
        await executor.recorder.record_applied(APP, key.name)
        ran.append(key.name)
    log.info(
        "database from before migrations adopted",
        extra={"event": "schema_adopted", "recorded": recorded, "completed": ran},
    )
    return ran


async def _complete(
    operations: list[Operation], state: State, present: Columns, editor: BaseSchemaEditor
) -> None:
    """Run a migration's operations, less those whose tables or columns are already there.

    An operation that adds no table or column (SQL, an index) always runs.
    """
    for operation in operations:
        old = state.clone()
        operation.state_forward(APP, state)
        added = _state_columns(state) - _state_columns(old)
        if added and added <= present:
            continue
        await operation.database_forward(APP, old, state, editor)
