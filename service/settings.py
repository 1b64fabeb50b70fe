"""Service settings, read from ``BAI_SWEEP_*`` environment variables (and a ``.env`` file).

Unsafe combinations fail when the settings are built, i.e. at start-up: listening beyond the
loopback interface without an API token, requiring a token for reads without configuring one,
or a stale-heartbeat threshold that a healthy worker could cross.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Self

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: Shortest API token accepted: a guessable token is no protection.
MIN_TOKEN_LENGTH = 16


def is_loopback(host: str) -> bool:
    """True if ``host`` only accepts connections from this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        # Any other host name may resolve to a public interface.
        return False


class Settings(BaseSettings):
    """Everything the service, the worker and the CLI take from the environment."""

    model_config = SettingsConfigDict(
        env_prefix="BAI_SWEEP_", env_file=".env", extra="ignore", populate_by_name=True
    )

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
    # NoDecode: the variable is comma-separated paths, not JSON.
    model_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Directories that model paths in sweep specs must lie under "
        "(comma-separated). Default: the data directory only.",
    )
    trust_remote_code: bool = Field(
        default=False, description="Allow checkpoints to run their own modelling code."
    )
    host: str = Field(default="127.0.0.1", description="Address the REST API listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port of the REST API.")
    api_token: SecretStr | None = Field(
        default=None,
        description="Bearer token guarding the REST API's mutating endpoints (and reads when "
        "`read_token_required`). Required to listen beyond the loopback interface.",
    )
    read_token_required: bool = Field(
        default=False, description="Require the bearer token for read endpoints too."
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest request body accepted (bytes); larger bodies get 413 while they "
        "stream in, before they are read whole.",
    )
    api_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Processes serving the REST API (`bai-sweep serve`); each answers on its "
        "own core.",
    )
    read_cache_ttl: float = Field(
        default=1.0,
        ge=0,
        description="Seconds a sweep's status and front responses may be served from the API "
        "process's cache (0: off).",
    )
    ray_address: str | None = Field(
        default=None,
        validation_alias=AliasChoices("BAI_SWEEP_RAY_ADDRESS", "RAY_ADDRESS"),
        description="Ray cluster the worker submits trials to (also read from RAY_ADDRESS). "
        "Default: a local Ray instance started by the worker.",
    )
    worker_poll_interval: float = Field(
        default=2.0, gt=0, description="Seconds an idle worker waits between queue polls."
    )
    heartbeat_interval: float = Field(
        default=10.0, gt=0, description="Seconds between a running sweep's heartbeats."
    )
    stale_after: float = Field(
        default=120.0,
        gt=0,
        description="Seconds without a heartbeat after which a running sweep is re-queued.",
    )
    max_attempts: int | None = Field(
        default=3,
        ge=1,
        description="Claims after which a sweep whose workers keep dying is marked failed "
        "(empty: retry forever).",
    )
    dashboard_host: str = Field(
        default="127.0.0.1", description="Address optuna-dashboard listens on."
    )
    dashboard_port: int = Field(
        default=8080, ge=1, le=65535, description="Port of optuna-dashboard."
    )

    @field_validator("model_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("api_token", mode="after")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"BAI_SWEEP_API_TOKEN must be at least {MIN_TOKEN_LENGTH} characters long"
            )
        return value

    @model_validator(mode="after")
    def _safe_combination(self) -> Self:
        if self.api_token is None and not is_loopback(self.host):
            raise ValueError(
                f"refusing to listen on non-loopback address {self.host!r} without an API "
                "token: set BAI_SWEEP_API_TOKEN or listen on 127.0.0.1"
            )
        if self.read_token_required and self.api_token is None:
            raise ValueError("BAI_SWEEP_READ_TOKEN_REQUIRED is set but BAI_SWEEP_API_TOKEN is not")
        if self.stale_after <= 2 * self.heartbeat_interval:
            raise ValueError(
                f"BAI_SWEEP_STALE_AFTER ({self.stale_after:g} s) must exceed twice "
                f"BAI_SWEEP_HEARTBEAT_INTERVAL ({self.heartbeat_interval:g} s), or healthy "
                "sweeps would be reclaimed"
            )
        return self

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

    @property
    def artifact_dir(self) -> Path:
        """Directory of the Optuna artifact store (per-trial curve PNGs)."""
        return (self.data_dir / "artifacts").resolve()


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return Settings()
