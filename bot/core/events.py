"""What the dispatcher tells its listeners (the Discord layer, the CLI): one frozen dataclass per event."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.core.budgets import Refused
from bot.core.models import ImageId, Job, UserId


@dataclass(frozen=True, slots=True, kw_only=True)
class Queued:
    """A job was accepted and waits for its first chunk; `position` is its place in line (None: over the cap)."""

    job: Job
    position: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionChanged:
    """A job that has not started yet moved in line."""

    job: Job
    position: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Started:
    """A job's first chunk was submitted."""

    job: Job


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """Some items of a job finished (made, or failed for good), or failed and went back for another attempt."""

    job: Job
    done: int
    failed: int
    total: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageReady:
    """One image of a job is in the store."""

    job: Job
    index: int
    key: str
    image_id: ImageId


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSummary:
    """How a finished job went; `errors` counts failed items by error code."""

    ok: int
    failed: int
    cancelled: int
    total: int
    errors: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFinished:
    """Every item of a job is made or failed for good, and at least one was made (or the job was empty)."""

    job: Job
    summary: JobSummary


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFailed:
    """No item of a job could be made; `reason` is short and user-facing."""

    job: Job
    reason: str
    summary: JobSummary


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCancelled:
    """A job was cancelled by `by`."""

    job: Job
    by: UserId


@dataclass(frozen=True, slots=True, kw_only=True)
class JobPaused:
    """A batch was paused: no new chunks until resumed; `budget` names the money cap it reached, if that was why."""

    job: Job
    budget: Refused | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobResumed:
    """A paused batch was resumed."""

    job: Job


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceDown:
    """An outside service (`runpod`) stopped answering at `since`; `reason` is the operator's detail, not the user's.

    Every waiting or running job is delayed until `ServiceRestored`; published once per outage.
    """

    service: str
    since: datetime
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceRestored:
    """An outside service answers again after an outage or a configuration error; published once per incident."""

    service: str
    down_for: timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigError:
    """An outside service refused Peel's configuration (a key, an endpoint id, a model): only an operator can fix it.

    `code` is short (`RUNPOD_AUTH`, `RUNPOD_ENDPOINT`, `GEMINI_CONFIG`); `detail` says what was refused and `fix`
    what to change. Published once per incident.
    """

    service: str
    code: str
    detail: str
    fix: str


ServiceEvent = ServiceDown | ServiceRestored | ConfigError

Event = (
    Queued
    | PositionChanged
    | Started
    | Progress
    | ImageReady
    | JobFinished
    | JobFailed
    | JobCancelled
    | JobPaused
    | JobResumed
    | ServiceDown
    | ServiceRestored
    | ConfigError
)
