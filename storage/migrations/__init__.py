"""Alembic environment of the storage models (run through ``storage.migrate``)."""
