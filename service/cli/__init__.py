"""The ``bai-sweep`` command line.

Every command lives in its own module of this package and registers itself on the shared
:data:`app`; heavy libraries (torch, ray, lm-eval) are imported inside the commands so that
``bai-sweep --help`` stays instant.
"""

from __future__ import annotations

import importlib
import pkgutil

from service.cli._app import app

__all__ = ["app", "main"]


def _register_commands() -> None:
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_register_commands()


def main() -> None:
    """Entry point of the ``bai-sweep`` console script."""
    app()
