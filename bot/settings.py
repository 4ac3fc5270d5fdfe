"""The bot's settings, from the environment or `.env`; only `bot.__main__` builds them.

Every external service is optional: a setting left unset selects the embedded default (docs/architecture.md), so
`python -m bot` runs with no account at all. Secrets are `SecretStr` and never appear in logs or reprs.
"""

import os
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.core.batch import Speed
from bot.core.budgets import BudgetConfig, Caps, RoleRule, micros
from bot.core.deployment import ConfigProblem, DeploymentFacts, impossible_configurations

DEFAULT_MODEL = "gemini-2.5-flash-image"


def _caps(daily: Decimal | None, monthly: Decimal | None) -> Caps:
    return Caps(day=None if daily is None else micros(daily), month=None if monthly is None else micros(monthly))


class RoleBudget(BaseModel):
    """One role's entry of `BUDGET_ROLES`: its members' caps in USD and gates (unset: no limit)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    daily: Decimal | None = Field(default=None, ge=0)
    monthly: Decimal | None = Field(default=None, ge=0)
    batch: bool = True
    models: list[str] | None = None
    allow_4k: bool = True
    max_batch_items: int | None = Field(default=None, ge=1)

    def rule(self) -> RoleRule:
        """Return the pure rule (bot.core.budgets)."""
        return RoleRule(
            caps=_caps(self.daily, self.monthly),
            batch=self.batch,
            models=None if self.models is None else frozenset(self.models),
            allow_4k=self.allow_4k,
            max_batch_items=self.max_batch_items,
        )


class BotSettings(BaseSettings):
    """Settings of the bot process (`python -m bot`), named as the README's table names them (no prefix)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # Discord: unset → the local Discord-compatible playground.
    discord_token: SecretStr | None = Field(
        default=None, description="the bot token from the Discord Developer Portal; unset: the local playground"
    )
    dev_guild_id: int | None = Field(
        default=None, description="sync slash commands to this one server at once (testing); unset: globally"
    )
    playground_host: str = Field(
        default="127.0.0.1", description="where the local playground listens (used only without DISCORD_TOKEN)"
    )
    playground_port: int = Field(default=8080, ge=0, le=65535, description="the local playground's port")

    # RunPod: unset → the local RunPod-compatible endpoint with worker subprocesses.
    runpod_endpoint_id: str | None = Field(
        default=None, description="the RunPod Serverless endpoint's id; unset (with the key): the local endpoint"
    )
    runpod_api_key: SecretStr | None = Field(
        default=None, description="a RunPod API key with access to the endpoint; set both or neither"
    )
    runpod_api_base: str = Field(
        default="https://api.runpod.ai/v2",
        validation_alias=AliasChoices("runpod_base_url", "runpod_api_base"),
        description="the RunPod Serverless API (RUNPOD_API_BASE is accepted too)",
    )
    # The upper bound docs/deploy.md ("What it costs") uses: RunPod's cheapest flex GPU worker per second
    # (https://docs.runpod.io/serverless/pricing), which a CPU worker does not exceed. Prices change: set yours.
    runpod_price_per_s: float = Field(
        default=0.00016, ge=0, description="USD per second of RunPod worker time, to record what each chunk cost"
    )
    local_workers: int = Field(
        default=2, ge=1, le=32, description="worker subprocesses of the local RunPod endpoint (no RunPod account)"
    )

    # Gemini: unset key → the local Gemini-compatible server (the worker talks to it).
    gemini_api_key: SecretStr | None = Field(
        default=None,
        description="given to the local endpoint's workers; unset: the local Gemini server (set it on the worker)",
    )
    gemini_base_url: str | None = Field(
        default=None, description="a Gemini API proxy for the local endpoint's workers; unset: Google's API"
    )
    gemini_model: str = Field(default=DEFAULT_MODEL, description="the model used when a user has not chosen one")
    gemini_describe_model: str = Field(
        default="gemini-2.5-flash",
        pattern=r"^[A-Za-z0-9._/-]+$",
        description="the text model /describe asks for prompts (priced in the catalogue's text models)",
    )
    gemini_concurrency: int = Field(
        default=10, ge=1, le=1000, description="Gemini calls in flight over all workers: your quota allows this many"
    )

    # Storage and ledger.
    data_dir: Path = Field(
        default=Path("data"), description="the ledger, the link secret, downloads and logs (a volume in Docker)"
    )
    storage_url: str | None = Field(
        default=None, description="where images live: s3://BUCKET/PREFIX?region=…; unset: file://DATA_DIR/store"
    )
    ledger_path: Path | None = Field(default=None, description="the SQLite ledger; unset: DATA_DIR/peel.sqlite3")

    # The link server (signed file and ZIP links, group gallery).
    web_host: str = Field(default="127.0.0.1", description="where the link server listens (0.0.0.0 in a container)")
    web_port: int = Field(default=8081, ge=0, le=65535, description="the link server's port")
    public_base_url: str | None = Field(
        default=None, description="the address users reach the link server at, e.g. https://peel.example.com"
    )
    link_secret: SecretStr | None = Field(
        default=None, description="signs file and ZIP links; unset: a random one kept in DATA_DIR/link_secret"
    )
    link_expiry_s: int = Field(default=7 * 24 * 3600, ge=60, description="how long a signed link works, in seconds")

    # Scheduling.
    max_running_per_user: int = Field(default=3, ge=1, description="a user's jobs running at once")
    max_waiting_per_user: int = Field(default=10, ge=0, description="a user's jobs waiting behind those")
    # Midjourney caps a permutation prompt at 40 jobs (https://docs.midjourney.com/docs/permutations).
    max_prompts_per_request: int = Field(
        default=40,
        ge=1,
        le=1000,
        description="the most prompts {a, b} permutations times --repeat may make of one /imagine (one /batch prompt)",
    )
    # /status of each chunk in flight; 7 chunks: 14 calls/s.
    poll_interval_s: float = Field(default=0.5, gt=0, description="how often each RunPod job in flight is polled")
    # On top of the worker's own retries.
    item_max_attempts: int = Field(
        default=4, ge=1, le=20, description="attempts per image (the first included) for retryable failures"
    )
    # bot.core.chunking.ChunkPolicy.target_chunk_s: longer wastes less on hand-overs, shorter lets a pause, a cancel
    # or a grid behind a batch take effect sooner.
    batch_chunk_s: float = Field(default=60.0, gt=0, description="how long one batch chunk (RunPod job) should run")
    # Relax mode (bot.core.relax.RelaxPolicy): batches through Gemini's Batch API, in parts of one batch job each.
    relax_part_items: int = Field(
        default=500, ge=1, le=2000, description="items per relax part (one Gemini batch job, one file under 2 GB)"
    )
    relax_parts_per_job: int = Field(default=4, ge=1, le=100, description="relax parts one batch has open at once")
    # Gemini runs at most 100 batch jobs at once per project (ai.google.dev/gemini-api/docs/rate-limits#batch-mode).
    relax_max_parts: int = Field(
        default=50, ge=1, le=100, description="relax parts open at once over all batches (Gemini allows 100 jobs)"
    )
    relax_poll_s: float = Field(
        default=30.0, gt=0, description="how often Gemini is asked about each batch job it holds (one cheap GET)"
    )
    expected_latency_s: float = Field(
        default=12.0, gt=0, description="one Gemini call's time, for ETAs and RunPod timeouts until one is measured"
    )
    progress_edit_interval_s: float = Field(
        default=3.0, gt=0, description="a job's message is edited at most this often, in seconds"
    )
    # Discord allows 5 message edits per channel per 5 s; Peel sends at most 4 edits to a channel in this window.
    channel_edit_window_s: float = Field(
        default=5.0, gt=0, description="the window in which Peel sends at most 4 edits to one channel"
    )
    # Interaction tokens last 15 minutes.
    interaction_token_max_age_s: float = Field(
        default=14 * 60, gt=0, description="older interaction tokens are not used: Peel posts a channel message"
    )

    # Access (empty lists: everyone). Admins may cancel anyone's job and see the whole queue.
    allowed_guild_ids: list[int] = Field(
        default_factory=list, description="only these servers (checked first, for everyone); empty: every server"
    )
    allowed_role_ids: list[int] = Field(
        default_factory=list, description="only holders of these roles may use Peel; empty: everyone"
    )
    admin_role_ids: list[int] = Field(
        default_factory=list, description="holders of these roles are Peel admins (whole queue, no caps)"
    )
    admin_user_ids: list[int] = Field(default_factory=list, description="these users are Peel admins")
    # Off: a guild's Administrator permission alone does not make a Peel admin (admins see every prompt).
    guild_admins_are_peel_admins: bool = Field(
        default=False, description="a server's Administrator permission makes a Peel admin in that server"
    )

    # Batches.
    batch_max_items: int = Field(default=10_000, ge=1, description="images in one batch")
    batch_max_running_per_user: int = Field(default=2, ge=1, description="a user's batches running at once")
    batch_max_running_per_guild: int = Field(default=5, ge=1, description="a server's batches running at once")
    batch_max_items_per_guild: int = Field(
        default=50_000, ge=1, description="images of a server's unfinished batches together"
    )
    # About 1,000 images of 2 MB; raise it with the disk budget.
    batch_fetch_max_bytes: int = Field(
        default=2 * 1024**3, ge=1, description="the largest ZIP a /batch link or attachment may be, in bytes"
    )
    # Downloads (/batch links and attachments): at once per user and in all, and the bytes all of them may hold
    # on disk together (a download that would go over is refused). A server that sends nothing for
    # `fetch_idle_timeout_s`, or averages under `fetch_min_bytes_per_s` after `fetch_slow_grace_s`, loses its slot.
    fetch_max_per_user: int = Field(default=1, ge=1, description="/batch downloads at once per user")
    fetch_max_total: int = Field(default=4, ge=1, description="/batch downloads at once in all")
    fetch_disk_budget_bytes: int = Field(
        default=4 * 1024**3, ge=1, description="bytes all downloads may hold on disk together"
    )
    # 2 GiB at 1.7 MiB/s.
    fetch_timeout_s: float = Field(default=1200.0, gt=0, description="the longest one download may take")
    fetch_idle_timeout_s: float = Field(
        default=30.0, gt=0, description="a download that receives nothing for this long is stopped"
    )
    fetch_min_bytes_per_s: int = Field(
        default=256 * 1024, ge=0, description="a download slower than this on average (after the grace) is stopped"
    )
    fetch_slow_grace_s: float = Field(
        default=15.0, ge=0, description="how long a download may be slow before FETCH_MIN_BYTES_PER_S applies"
    )
    # Decoding runs without the GIL; each check may hold a 50 MB image and its decoded pixels, so more costs memory
    # on hostile uploads. 2 take in 1.3-1.5x the images/s of 1 on 2 cores (bench/intake_throughput.py).
    intake_parallel_checks: int = Field(default=2, ge=1, le=8, description="images of a batch ZIP checked at once")
    batch_plan_ttl_s: int = Field(
        default=24 * 3600, ge=60, description="a /batch plan neither started nor cancelled is forgotten after this"
    )
    batch_fetch_allowed_networks: list[str] = Field(
        default_factory=list,
        description='private networks /batch links may reach, e.g. ["10.0.0.0/8"]; empty: public addresses only',
    )
    # Discord allows 5 edits per 5 s per channel.
    batch_progress_interval_s: float = Field(
        default=5.0, ge=1.0, description="a batch's progress message is edited at most this often"
    )
    # Relax mode: Gemini's Batch API at half the price, usually within hours, at most 24 h (bot.core.batch.Speed).
    batch_default_speed: Speed = Field(
        default=Speed.FAST, description="how /batch runs when no speed is chosen: fast, or relax (half price, slower)"
    )
    relax_guilds: list[int] = Field(
        default_factory=list, description="servers whose /batch runs in relax unless fast is chosen, e.g. [123]"
    )
    batch_sample_size: int = Field(
        default=4,
        ge=0,
        le=100,
        description='the plan\'s "Try on N" runs this many images first, then offers "Start the rest"; 0 hides it',
    )

    # Budgets (bot.core.budgets): money caps in USD per day and month, and per-role gates; unset: no cap.
    # Admins change the caps per user, role or server (stored in the ledger over these defaults).
    budget_timezone: str = Field(
        default="UTC", description="where a budget day starts at midnight, an IANA zone: America/Los_Angeles"
    )
    budget_user_daily_usd: Decimal | None = Field(default=None, ge=0, description="what one user may spend a day")
    budget_user_monthly_usd: Decimal | None = Field(
        default=None, ge=0, description="what one user may spend a calendar month"
    )
    budget_guild_daily_usd: Decimal | None = Field(
        default=None, ge=0, description="what everyone in one server may spend together a day"
    )
    budget_guild_monthly_usd: Decimal | None = Field(
        default=None, ge=0, description="what everyone in one server may spend together a calendar month"
    )
    budget_roles: dict[int, RoleBudget] = Field(
        default_factory=dict,
        description='per role: {"123": {"daily": 5, "monthly": 50, "batch": true, "models": ["gemini-2.5-flash-image"],'
        ' "allow_4k": false, "max_batch_items": 500}}; a member of several gets the most generous',
    )

    # Group export: destination name → store URL (`s3://…`, `file://…`), and who may export.
    export_destinations: dict[str, str] = Field(
        default_factory=dict, description='group export targets, name → store URL: {"archive": "s3://bucket/x"}'
    )
    export_role_ids: list[int] = Field(
        default_factory=list, description="holders of these roles may export groups (admins always may)"
    )

    # Deployment checks (`python -m bot doctor`, and the start-up refusal of configurations that cannot work).
    storage_shared_with_workers: bool = Field(
        default=False,
        description="true when the RunPod endpoint's workers run on this machine and share its file store",
    )

    # Outages: how long jobs wait for an unreachable RunPod before their unsent images fail, and who is told.
    outage_fail_after_s: float = Field(
        default=600.0,
        gt=0,
        description="interactive jobs fail after RunPod or Gemini has been unreachable this long (nothing is charged)",
    )
    outage_fail_batch_after_s: float = Field(
        default=3600.0,
        gt=0,
        description="batches fail their unmade images after RunPod or Gemini has been unreachable this long",
    )
    admin_channel_id: int | None = Field(
        default=None,
        description="Discord channel where admins are told, once per incident, of outages and configuration errors",
    )

    @field_validator("budget_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as Europe/Paris") from exc
        return value

    def budget_config(self) -> BudgetConfig:
        """Return the budget caps and role rules of these settings (admins' overrides come from the ledger)."""
        return BudgetConfig(
            tz=ZoneInfo(self.budget_timezone),
            user=_caps(self.budget_user_daily_usd, self.budget_user_monthly_usd),
            guild=_caps(self.budget_guild_daily_usd, self.budget_guild_monthly_usd),
            roles={role: rule.rule() for role, rule in self.budget_roles.items()},
        )

    @model_validator(mode="after")
    def _runpod_is_all_or_nothing(self) -> "BotSettings":
        if (self.runpod_endpoint_id is None) != (self.runpod_api_key is None):
            raise ValueError("set both RUNPOD_ENDPOINT_ID and RUNPOD_API_KEY, or neither (embedded endpoint)")
        return self

    def deployment_problems(self, *, serves_users: bool = True) -> list[ConfigProblem]:
        """Return the configurations that can never work (bot.core.deployment), for the bot or the CLI."""
        return impossible_configurations(self.deployment_facts(serves_users=serves_users))

    def deployment_facts(self, *, serves_users: bool = True) -> DeploymentFacts:
        """Return what the deployment rules (bot.core.deployment) need to know of these settings."""
        return DeploymentFacts(
            discord_configured=not self.uses_playground,
            runpod_configured=not self.uses_local_runpod,
            runpod_base_url=self.runpod_api_base,
            storage_url=self.resolved_storage_url,
            storage_shared_with_workers=self.storage_shared_with_workers,
            public_base_url=self.public_base_url,
            gemini_base_url=self.gemini_base_url,
            export_destinations=self.export_destinations,
            serves_users=serves_users,
            gemini_configured=not self.uses_local_gemini,
            relax_by_default=self.batch_default_speed is Speed.RELAX or bool(self.relax_guilds),
        )

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


# Settings that the store reads itself when it opens (`storage.s3settings.S3Settings`, `STORAGE_*`) and the
# ZIP intake limits (`STORAGE_INTAKE_*`): neither class reads `.env` (a store opens inside the event loop, where a
# file read would block it), so the entry point copies them from `.env` into the environment first. The embedded
# workers inherit them with the rest of the environment, as a RunPod worker gets them from its endpoint.
STORAGE_ENV_PREFIX = "STORAGE_"


def export_storage_env(env_file: str | Path = ".env") -> list[str]:
    """Copy the `STORAGE_*` variables of `env_file` into `os.environ` where unset; return the names copied.

    The environment wins over the file, as it does for `BotSettings`.
    """
    copied = []
    for name, value in dotenv_values(env_file).items():
        if name.upper().startswith(STORAGE_ENV_PREFIX) and value is not None and name not in os.environ:
            os.environ[name] = value
            copied.append(name)
    return copied
