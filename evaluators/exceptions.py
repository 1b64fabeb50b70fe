"""Errors raised while scoring a model (probe, benchmarks)."""

from __future__ import annotations


class EvaluatorError(Exception):
    """The model could not be evaluated."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class BenchmarkConfigError(EvaluatorError):
    """The benchmark configuration is invalid."""


class UnknownTaskError(BenchmarkConfigError):
    """A benchmark task name is not known to the shipped suite, the include paths or lm-eval."""


class MalformedTaskError(BenchmarkConfigError):
    """A benchmark task definition (lm-eval YAML) is malformed."""


class TaskDataUnavailableError(EvaluatorError):
    """A benchmark task's data is not available on this machine (nothing is downloaded)."""


class ModelLoadError(EvaluatorError):
    """The model checkpoint could not be loaded for evaluation."""
