"""What the rank indexes need: score row versions, an index on when rows were written, and the
feed of removed score rows.

``ttminis_score.version`` is ``BIGINT NOT NULL DEFAULT 0`` made by ``RunSQL`` (tortoise would
add it with no SQL default, refused on a table with rows; see ``0002_lifecycle``), and the index
made only if missing; both are then recorded in the migration state alone.
"""

from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from tiktok_minis.store.migration_ops import AddFieldToStateOnly, AddIndexToStateOnly


class Migration(migrations.Migration):
    """Create ``ttminis_score_removal``; add ``ttminis_score.version`` and an index."""

    dependencies = [("ttminis", "0003_sessions")]

    initial = False

    operations = [
        ops.CreateModel(
            name="ScoreRemovalRow",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("board", fields.CharField(max_length=64)),
                ("period", fields.CharField(max_length=16)),
                ("row_id", fields.BigIntField()),
                (
                    "created_at",
                    fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False),
                ),
            ],
            options={
                "table": "ttminis_score_removal",
                "app": "ttminis",
                "pk_attr": "id",
                "table_description": (
                    "A score row that was deleted (a forgotten player's): every process follows"
                    " these by"
                ),
            },
            bases=["Model"],
        ),
        # The same SQL on SQLite and PostgreSQL; SQLite drops columns since 3.35.
        ops.RunSQL(
            'ALTER TABLE "ttminis_score" ADD COLUMN "version" BIGINT NOT NULL DEFAULT 0',
            reverse_sql='ALTER TABLE "ttminis_score" DROP COLUMN "version"',
        ),
        AddFieldToStateOnly(
            model_name="ScoreRow",
            name="version",
            field=fields.BigIntField(default=0),
        ),
        # IF NOT EXISTS: a database that generate_schemas made from today's models (see
        # schema._adopt) has the index already. The name is the one tortoise gives it.
        ops.RunSQL(
            "CREATE INDEX IF NOT EXISTS idx_ttminis_sco_updated_910297"
            ' ON "ttminis_score" ("updated_at")',
            reverse_sql="DROP INDEX IF EXISTS idx_ttminis_sco_updated_910297",
        ),
        AddIndexToStateOnly(model_name="ScoreRow", index=Index(fields=["updated_at"])),
    ]
