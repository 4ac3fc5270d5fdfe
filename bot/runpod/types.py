"""The bot's view of a RunPod Serverless endpoint: typed statuses and the `RunpodGateway` port.

The dispatcher depends on this port only; `bot.runpod.client.RunpodHttpGateway` implements it over RunPod's REST
API v2 (production and the local endpoint alike), and unit tests use an in-memory fake.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class RemoteStatus(StrEnum):
    """A RunPod job's status; NOT_FOUND stands for the 404 RunPod answers once it has forgotten a job."""

    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"
    NOT_FOUND = "NOT_FOUND"

    @property
    def is_final(self) -> bool:
        """Tell whether the job can change no more."""
        return self not in (RemoteStatus.IN_QUEUE, RemoteStatus.IN_PROGRESS)


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteJob:
    """One `/status` (or `/run`, `/cancel`) answer, parsed.

    `progress` is the last `progress_update` payload while IN_PROGRESS (`{"type": "progress", ...}`); `result` is the
    worker's final manifest (`{"type": "result", ...}`) once COMPLETED, or None when COMPLETED came without one;
    `error` is the worker's top-level error string (e.g. `"BAD_INPUT: ..."`) or RunPod's own.
    """

    id: str
    status: RemoteStatus
    progress: Mapping[str, object] | None = None
    result: Mapping[str, object] | None = None
    error: str | None = None
    delay_ms: int | None = None
    execution_ms: int | None = None
    retries: int = 0  # how many times RunPod put the job back in its queue (a worker died, or /retry)
    raw: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointHealth:
    """`/health`: job counts and worker counts."""

    jobs: Mapping[str, int]
    workers: Mapping[str, int]


class RunpodGateway(Protocol):
    """What the dispatcher needs of a RunPod Serverless endpoint."""

    async def run(
        self,
        payload: Mapping[str, object],
        *,
        execution_timeout_ms: int | None = None,
        ttl_ms: int | None = None,
        low_priority: bool = False,
    ) -> RemoteJob:
        """Queue a job whose `input` is `payload`; return its id and first status."""
        ...

    async def status(self, job_id: str) -> RemoteJob:
        """Return the job's current status (NOT_FOUND once RunPod has forgotten it)."""
        ...

    async def cancel(self, job_id: str) -> RemoteJob:
        """Cancel a queued or running job."""
        ...

    async def health(self, *, once: bool = False) -> EndpointHealth:
        """Return the endpoint's job and worker counts."""
        ...

    async def purge_queue(self) -> int:
        """Remove every queued job; return how many were removed."""
        ...
