"""Service settings, read from ``BAI_SWEEP_*`` environment variables (and a ``.env`` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service, the worker and the CLI take from the environment."""

    model_config = SettingsConfigDict(env_prefix="BAI_SWEEP_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default=Path(".bai-sweep"),
        description="Working data directory: the embedded SQLite database, the demo world "
        "cache, reports and Optuna artifacts.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the database shared by the service, the workers and "
        "Optuna. Default: a SQLite file in the data directory.",
    )
    model_roots: list[Path] = Field(
        default_factory=list,
        description="Directories that model paths in sweep specs must lie under "
        "(comma-separated). Default: the data directory only.",
    )
    trust_remote_code: bool = Field(
        default=False, description="Allow checkpoints to run their own modelling code."
    )

    @field_validator("model_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in value.split(",") if part.strip()]
        return value

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``sqlite:///<data_dir>/bai-sweep.db``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'bai-sweep.db').resolve()}"

    @property
    def resolved_model_roots(self) -> list[Path]:
        """Absolute, symlink-free model roots."""
        roots = self.model_roots or [self.data_dir]
        return [root.expanduser().resolve() for root in roots]


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return Settings()
