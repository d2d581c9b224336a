"""Sessions that end: ``ttminis_session_end``, which resuming checks and every process follows."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    """Create ``ttminis_session_end``."""

    dependencies = [("ttminis", "0002_lifecycle")]

    initial = False

    operations = [
        ops.CreateModel(
            name="SessionEndRow",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("public_id", fields.CharField(max_length=32)),
                ("digest", fields.CharField(null=True, unique=True, max_length=64)),
                ("epoch", fields.IntField(null=True)),
                ("reason", fields.CharField(max_length=16)),
                (
                    "created_at",
                    fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False),
                ),
            ],
            options={
                "table": "ttminis_session_end",
                "app": "ttminis",
                "pk_attr": "id",
                "table_description": "Sessions that ended: one session string (``digest``), or every session of a player issued",
            },
            bases=["Model"],
        ),
    ]
