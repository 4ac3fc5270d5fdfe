"""What every job kind of the worker runs on: the RunPod job's shape, the dependencies `worker.__main__` builds once.

Kept apart from the handler so that each job kind's module (`worker.handler` for chunks, `worker.relax`) can use
them without importing the module that dispatches to it.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from storage import Store
from worker.contract import ChunkProgress, ItemResult
from worker.generation import GeminiFiles, ImageGenerator, ModelChecker, TextCaller
from worker.storecalls import StoreCalls

log = logging.getLogger(__name__)

RunpodJob = Mapping[str, Any]
"""The job dict the runpod SDK hands the handler: `{"id": …, "input": {…}, …}`."""

ProgressSink = Callable[[RunpodJob, dict[str, object]], None]
"""Sends one progress payload for a job (in production `runpod.serverless.progress_update`)."""


MAX_REPORTED_ERRORS = 5


def discard_progress(job: RunpodJob, payload: dict[str, object]) -> None:
    """Drop a progress payload (no platform to send it to, e.g. under `--test_input`)."""
    log.debug("progress of %s not sent (no platform): %s/%s", job.get("id"), payload.get("done"), payload.get("total"))


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerDeps:
    """What the handler needs, built once per worker process by `worker.__main__`.

    Attributes:
        store: where inputs are read and outputs written.
        generator: makes one image (the Gemini adapter in production).
        progress: sends a progress payload; `runpod.serverless.progress_update` in production.
        progress_interval_s: the minimum time between two progress updates of one job.
        progress_settle_s: how long after a progress update the handler waits before returning.
        max_reference_bytes: the largest reference image (or edit source) the worker reads.
        max_reference_pixels: the most pixels a reference image may have.
        clock: monotonic seconds, for throttling.
        sleep: awaits a number of seconds (injectable so unit tests do not sleep).
        store_attempts: tries of one store operation, the first included, while the store is unavailable.
        store_backoff_s: the first wait between two tries; it doubles per try (plus up to as much jitter).
        store_backoff_cap_s: the longest wait between two tries.
        model_checker: looks the self-test's models up with the worker's Gemini key; None reports each as OTHER.
        files: Gemini's Files API, for the relax job kinds (the Gemini adapter); None refuses them as CONFIG.
        text: one call of a text model, for the describe job kind (the Gemini adapter); None refuses it as CONFIG.
        relax_dir: where relax_prepare writes a part's JSONL before uploading it; None: the system's temp dir.
        relax_concurrency: result lines of a relax_collect held and written at once.
        max_result_line_bytes: the longest result line relax_collect reads; a longer one fails its item.
    """

    store: Store
    generator: ImageGenerator
    progress: ProgressSink = discard_progress
    progress_interval_s: float = 1.0
    progress_settle_s: float = 0.25
    max_reference_bytes: int = 20 * 1024 * 1024
    max_reference_pixels: int = 50_000_000
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    # 0.5 + 1 + 2 + 4 s (plus jitter): a blip or a restarting store is ridden out with the image kept; a longer
    # outage trips the chunk's breaker after ~8 s instead of holding every slot for it.
    store_attempts: int = 5
    store_backoff_s: float = 0.5
    store_backoff_cap_s: float = 5.0
    model_checker: ModelChecker | None = None  # answers the self-test's model checks (the Gemini adapter)
    files: GeminiFiles | None = None
    text: TextCaller | None = None
    relax_dir: str | None = None
    relax_concurrency: int = 4
    # A 4K PNG is ~20 MB, ~27 MB in base64: room for it and its answer's JSON, not for a runaway line.
    max_result_line_bytes: int = 64 * 1024 * 1024


def describe_validation_error(exc: ValidationError, *, limit: int = MAX_REPORTED_ERRORS) -> str:
    """Summarize a pydantic error by field path and reason, never echoing the input values (prompts, keys)."""
    parts = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(part) for part in error["loc"]) or "input"
        parts.append(f"{where}: {error['msg']}")
    if exc.error_count() > limit:
        parts.append(f"and {exc.error_count() - limit} more")
    return f"{exc.error_count()} invalid field(s): " + "; ".join(parts)


def store_calls(deps: WorkerDeps, job_id: str) -> StoreCalls:
    """Return the store as one job of `job_id` uses it, with `deps`' retry settings and limits."""
    return StoreCalls(
        store=deps.store,
        job_id=job_id,
        attempts=deps.store_attempts,
        backoff_s=deps.store_backoff_s,
        backoff_cap_s=deps.store_backoff_cap_s,
        sleep=deps.sleep,
        max_reference_bytes=deps.max_reference_bytes,
        max_reference_pixels=deps.max_reference_pixels,
    )


class ProgressPacer:
    """Sends one job's progress updates at most once per `progress_interval_s`, and lets the last one land.

    Each job kind decides when an update would say nothing (the last item, a chunk's last round); this keeps the
    pace, builds the `ChunkProgress` payload and never lets a failed update fail the job.
    """

    def __init__(self, deps: WorkerDeps, job: RunpodJob) -> None:
        self._deps = deps
        self._job = job
        self._last_at: float | None = None

    def send(self, done: int, total: int, results: Callable[[], list[ItemResult]]) -> None:
        """Send `results()` as progress unless one went out less than `progress_interval_s` ago."""
        now = self._deps.clock()
        if self._last_at is not None and now - self._last_at < self._deps.progress_interval_s:
            return
        self._last_at = now
        payload = ChunkProgress(done=done, total=total, results=results()).model_dump(mode="json", exclude_none=True)
        try:
            self._deps.progress(self._job, payload)
        except Exception:
            # Progress is advisory; losing one update must not fail the job.
            log.exception("progress update of job %s failed", self._job.get("id"))

    async def settle(self) -> None:
        """Wait until a recent update has had time to land before the result (runpod-python#250)."""
        if self._last_at is None:
            return
        wait_s = self._last_at + self._deps.progress_settle_s - self._deps.clock()
        if wait_s > 0:
            await self._deps.sleep(wait_s)
