"""The shared Typer application and helpers every command module uses."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

app = typer.Typer(
    name="bai-sweep",
    help="Sweep Balanced Actor Initialization (BAI) merge ratios before RLHF.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def warn(message: str) -> None:
    """Print one warning line on stderr (the run goes on)."""
    err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line of explanation on stderr and return the ``typer.Exit`` to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


# The root errors of our packages. They are looked up in ``sys.modules`` when an error is
# raised rather than imported up front: importing ``storage`` pulls in sqlalchemy, and a module
# that was never imported cannot have raised its error.
_ROOT_ERRORS = (
    ("sweeps.exceptions", "SweepsError"),
    ("evaluators.exceptions", "EvaluatorError"),
    ("storage.exceptions", "StorageError"),
)


def _loaded_root_errors() -> tuple[type[Exception], ...]:
    return tuple(
        getattr(sys.modules[module], name) for module, name in _ROOT_ERRORS if module in sys.modules
    )


@contextmanager
def user_errors(*error_types: type[Exception], code: int = 2) -> Iterator[None]:
    """Turn the given (user-caused) exception types into a one-line error and exit ``code``.

    Without ``error_types``, the root errors of ``sweeps``, ``evaluators`` and ``storage``.
    """
    try:
        yield
    except Exception as exc:
        if isinstance(exc, error_types or _loaded_root_errors()):
            raise fail(str(exc), code) from None
        raise


def parse_floats(value: str, option: str) -> list[float]:
    """Parse ``"0.5,0.5"`` into floats, or exit with a message naming ``option``."""
    try:
        return [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise fail(f"{option} must be comma-separated numbers, got {value!r}") from None


@app.callback()
def _root() -> None:
    """Sweep Balanced Actor Initialization (BAI) merge ratios before RLHF."""
