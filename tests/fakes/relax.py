"""Fakes for relax mode: `RelaxRunpod` (an in-memory RunPod that also takes relax_prepare / relax_collect jobs) and
`MemoryBatches` (Gemini's Batch API as the dispatcher sees it), both moved only when a test says so.

A test plays the worker and Gemini: `prepare(id)` answers a prepare job with an uploaded file, `gemini.run(name)` /
`gemini.succeed(name)` / `gemini.end(name, state)` move a batch, `collect(id)` writes the outputs and answers the
manifest. Everything is counted, so a test can assert that a batch was created once and no image was made twice.
"""

import itertools
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.core.relax import BatchCounts
from bot.gemini.types import BatchInfo, GeminiBatchError, GeminiProblem
from bot.runpod.types import RemoteJob, RemoteStatus
from tests.fakes.gateway import MemoryRunpod, png_bytes
from worker.contract import (
    ChunkResult,
    ErrorCode,
    ItemError,
    ItemOk,
    ItemResult,
    RelaxCollectInput,
    RelaxPrepareInput,
    RelaxPrepareResult,
    TokenUsage,
)


@dataclass
class RelaxJob:
    """A relax_prepare or relax_collect RunPod job as the fake holds it."""

    id: str
    input: RelaxPrepareInput | RelaxCollectInput
    status: RemoteStatus = RemoteStatus.IN_QUEUE
    output: dict[str, object] | None = None
    error: str | None = None
    forgotten: bool = False
    execution_ms: int | None = None  # what /status reports as executionTime once the job ran


class RelaxRunpod(MemoryRunpod):
    """`MemoryRunpod` that also takes relax jobs (chunks go to the parent as before)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.relax: dict[str, RelaxJob] = {}
        self.made: Counter[str] = Counter()  # output key -> times written by a collect
        self._files = itertools.count(1)

    async def run(self, payload: Mapping[str, object], **kwargs: object) -> RemoteJob:
        kind = payload.get("kind")
        if kind not in ("relax_prepare", "relax_collect"):
            return await super().run(payload, **kwargs)  # type: ignore[arg-type]
        if self.run_errors:
            raise self.run_errors.popleft()
        self._next += 1
        parsed = (RelaxPrepareInput if kind == "relax_prepare" else RelaxCollectInput).model_validate(payload)
        job = RelaxJob(id=f"rx-{self._next}", input=parsed)
        self.relax[job.id] = job
        return self._relax_remote(job)

    async def status(self, job_id: str) -> RemoteJob:
        job = self.relax.get(job_id)
        if job is None:
            return await super().status(job_id)
        if job.forgotten:
            return RemoteJob(id=job_id, status=RemoteStatus.NOT_FOUND)
        return self._relax_remote(job)

    async def cancel(self, job_id: str) -> RemoteJob:
        job = self.relax.get(job_id)
        if job is None:
            return await super().cancel(job_id)
        self.cancelled.append(job_id)
        if not job.status.is_final:
            job.status = RemoteStatus.CANCELLED
        return self._relax_remote(job)

    @staticmethod
    def _relax_remote(job: RelaxJob) -> RemoteJob:
        result = job.output if job.output is not None and job.output.get("type") == "result" else None
        raw: dict[str, object] = {"id": job.id, "status": job.status.value}
        if job.output is not None:
            raw["output"] = job.output
        return RemoteJob(
            id=job.id, status=job.status, result=result, error=job.error, raw=raw, execution_ms=job.execution_ms
        )

    # ---- inspection ----

    def open_relax(self, kind: str) -> list[RelaxJob]:
        """Relax jobs of one kind not final yet, in submission order."""
        return [j for j in self.relax.values() if j.input.kind == kind and not j.status.is_final and not j.forgotten]

    # ---- playing the worker ----

    def prepare(
        self,
        job_id: str,
        *,
        errors: Mapping[int, ErrorCode] | None = None,
        left_out: Collection[int] = (),
        execution_ms: int | None = None,
    ) -> str:
        """Answer a prepare job: every item but `errors` and `left_out` goes in a new file; return its name."""
        job = self.relax[job_id]
        job.execution_ms = execution_ms
        assert isinstance(job.input, RelaxPrepareInput)
        errors = errors or {}
        included = [i.index for i in job.input.items if i.index not in errors and i.index not in left_out]
        name = f"files/req-{next(self._files)}"
        results = [
            ItemError(index=i, code=c, message=f"scripted {c}", retryable=c.is_retryable) for i, c in errors.items()
        ]
        job.output = RelaxPrepareResult(
            file_name=name if included else None, included=included, results=results, file_bytes=100 * len(included)
        ).to_payload()
        job.status = RemoteStatus.COMPLETED
        return name

    async def collect(
        self,
        job_id: str,
        *,
        errors: Mapping[int, ErrorCode] | None = None,
        usage: TokenUsage | None = None,
        execution_ms: int | None = None,
    ) -> None:
        """Answer a collect job: every item not in `errors` is written to its output key and reported made (with
        `usage` when given, as a worker reports Gemini's)."""
        job = self.relax[job_id]
        job.execution_ms = execution_ms
        assert isinstance(job.input, RelaxCollectInput)
        errors = errors or {}
        results: list[ItemResult] = []
        for item in job.input.items:
            if item.index in errors:
                code = errors[item.index]
                results.append(ItemError(index=item.index, code=code, message="scripted", retryable=code.is_retryable))
                continue
            skipped = await self.store.head(item.output_key) is not None
            if not skipped:
                await self.store.put(item.output_key, png_bytes(), content_type="image/png")
                self.made[item.output_key] += 1
            billed = None if skipped else usage
            results.append(
                ItemOk(index=item.index, key=item.output_key, width=64, height=48, skipped=skipped, usage=billed)
            )
        ok = sum(1 for r in results if isinstance(r, ItemOk))
        job.output = ChunkResult(ok=ok, failed=len(results) - ok, results=results).to_payload()
        job.status = RemoteStatus.COMPLETED

    def fail(  # type: ignore[override]
        self, job_id: str, error: str = "UPSTREAM: worker crashed", *, execution_ms: int | None = None
    ) -> None:
        """End a relax job FAILED without an answer (a chunk's `fail` is the parent's, async)."""
        job = self.relax[job_id]
        job.status, job.error, job.execution_ms = RemoteStatus.FAILED, error, execution_ms

    def forget_relax(self, job_id: str) -> None:
        """Answer 404 for a relax job from now on (an embedded endpoint that died with the bot)."""
        self.relax[job_id].forgotten = True


@dataclass
class FakeBatch:
    """A Gemini batch job as the fake holds it."""

    info: BatchInfo
    file_name: str
    model: str
    cancelled: bool = False


@dataclass
class MemoryBatches:
    """Gemini's Batch API as `bot.gemini.types.GeminiBatches`; batches move only when a test says so."""

    batches: dict[str, FakeBatch] = field(default_factory=dict)
    created: Counter[str] = field(default_factory=Counter)  # display name -> batches created with it
    deleted_files: list[str] = field(default_factory=list)
    deleted_batches: list[str] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    fail_next: list[GeminiBatchError] = field(default_factory=list)
    _ids: "itertools.count[int]" = field(default_factory=lambda: itertools.count(1))

    def _maybe_fail(self, what: str) -> None:
        self.calls[what] += 1
        if self.fail_next:
            raise self.fail_next.pop(0)

    async def find(self, display_name: str) -> BatchInfo | None:
        self._maybe_fail("list")
        return next((b.info for b in self.batches.values() if b.info.display_name == display_name), None)

    async def create(self, *, model: str, file_name: str, display_name: str) -> BatchInfo:
        self._maybe_fail("create")
        name = f"batches/b{next(self._ids)}"
        info = BatchInfo(name=name, display_name=display_name, state="JOB_STATE_PENDING", create_time=datetime.now(UTC))
        self.batches[name] = FakeBatch(info=info, file_name=file_name, model=model)
        self.created[display_name] += 1
        return info

    async def get(self, name: str) -> BatchInfo:
        self._maybe_fail("get")
        batch = self.batches.get(name)
        if batch is None:
            raise GeminiBatchError(GeminiProblem.NOT_FOUND, f"{name} not found", status=404)
        return batch.info

    async def cancel(self, name: str) -> None:
        self._maybe_fail("cancel")
        batch = self.batches[name]
        batch.cancelled = True
        self._set(name, state="JOB_STATE_CANCELLED")

    async def delete_file(self, name: str) -> None:
        self.calls["delete_file"] += 1
        self.deleted_files.append(name)

    async def delete(self, name: str) -> None:
        self.calls["delete"] += 1
        self.deleted_batches.append(name)

    # ---- playing Gemini ----

    def by_display_name(self, display_name: str) -> FakeBatch:
        return next(b for b in self.batches.values() if b.info.display_name == display_name)

    def _set(self, name: str, **changes: object) -> None:
        info = self.batches[name].info
        self.batches[name].info = BatchInfo(**{**{f: getattr(info, f) for f in BatchInfo.__slots__}, **changes})

    def run(self, name: str, *, succeeded: int = 0, requests: int = 0) -> None:
        self._set(name, state="JOB_STATE_RUNNING", counts=BatchCounts(requests=requests, succeeded=succeeded))

    def succeed(self, name: str, *, requests: int = 0) -> str:
        result = f"files/res-{name.removeprefix('batches/')}"
        self._set(
            name,
            state="JOB_STATE_SUCCEEDED",
            result_file=result,
            counts=BatchCounts(requests=requests, succeeded=requests),
        )
        return result

    def end(self, name: str, state: str, error: str | None = None) -> None:
        self._set(name, state=state, error=error)
