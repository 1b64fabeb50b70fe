"""``bai-sweep version``."""

from __future__ import annotations

from importlib.metadata import version as package_version

from service.cli._app import app, console

_COMPONENTS = (
    "bai-sweep",
    "torch",
    "transformers",
    "trl",
    "optuna",
    "ray",
    "lm-eval",
    "sqlalchemy",
)


@app.command()
def version() -> None:
    """Print the versions of bai-sweep and the components it drives."""
    for name in _COMPONENTS:
        console.print(f"{name:<13} {package_version(name)}", highlight=False)
