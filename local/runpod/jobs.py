"""What the local endpoint knows of a job and of a worker process."""

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from bot.runpod.types import RemoteStatus


class Compact(str):
    """A finished job's output as compact JSON text: a tenth of the memory of the parsed objects."""

    __slots__ = ()


@dataclass(slots=True, kw_only=True)
class Job:
    """One submitted job: its input, RunPod policy, status and result, as `/status` reports them."""

    id: str
    input: dict[str, Any]
    execution_timeout_s: float
    ttl_s: float
    low_priority: bool
    submitted_at: float
    retention_s: float  # how long the result stays readable once final: 30 min after /run, 1 min after /runsync
    webhook: str | None = None
    status: RemoteStatus = RemoteStatus.IN_QUEUE
    worker_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    delay_ms: int | None = None
    execution_ms: int | None = None
    output: Any = None
    error: str | None = None
    retries: int = 0
    takes: int = 0
    stream: list[Any] = field(default_factory=list)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def body(self) -> dict[str, Any]:
        """Return the `/status` body of the job."""
        out: dict[str, Any] = {"id": self.id, "status": self.status.value}
        if self.delay_ms is not None:
            out["delayTime"] = self.delay_ms
        if self.execution_ms is not None:
            out["executionTime"] = self.execution_ms
        if self.output is not None:
            out["output"] = json.loads(self.output) if isinstance(self.output, Compact) else self.output
        if self.error is not None:
            out["error"] = self.error
        if self.retries:
            out["retries"] = self.retries
        if self.worker_id is not None:
            out["workerId"] = self.worker_id
        return out


@dataclass(slots=True, kw_only=True)
class WorkerInfo:
    """What the endpoint knows of one worker process (one generation of a worker slot)."""

    id: str
    slot: int | None
    pid: int | None = None
    alive: bool = True
    retiring: bool = False  # asked to stop (refresh or shutdown): gets no more jobs, its long-polls end
    ready: bool = False
    taking: bool = False  # in a job-take long-poll now
    jobs: set[str] = field(default_factory=set)
    last_ping_at: float | None = None
    runpod_version: str | None = None
    stop: set[str] = field(default_factory=set)
    stop_wake: asyncio.Event = field(default_factory=asyncio.Event)
    proc: asyncio.subprocess.Process | None = None
