"""Errors raised by the storage layer."""

from __future__ import annotations


class StorageError(Exception):
    """The database operation failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class NotFoundError(StorageError):
    """The requested sweep or trial does not exist."""


class ConflictError(StorageError):
    """The change conflicts with the current state of the database."""


class InvalidArgumentError(StorageError):
    """An argument passed to the storage layer is invalid."""


class DatabaseUnavailableError(StorageError):
    """The database cannot be reached or is locked."""


class MigrationError(StorageError):
    """The database schema cannot be migrated to this version of bai-sweep."""
