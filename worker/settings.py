"""The worker's own settings, from the environment or `.env`; only `worker.__main__` builds them.

Gemini's settings (`GEMINI_API_KEY`, `GEMINI_BASE_URL`, `GEMINI_MODEL`, …) belong to `worker.gemini.GeminiSettings`;
storage credentials (`STORAGE_*`) are read by `storage.open_store`. The RunPod runtime's `RUNPOD_*` variables are
the SDK's business.
"""

from typing import Literal

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    """Settings of `python -m worker`: `STORAGE_URL` (shared with the bot) and `WORKER_*`."""

    model_config = SettingsConfigDict(env_prefix="WORKER_", env_file=".env", extra="ignore", populate_by_name=True)

    storage_url: str = Field(
        default="file://./data/store",
        validation_alias=AliasChoices("STORAGE_URL", "storage_url"),
        min_length=1,
        description="the same store as the bot's: s3://BUCKET/PREFIX?region=… (a remote worker cannot read file://)",
    )
    # The work is I/O-bound, so more than one is cheap, but one keeps RunPod's scaling honest (a busy worker takes
    # no second chunk) and is what the local endpoint expects.
    max_concurrent_jobs: int = Field(
        default=1, ge=1, le=64, description="RunPod jobs (chunks) one worker process runs at once"
    )
    progress_interval_s: float = Field(
        default=1.0, ge=0.1, le=60, description="a chunk reports its progress at most this often, in seconds"
    )
    progress_settle_s: float = Field(
        default=0.25,
        ge=0,
        le=5,
        description="a chunk returns at least this long after its last progress report, so the report lands first",
    )
    max_reference_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1024, description="the largest reference image a worker reads, in bytes"
    )
    max_reference_pixels: int = Field(
        default=50_000_000, ge=1, description="the most pixels a reference image may have"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="the worker's log level: DEBUG, INFO, WARNING or ERROR"
    )


def describe_settings_error(exc: ValidationError, *, env_prefix: str = "") -> str:
    """Say which settings are wrong and why, naming them as environment variables and never echoing values."""
    parts = []
    for error in exc.errors():
        name = "_".join(str(part) for part in error["loc"])
        # A field read through an alias (STORAGE_URL) is reported by its alias; others by name, without the prefix.
        if name != name.upper():
            name = env_prefix + name.upper()
        parts.append(f"{name}: {error['msg']}")
    return "; ".join(parts)
