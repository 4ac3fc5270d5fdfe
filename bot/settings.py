"""The bot's settings, from the environment or `.env`; only `bot.__main__` builds them.

Every external service is optional: a setting left unset selects the embedded default (docs/architecture.md), so
`python -m bot` runs with no account at all. Secrets are `SecretStr` and never appear in logs or reprs.
"""

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "gemini-2.5-flash-image"


class BotSettings(BaseSettings):
    """Settings of the bot process (`python -m bot`), named as the README's table names them (no prefix)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # Discord: unset → the local Discord-compatible playground.
    discord_token: SecretStr | None = None
    dev_guild_id: int | None = None
    playground_host: str = "127.0.0.1"
    playground_port: int = Field(default=8080, ge=0, le=65535)

    # RunPod: unset → the local RunPod-compatible endpoint with worker subprocesses.
    runpod_endpoint_id: str | None = None
    runpod_api_key: SecretStr | None = None
    runpod_api_base: str = Field(
        default="https://api.runpod.ai/v2", validation_alias=AliasChoices("runpod_base_url", "runpod_api_base")
    )
    local_workers: int = Field(default=2, ge=1, le=32)

    # Gemini: unset key → the local Gemini-compatible server (the worker talks to it).
    gemini_api_key: SecretStr | None = None
    gemini_base_url: str | None = None
    gemini_model: str = DEFAULT_MODEL
    gemini_concurrency: int = Field(default=10, ge=1, le=1000)

    # Storage and ledger.
    data_dir: Path = Path("data")
    storage_url: str | None = None
    ledger_path: Path | None = None

    # The link server (signed file and ZIP links, group gallery).
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8081, ge=0, le=65535)
    public_base_url: str | None = None
    link_secret: SecretStr | None = None
    link_expiry_s: int = Field(default=7 * 24 * 3600, ge=60)

    # Scheduling.
    max_running_per_user: int = Field(default=3, ge=1)
    max_waiting_per_user: int = Field(default=10, ge=0)
    poll_interval_s: float = Field(default=0.5, gt=0)  # /status of each chunk in flight; 7 chunks: 14 calls/s
    # Dispatcher attempts per item (the first included) for retryable failures, on top of the worker's own retries.
    item_max_attempts: int = Field(default=4, ge=1, le=20)
    # How long a batch chunk should run (bot.core.chunking.ChunkPolicy.target_chunk_s): longer wastes less on
    # hand-overs, shorter lets a pause, a cancel or a grid behind a batch take effect sooner.
    batch_chunk_s: float = Field(default=60.0, gt=0)
    expected_latency_s: float = Field(default=12.0, gt=0)  # one Gemini call, for ETAs and RunPod timeouts
    progress_edit_interval_s: float = Field(default=3.0, gt=0)  # a job's message is edited at most this often
    # Discord allows 5 message edits per channel per 5 s; Peel sends at most 4 edits to a channel in this window.
    channel_edit_window_s: float = Field(default=5.0, gt=0)
    interaction_token_max_age_s: float = Field(default=14 * 60, gt=0)  # older tokens: post a channel message

    # Access (empty lists: everyone). Admins may cancel anyone's job and see the whole queue.
    allowed_guild_ids: list[int] = Field(default_factory=list)
    allowed_role_ids: list[int] = Field(default_factory=list)
    admin_role_ids: list[int] = Field(default_factory=list)
    admin_user_ids: list[int] = Field(default_factory=list)
    # Off: a guild's Administrator permission alone does not make a Peel admin (admins see every prompt).
    guild_admins_are_peel_admins: bool = False

    # Batches.
    batch_max_items: int = Field(default=10_000, ge=1)  # per batch, per user
    batch_max_running_per_user: int = Field(default=2, ge=1)
    batch_max_running_per_guild: int = Field(default=5, ge=1)
    batch_max_items_per_guild: int = Field(default=50_000, ge=1)  # items of a guild's unfinished batches
    # The largest ZIP a /batch link or attachment may be: about 1,000 images of 2 MB; raise it with the disk budget.
    batch_fetch_max_bytes: int = Field(default=2 * 1024**3, ge=1)
    # Downloads (/batch links and attachments): at once per user and in all, and the bytes all of them may hold
    # on disk together (a download that would go over is refused). A server that sends nothing for
    # `fetch_idle_timeout_s`, or averages under `fetch_min_bytes_per_s` after `fetch_slow_grace_s`, loses its slot.
    fetch_max_per_user: int = Field(default=1, ge=1)
    fetch_max_total: int = Field(default=4, ge=1)
    fetch_disk_budget_bytes: int = Field(default=4 * 1024**3, ge=1)
    fetch_timeout_s: float = Field(default=1200.0, gt=0)  # 2 GiB at 1.7 MiB/s
    fetch_idle_timeout_s: float = Field(default=30.0, gt=0)
    fetch_min_bytes_per_s: int = Field(default=256 * 1024, ge=0)
    fetch_slow_grace_s: float = Field(default=15.0, ge=0)
    # Images of a batch ZIP checked at once (decoding runs without the GIL); each may hold a 50 MB image and its
    # decoded pixels, so more costs memory on hostile uploads. 2 take in 1.3-1.5x the images/s of 1 on 2 cores
    # (bench/intake_throughput.py).
    intake_parallel_checks: int = Field(default=2, ge=1, le=8)
    # A plan shown before Start and never started or cancelled is forgotten after this long.
    batch_plan_ttl_s: int = Field(default=24 * 3600, ge=60)
    batch_fetch_allowed_networks: list[str] = Field(default_factory=list)  # e.g. ["127.0.0.0/8"] in tests
    # A batch's progress message is edited at most this often (Discord allows 5 edits per 5 s per channel).
    batch_progress_interval_s: float = Field(default=5.0, ge=1.0)

    # Group export: destination name → store URL (`s3://…`, `file://…`), and who may export.
    export_destinations: dict[str, str] = Field(default_factory=dict)
    export_role_ids: list[int] = Field(default_factory=list)

    # Outages: how long jobs wait for an unreachable RunPod before their unsent images fail, and who is told.
    outage_fail_after_s: float = Field(
        default=600.0,
        gt=0,
        description="interactive jobs fail after RunPod has been unreachable this long (nothing is charged)",
    )
    outage_fail_batch_after_s: float = Field(
        default=3600.0,
        gt=0,
        description="batches fail their unsent images after RunPod has been unreachable this long",
    )
    admin_channel_id: int | None = Field(
        default=None,
        description="Discord channel where admins are told, once per incident, of outages and configuration errors",
    )

    @model_validator(mode="after")
    def _runpod_is_all_or_nothing(self) -> "BotSettings":
        if (self.runpod_endpoint_id is None) != (self.runpod_api_key is None):
            raise ValueError("set both RUNPOD_ENDPOINT_ID and RUNPOD_API_KEY, or neither (embedded endpoint)")
        return self

    @property
    def uses_local_runpod(self) -> bool:
        """True when no RunPod account is configured and the embedded endpoint runs the worker."""
        return self.runpod_endpoint_id is None

    @property
    def uses_local_gemini(self) -> bool:
        """True when no Gemini key is configured and the embedded Gemini-compatible server answers."""
        return self.gemini_api_key is None

    @property
    def uses_playground(self) -> bool:
        """True when no Discord token is configured and the bot connects to the local playground."""
        return self.discord_token is None

    @property
    def resolved_storage_url(self) -> str:
        """The store URL: `STORAGE_URL`, else a file store under the data directory."""
        return self.storage_url or f"file://{(self.data_dir / 'store').resolve()}"

    @property
    def resolved_ledger_path(self) -> Path:
        """The SQLite ledger file: `LEDGER_PATH`, else `peel.sqlite3` in the data directory."""
        return self.ledger_path or self.data_dir / "peel.sqlite3"
