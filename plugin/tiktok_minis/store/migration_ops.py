"""Migration operations that tortoise-orm lacks, shared by the migrations that need them.

Each changes the migration state alone, after a ``RunSQL`` made the change in the database in a
way tortoise cannot say (a column with an SQL default, an index made only if missing).
"""

from __future__ import annotations

from tortoise.migrations import operations as ops
from tortoise.migrations.schema_editor.base import BaseSchemaEditor
from tortoise.migrations.schema_generator.state import State

__all__ = ["AddFieldToStateOnly", "AddIndexToStateOnly"]


class _StateOnly(ops.Operation):
    """Touches the migration state, never the database: the ``RunSQL`` before it did."""

    async def database_forward(
        self,
        app_label: str,
        old_state: State,
        new_state: State,
        state_editor: BaseSchemaEditor | None = None,
    ) -> None:
        """Nothing to do in the database."""

    async def database_backward(
        self,
        app_label: str,
        old_state: State,
        new_state: State,
        state_editor: BaseSchemaEditor | None = None,
    ) -> None:
        """Nothing to undo in the database: the ``RunSQL``'s reverse does it."""


class AddFieldToStateOnly(_StateOnly, ops.AddField):
    """An ``AddField`` for the migration state alone: the ``RunSQL`` before it made the column."""


class AddIndexToStateOnly(_StateOnly, ops.AddIndex):
    """An ``AddIndex`` for the migration state alone: the ``RunSQL`` before it made the index."""
