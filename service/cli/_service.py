"""Helpers shared by the service commands (``serve``, ``worker``, ``dashboard``)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from service.cli._app import fail
from service.settings import Settings


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment with the given command-line overrides applied.

    Unsafe values (e.g. a public host without an API token) exit with a one-line error.
    """
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        messages = [
            ".".join(str(part) for part in error["loc"]) + ": " + error["msg"]
            if error["loc"]
            else error["msg"].removeprefix("Value error, ")
            for error in exc.errors()
        ]
        raise fail("invalid settings: " + "; ".join(messages)) from None
