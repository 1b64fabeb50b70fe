"""Errors raised while scoring a model (probe, benchmarks)."""

from __future__ import annotations


class EvaluatorError(Exception):
    """The model could not be evaluated."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)
