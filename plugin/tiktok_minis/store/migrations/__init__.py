"""The schema's history: tortoise-orm migrations of the ``ttminis`` app, applied in name order.

``Database.open`` applies the pending ones (see ``tiktok_minis.store.schema``). After changing
``store/models.py``, make the next one from the repository root, then format it and read it::

    .venv/bin/tortoise -c tiktok_minis.store.schema.TORTOISE_ORM makemigrations --name what_changed
    .venv/bin/ruff format plugin/tiktok_minis/store/migrations

What tortoise 1.1 gets wrong, to check by hand in every new migration:

- A ``NOT NULL`` column added to an existing table has no SQL default (a model's ``default``
  lives in Python), which fails on a table with rows: add it as ``0002_lifecycle`` does.
- An ``Index`` naming a foreign key indexes a column that does not exist: write the index as a
  tuple of field names, as ``0001_initial`` does.
- A table comment (the model's docstring) holding ";" breaks an atomic migration on SQLite:
  ``atomic = False``, as in ``0001_initial``.
- On SQLite, altering a column rebuilds its table; with foreign keys on, dropping the old
  ``ttminis_player`` would cascade to every score. Prefer adding columns to altering them.

``tests/test_migrations.py`` fails while a model change has no migration.
"""
