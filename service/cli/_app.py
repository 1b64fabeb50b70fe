"""The shared Typer application and helpers every command module uses."""

from __future__ import annotations

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


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line of explanation on stderr and return the ``typer.Exit`` to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def user_errors(*error_types: type[Exception], code: int = 2) -> Iterator[None]:
    """Turn the given (user-caused) exception types into a one-line error and exit ``code``."""
    from evaluators.exceptions import EvaluatorError
    from storage.exceptions import StorageError
    from sweeps.exceptions import SweepsError

    handled = error_types or (SweepsError, EvaluatorError, StorageError)
    try:
        yield
    except handled as exc:
        raise fail(str(exc), code) from None


def parse_floats(value: str, option: str) -> list[float]:
    """Parse ``"0.5,0.5"`` into floats, or exit with a message naming ``option``."""
    try:
        return [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise fail(f"{option} must be comma-separated numbers, got {value!r}") from None


@app.callback()
def _root() -> None:
    """Sweep Balanced Actor Initialization (BAI) merge ratios before RLHF."""
