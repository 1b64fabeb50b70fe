"""Errors raised by the sweep domain (specs, merges, runs)."""

from __future__ import annotations


class SweepsError(Exception):
    """The sweep could not be prepared or run."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)
