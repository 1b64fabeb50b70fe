"""Probe backends: the RL algorithms a stability probe can run (TRL PPO built in).

A backend is a :class:`ProbeBackend` subclass in its own module. Built-in backends are
imported on first use, so importing this package stays cheap (no torch, no trl).
"""

from __future__ import annotations

import importlib

from evaluators.backends._base import ProbeBackend, ProbeStop, StepSink
from evaluators.exceptions import EvaluatorError

__all__ = [
    "ProbeBackend",
    "ProbeStop",
    "StepSink",
    "UnknownBackendError",
    "backend_names",
    "get_backend",
    "register_backend",
]

_BUILTIN = {"trl-ppo": "evaluators.backends._trl_ppo:TrlPpoBackend"}
_REGISTERED: dict[str, type[ProbeBackend]] = {}


class UnknownBackendError(EvaluatorError):
    """No probe backend has that name."""


def register_backend(backend: type[ProbeBackend]) -> type[ProbeBackend]:
    """Make ``backend`` available under ``backend.name`` (usable as a class decorator)."""
    _REGISTERED[backend.name] = backend
    return backend


def backend_names() -> list[str]:
    """Names of every available backend, sorted."""
    return sorted({*_BUILTIN, *_REGISTERED})


def get_backend(name: str) -> ProbeBackend:
    """A fresh instance of the backend called ``name``.

    Raises:
        UnknownBackendError: No backend has that name.
    """
    if name in _REGISTERED:
        return _REGISTERED[name]()
    if name not in _BUILTIN:
        raise UnknownBackendError(
            f"unknown probe backend {name!r}; available: {', '.join(backend_names())}"
        )
    module_name, class_name = _BUILTIN[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)()
