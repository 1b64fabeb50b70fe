"""Errors raised by the sweep domain (specs, merges, runs)."""

from __future__ import annotations


class SweepsError(Exception):
    """The sweep could not be prepared or run."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class InvalidRatiosError(SweepsError):
    """The BAI merge ratios are invalid: weights must be >= 0 and sum to 1, alpha in [0, 1]."""


class CheckpointNotFoundError(SweepsError):
    """A checkpoint directory does not exist or holds no safetensors weights."""


class InvalidCheckpointError(SweepsError):
    """A checkpoint is unreadable: its config or safetensors headers are malformed."""


class IncompatibleCheckpointsError(SweepsError):
    """The checkpoints cannot be merged: architectures, tensor names or shapes differ."""


class MergeOptionError(SweepsError):
    """A merge option is invalid (output dtype, shard size, device or output path)."""


class InvalidSpecError(SweepsError):
    """The sweep spec is invalid: check the named field."""


class SweepRunError(SweepsError):
    """The sweep could not be run to the end."""
