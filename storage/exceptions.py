"""Errors raised by the storage layer."""

from __future__ import annotations


class StorageError(Exception):
    """The database operation failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)
