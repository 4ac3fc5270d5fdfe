"""`MemoryRunpod`: an in-memory `RunpodGateway` whose jobs move only when a test says so.

A test submits through the dispatcher, then plays the worker: `finish(id)` writes every item's output to the store
and completes the job with a manifest; `progress`, `fail`, `time_out`, `forget` (404 after retention),
`finish(..., manifest=False)` and per-item `errors` script the other endings. It tracks the concurrency of jobs not
yet final, so tests can assert the Gemini budget was never exceeded.
"""

import zlib
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.runpod.types import EndpointHealth, RemoteJob, RemoteStatus
from storage.memory import MemoryStore
from worker.contract import (
    ChunkInput,
    ChunkProgress,
    ChunkResult,
    ErrorCode,
    ItemError,
    ItemOk,
    ItemResult,
    TokenUsage,
)

if TYPE_CHECKING:
    from bot.runpod.errors import RunpodError


def png_bytes(width: int = 64, height: int = 48) -> bytes:
    """Return a PNG signature and IHDR chunk (enough for a header check; not a decodable image)."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + len(ihdr).to_bytes(4, "big") + chunk + zlib.crc32(chunk).to_bytes(4, "big")


@dataclass
class FakeJob:
    """One RunPod job as the fake holds it."""

    id: str
    input: ChunkInput
    execution_timeout_ms: int | None
    ttl_ms: int | None
    low_priority: bool
    status: RemoteStatus = RemoteStatus.IN_QUEUE
    progress: dict[str, object] | None = None
    result: dict[str, object] | None = None
    error: str | None = None
    forgotten: bool = False
    execution_ms: int | None = None  # what /status reports as executionTime once the job ran
    results: list[ItemResult] = field(default_factory=list)

    @property
    def indices(self) -> list[int]:
        return [item.index for item in self.input.items]

    @property
    def is_final(self) -> bool:
        return self.forgotten or self.status.is_final


class MemoryRunpod:
    """An in-memory RunPod endpoint; implements `RunpodGateway`."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.jobs: dict[str, FakeJob] = {}
        self.cancelled: list[str] = []
        self.run_errors: deque[RunpodError] = deque()
        self.status_calls = 0
        self.max_in_flight_concurrency = 0
        self._next = 0

    # ---- the port ----

    async def run(
        self,
        payload: Mapping[str, object],
        *,
        execution_timeout_ms: int | None = None,
        ttl_ms: int | None = None,
        low_priority: bool = False,
    ) -> RemoteJob:
        if self.run_errors:
            raise self.run_errors.popleft()
        self._next += 1
        job = FakeJob(
            id=f"rp-{self._next}",
            input=ChunkInput.model_validate(payload),
            execution_timeout_ms=execution_timeout_ms,
            ttl_ms=ttl_ms,
            low_priority=low_priority,
        )
        self.jobs[job.id] = job
        self.max_in_flight_concurrency = max(self.max_in_flight_concurrency, self.in_flight_concurrency())
        return self._remote(job)

    async def status(self, job_id: str) -> RemoteJob:
        self.status_calls += 1
        job = self.jobs.get(job_id)
        if job is None or job.forgotten:
            return RemoteJob(id=job_id, status=RemoteStatus.NOT_FOUND)
        return self._remote(job)

    async def cancel(self, job_id: str) -> RemoteJob:
        self.cancelled.append(job_id)
        job = self.jobs[job_id]
        if not job.is_final:
            job.status = RemoteStatus.CANCELLED
        # RunPod's /cancel answers the id and status only; /status tells the rest, executionTime included
        # (https://docs.runpod.io/serverless/endpoints/operation-reference).
        return RemoteJob(id=job.id, status=job.status)

    async def health(self, *, once: bool = False) -> EndpointHealth:
        return EndpointHealth(jobs={"inQueue": len(self.active())}, workers={})

    async def purge_queue(self) -> int:
        return 0

    # ---- inspection ----

    def active(self) -> list[FakeJob]:
        """Jobs not final yet, in submission order."""
        return [job for job in self.jobs.values() if not job.is_final]

    def in_flight_concurrency(self) -> int:
        return sum(job.input.concurrency for job in self.active())

    def submitted_job_ids(self) -> list[str]:
        """The Peel job id of every RunPod job, in submission order."""
        return [job.input.job_id for job in self.jobs.values()]

    # ---- playing the worker ----

    async def _make(self, job: FakeJob, index: int) -> ItemOk:
        item = next(i for i in job.input.items if i.index == index)
        await self.store.put(item.output_key, png_bytes(), content_type="image/png")
        return ItemOk(index=index, key=item.output_key, width=64, height=48)

    @staticmethod
    def _error(index: int, code: ErrorCode) -> ItemError:
        return ItemError(index=index, code=code, message=f"scripted {code}", retryable=code.is_retryable)

    async def progress(
        self, job_id: str, done: Collection[int], *, errors: Mapping[int, ErrorCode] | None = None
    ) -> None:
        """Make items `done` (and fail `errors`) and report them as progress; the job stays IN_PROGRESS."""
        job = self.jobs[job_id]
        for index in done:
            job.results.append(await self._make(job, index))
        for index, code in (errors or {}).items():
            job.results.append(self._error(index, code))
        job.status = RemoteStatus.IN_PROGRESS
        report = ChunkProgress(done=len(job.results), total=len(job.input.items), results=list(job.results))
        job.progress = report.model_dump(mode="json")

    async def finish(
        self,
        job_id: str,
        *,
        errors: Mapping[int, ErrorCode] | None = None,
        skip: Collection[int] = (),
        manifest: bool = True,
        execution_ms: int | None = None,
        usage: TokenUsage | None = None,
    ) -> None:
        """Complete the job: items not in `errors` or `skip` are made; `skip` ones are neither made nor reported.

        `usage`, when given, is reported for each item made, as a worker reports what Gemini billed.
        """
        job = self.jobs[job_id]
        job.execution_ms = execution_ms
        errors = errors or {}
        seen = {r.index for r in job.results}
        for index in job.indices:
            if index in seen or index in skip:
                continue
            if index in errors:
                job.results.append(self._error(index, errors[index]))
            else:
                job.results.append((await self._make(job, index)).model_copy(update={"usage": usage}))
        job.status = RemoteStatus.COMPLETED
        if manifest:
            ok = sum(1 for r in job.results if isinstance(r, ItemOk))
            job.result = ChunkResult(ok=ok, failed=len(job.results) - ok, results=list(job.results)).to_payload()

    async def fail(self, job_id: str, error: str = "UPSTREAM: worker crashed", *, made: Collection[int] = ()) -> None:
        """End the job FAILED with a top-level error, after making items `made`."""
        job = self.jobs[job_id]
        for index in made:
            await self._make(job, index)
        job.status, job.error = RemoteStatus.FAILED, error

    async def time_out(self, job_id: str, *, made: Collection[int] = ()) -> None:
        """End the job TIMED_OUT after making items `made`."""
        job = self.jobs[job_id]
        for index in made:
            await self._make(job, index)
        job.status = RemoteStatus.TIMED_OUT

    async def forget(self, job_id: str, *, made: Collection[int] = ()) -> None:
        """Make items `made`, then answer 404 for the job from now on (RunPod's retention ran out)."""
        job = self.jobs[job_id]
        for index in made:
            await self._make(job, index)
        job.forgotten = True

    async def finish_all(self) -> int:
        """Complete every active job with all its items made; return how many."""
        active = self.active()
        for job in active:
            await self.finish(job.id)
        return len(active)

    @staticmethod
    def _remote(job: FakeJob) -> RemoteJob:
        return RemoteJob(
            id=job.id,
            status=job.status,
            progress=job.progress,
            result=job.result,
            error=job.error,
            execution_ms=job.execution_ms,
        )
