"""Alembic revisions of the ``bai_`` tables."""
