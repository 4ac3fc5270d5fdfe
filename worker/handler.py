"""The RunPod handler: validate a chunk → generate its items concurrently → write PNGs → return the manifest.

`make_handler(deps)` returns the async handler `runpod.serverless.start` runs. One call handles one chunk
(docs/architecture.md, "The bot ⇄ worker contract"):

* `job["input"]` is validated as `ChunkInput`; an unusable input returns `{"error": "BAD_INPUT: …"}` (RunPod marks
  the job FAILED), naming the fields that are wrong.
* Items run concurrently, at most `input.concurrency` Gemini calls at a time; up to as many more items get ready
  meanwhile (output checked, references read), so a slot is free for the next call as soon as a PNG is stored.
  An item whose `output_key` already holds a PNG is reported as done (`skipped`) without calling Gemini, so a
  re-run chunk costs nothing twice.
* Reference images and edit sources are read from the store once per chunk, however many items share them; a
  missing or invalid one fails only the items that use it (BAD_INPUT).
* Every output is stored as a PNG with prompt, seed, model and job id in its text chunks.
* Per-item failures (safety blocks, rate limits, …) stay inside `results`; the job still completes.
* A store operation that fails as unavailable is retried with jittered exponential backoff, a PNG write keeping
  the image Gemini made (a store hiccup never costs a second call). Once one exhausts its retries the store is
  taken as down for the rest of the chunk (a circuit breaker): items not yet sent to Gemini end with the
  retryable `STORAGE` code without a call, so an outage costs at most the calls already in flight, and the bot
  retries those items later with backoff.
* Progress goes out at most once per `progress_interval_s`, never for the last item nor, in a chunk of several
  rounds, during its last round (all that is left is in flight), and the handler lets a
  recent progress update settle before it returns: RunPod's progress POST is fire-and-forget from a thread and can
  otherwise overtake the final result (runpod-python#250).
* A self-test input (`{"kind": "selftest", …}`, `SelfTestInput`) is answered by `run_selftest` instead: the
  worker reads the object the bot wrote, writes one for the bot to read back and looks up each model with its
  Gemini key, so `python -m bot doctor` proves the deployed image, its store and its key in one job.
* Right before each Gemini call the worker looks for the job's stop marker (`worker.contract.stop_key`, one
  HEAD: on S3 about $0.0004 per 1,000 calls, against cents per image). Once it is there (the bot paused or
  cancelled the job) no call starts: the items not yet sent end `STOPPED` without a call, the calls in flight
  finish and are stored, and the chunk returns at once. So a pause holds within the calls in flight at that
  moment whatever the chunk sizes, and does not wait for RunPod's `/cancel` to reach a busy worker.
* `asyncio.CancelledError` (RunPod's cancel and executionTimeout) propagates: the item tasks are cancelled and
  awaited, and stores write atomically, so nothing half-written is left behind.
"""

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from storage import ObjectNotFoundError, StorageError
from worker.contract import (
    DESCRIBE_KIND,
    RELAX_COLLECT_KIND,
    RELAX_PREPARE_KIND,
    SELFTEST_KIND,
    ChunkInput,
    ChunkItem,
    ChunkResult,
    ErrorCode,
    ItemError,
    ItemOk,
    ItemResult,
    ModelCheck,
    ModelProblem,
    SelfTestInput,
    SelfTestResult,
    add_usage,
    stop_key,
)
from worker.deps import (
    MAX_REPORTED_ERRORS,
    ProgressPacer,
    RunpodJob,
    WorkerDeps,
    describe_validation_error,
    discard_progress,
    store_calls,
)
from worker.describe import run_describe
from worker.errors import GenerationError, InputError, WorkerError
from worker.generation import GenerationRequest, InputImage
from worker.images import ImageDecodeError, finish_png
from worker.region import composite_region, mark_region
from worker.relax import run_relax_collect, run_relax_prepare
from worker.storecalls import STORE_DOWN

log = logging.getLogger(__name__)

Handler = Callable[[RunpodJob], Awaitable[dict[str, object]]]


def parse_chunk(job: RunpodJob) -> ChunkInput:
    """Validate `job["input"]` as a chunk, including the rules pydantic cannot see (unique indices and keys).

    Raises:
        InputError: the input is missing or invalid; the message names the fields.
    """
    raw = job.get("input")
    if not isinstance(raw, dict):
        raise InputError(f"input: expected a JSON object with the chunk, got {type(raw).__name__}")
    try:
        chunk = ChunkInput.model_validate(raw)
    except ValidationError as exc:
        raise InputError(describe_validation_error(exc)) from exc
    for field, values in (
        ("index", Counter(str(item.index) for item in chunk.items)),
        ("output_key", Counter(item.output_key for item in chunk.items)),
    ):
        duplicates = sorted(value for value, count in values.items() if count > 1)
        if duplicates:
            raise InputError(f"items.{field}: duplicate value(s) {', '.join(duplicates[:MAX_REPORTED_ERRORS])}")
    return chunk


def make_handler(deps: WorkerDeps) -> Handler:
    """Return the async RunPod handler that runs one chunk with `deps`."""

    async def handler(job: RunpodJob) -> dict[str, object]:
        job_id = str(job.get("id", "?"))
        raw = job.get("input")
        kind = raw.get("kind") if isinstance(raw, dict) else None
        if kind == SELFTEST_KIND:
            return await run_selftest(deps, job)
        if kind == RELAX_PREPARE_KIND:
            return await run_relax_prepare(deps, job)
        if kind == RELAX_COLLECT_KIND:
            return await run_relax_collect(deps, job)
        try:
            chunk = parse_chunk(job)
            log.info(
                "job %s: chunk %d of %s, %d item(s), concurrency %d",
                job_id,
                chunk.chunk,
                chunk.job_id,
                len(chunk.items),
                chunk.concurrency,
                extra={"job_id": chunk.job_id, "action": "claim"},
            )
            if chunk.kind == DESCRIBE_KIND:
                result = await run_describe(deps, job, chunk)
            else:
                result = await _ChunkRun(deps, job, chunk).run()
        except WorkerError as exc:
            log.warning("job %s failed: %s: %s", job_id, exc.code, exc.message, extra={"action": "fail"})
            return {"error": f"{exc.code}: {exc.message}"}
        except asyncio.CancelledError:
            log.info("job %s stopped", job_id, extra={"action": "cancel"})
            raise
        log.info(
            "job %s: %d ok, %d failed", job_id, result.ok, result.failed, extra={"job_id": job_id, "action": "succeed"}
        )
        return result.to_payload()

    return handler


_STOPPED = "the job was paused or cancelled before this item's Gemini call"


async def run_selftest(deps: WorkerDeps, job: RunpodJob) -> dict[str, object]:
    """Answer a self-test job (`python -m bot doctor`): read the bot's object, write one back, check each model.

    Every step is reported, not raised: the bot wants to see all that fails at once. Store errors are named by
    their type only (their text may hold paths or endpoints); an unusable input is BAD_INPUT as for a chunk.
    """
    try:
        test = SelfTestInput.model_validate(job.get("input"))
    except ValidationError as exc:
        return {"error": f"{ErrorCode.BAD_INPUT}: {describe_validation_error(exc)}"}
    log.info("job %s: self-test, %d model(s)", job.get("id", "?"), len(test.models), extra={"action": "claim"})
    read_text: str | None = None
    read_error: str | None = None
    try:
        read_text = (await deps.store.get_bytes(test.read_key)).decode("utf-8", "replace")[:200]
    except ObjectNotFoundError:
        read_error = f"{test.read_key} is not in the worker's store"
    except Exception as exc:  # noqa: BLE001 - reported to the bot, which names the fix
        read_error = f"reading {test.read_key} failed: {type(exc).__name__}"
    write_error: str | None = None
    try:
        await deps.store.put(test.write_key, test.write_text.encode(), content_type="text/plain")
    except Exception as exc:  # noqa: BLE001 - reported to the bot, which names the fix
        write_error = f"writing {test.write_key} failed: {type(exc).__name__}"
    checker = deps.model_checker
    if checker is None:
        models = [
            ModelCheck(model=m, problem=ModelProblem.OTHER, detail="this worker has no Gemini client")
            for m in test.models
        ]
    else:
        models = list(await asyncio.gather(*(checker.check_model(model) for model in test.models)))
    return SelfTestResult(
        read_text=read_text,
        read_error=read_error,
        wrote=write_error is None,
        write_error=write_error,
        models=models,
    ).to_payload()


class _ChunkRun:
    """The state of one chunk while it runs: results so far, the reference cache, progress throttling."""

    def __init__(self, deps: WorkerDeps, job: RunpodJob, chunk: ChunkInput) -> None:
        self._deps = deps
        self._job = job
        self._chunk = chunk
        self._slots = asyncio.Semaphore(chunk.concurrency)
        # Items are prepared (output checked, references read) while others hold the slots, at most this many
        # ahead, so a slot is only the Gemini call and the write of its PNG: those are what the budget counts.
        self._preparing = asyncio.Semaphore(chunk.concurrency)
        self._results: dict[int, ItemResult] = {}
        # Per chunk, a reference is read once however many items share it: a loaded image, or why it is unusable.
        self._images: dict[str, InputImage | str] = {}
        self._image_locks: dict[str, asyncio.Lock] = {}
        self._progress = ProgressPacer(deps, job)
        # The store's circuit breaker lives in `StoreCalls`: once open, items not yet called end STORAGE.
        self._calls = store_calls(deps, chunk.job_id)
        # Set once the job's stop marker was seen: the marker is only deleted on resume, which sends new chunks,
        # so this chunk never needs to look again.
        self._stopped = False

    async def run(self) -> ChunkResult:
        try:
            async with asyncio.TaskGroup() as group:
                for item in self._chunk.items:
                    group.create_task(self._run_item(item), name=f"item-{item.index}")
        except BaseExceptionGroup as failures:
            # A bug in one item: the others are cancelled; raise the bug itself so RunPod records its traceback.
            raise failures.exceptions[0]  # noqa: B904  (the group is the context, which is what we want)
        await self._let_progress_settle()
        results = [self._results[item.index] for item in self._chunk.items]
        ok = sum(1 for r in results if isinstance(r, ItemOk))
        return ChunkResult(ok=ok, failed=len(results) - ok, results=results)

    async def _run_item(self, item: ChunkItem) -> None:
        try:
            async with self._preparing:  # held until the item has a slot: at most `concurrency` wait ready
                prepared = await self._prepare(item)
                if isinstance(prepared, GenerationRequest):
                    await self._slots.acquire()
            if isinstance(prepared, ItemOk):
                result: ItemResult = prepared
            else:
                # A slot is held from the call to the stored PNG: an image Gemini made is never left unwritten
                # while the next call starts, so a worker killed mid-chunk loses at most the calls in flight.
                try:
                    result = await self._make(item, prepared)
                finally:
                    self._slots.release()
        except WorkerError as exc:
            log.log(
                logging.DEBUG if exc.code is ErrorCode.STOPPED else logging.WARNING,  # one line per chunk says it
                "item %d of %s failed: %s: %s",
                item.index,
                self._chunk.job_id,
                exc.code,
                exc.message,
                extra={"job_id": self._chunk.job_id, "action": "fail"},
            )
            result = ItemError(
                index=item.index,
                code=exc.code,
                message=exc.message,
                retryable=exc.retryable,
                usage=exc.usage if isinstance(exc, GenerationError) else None,
            )
        self._results[item.index] = result
        self._maybe_send_progress()

    async def _prepare(self, item: ChunkItem) -> ItemOk | GenerationRequest:
        """Return the item as done when its output is already stored, else the request that makes it."""
        existing = await self._existing(item)
        if existing is not None:
            return existing
        references = tuple([await self._image(key, "reference image") for key in item.ref_keys])
        source = await self._image(item.edit.source_key, "edit source") if item.edit else None
        if item.region is not None and source is not None:
            marked = await asyncio.to_thread(mark_region, source.data, item.region)
            references = (InputImage(data=marked, mime_type="image/png"), *references)
        return GenerationRequest(
            model=self._chunk.model,
            prompt=item.prompt,
            references=references,
            aspect_ratio=item.aspect_ratio,
            image_size=item.image_size,
            seed=item.seed,
            edit_source=source,
            history=tuple(item.edit.history) if item.edit else (),
            region=item.region,
        )

    async def _make(self, item: ChunkItem, request: GenerationRequest) -> ItemOk:
        if self._calls.down:
            raise GenerationError(ErrorCode.STORAGE, STORE_DOWN)  # its image could not be written: don't pay
        if await self._stop_requested():
            raise GenerationError(ErrorCode.STOPPED, _STOPPED)
        log.debug("item %d: generating %r", item.index, item.prompt[:80])
        generated = await self._deps.generator.generate(request)
        try:
            try:
                data, mime = generated.data, generated.mime_type
                if request.region is not None and request.edit_source is not None:
                    # Only the region comes from the answer: nothing outside it may change (`worker.region`).
                    data = await asyncio.to_thread(composite_region, request.edit_source.data, data, request.region)
                    mime = "image/png"
                png = await asyncio.to_thread(finish_png, data, mime, self._metadata(item))
            except ImageDecodeError as exc:
                log.warning("item %d: the model's image could not be decoded: %s", item.index, exc)
                raise GenerationError(ErrorCode.NO_IMAGE, "the model's image could not be decoded") from exc
            if png.converted_from:
                log.debug("item %d: converted %s to PNG", item.index, png.converted_from)
            await self._calls.put_output(item.output_key, png.data)
        except GenerationError as exc:
            exc.usage = add_usage(exc.usage, generated.usage)  # Gemini made (and billed) the image all the same
            raise
        return ItemOk(
            index=item.index,
            key=item.output_key,
            width=png.width,
            height=png.height,
            note=generated.note,
            usage=generated.usage,
        )

    async def _stop_requested(self) -> bool:
        """Tell whether the bot asked this job to stop (its stop marker exists); a store error says no."""
        if not self._stopped:
            try:
                self._stopped = await self._deps.store.exists(stop_key(self._chunk.job_id))
            except StorageError as exc:
                # The marker is advisory: the bot still cancels or records what comes back, so a failed look only
                # costs the call it did not prevent, while failing the item would cost a retry.
                log.warning("job %s: looking for its stop marker failed: %s", self._chunk.job_id, exc)
            if self._stopped:
                log.info(
                    "job %s: stop marker found; no more Gemini calls in this chunk",
                    self._chunk.job_id,
                    extra={"job_id": self._chunk.job_id, "action": "pause"},
                )
        return self._stopped

    async def _existing(self, item: ChunkItem) -> ItemOk | None:
        """Return the item as done when its output is already stored (a re-run chunk), else None."""
        size = await self._calls.stored_png_size(item.output_key)
        if size is None:
            return None
        log.debug("item %d: %s already stored, skipped", item.index, item.output_key)
        await self._calls.ensure_thumbnail(item.output_key)  # an output made before the worker wrote thumbnails
        return ItemOk(index=item.index, key=item.output_key, width=size[0], height=size[1], skipped=True)

    async def _image(self, key: str, role: str) -> InputImage:
        """Return the image under `key`, read once per chunk (raises GenerationError BAD_INPUT when unusable)."""
        async with self._image_locks.setdefault(key, asyncio.Lock()):
            cached = self._images.get(key)
            if cached is None:
                # Transient storage failures raise without being cached, so a later item tries again.
                cached = await self._calls.load_image(key, role)
                self._images[key] = cached
        if isinstance(cached, str):
            raise GenerationError(ErrorCode.BAD_INPUT, cached)
        return cached

    def _metadata(self, item: ChunkItem) -> dict[str, str]:
        chunk = self._chunk
        meta = {
            "Software": "Peel",
            "prompt": item.prompt,
            "model": chunk.model,
            "job_id": chunk.job_id,
            "chunk": str(chunk.chunk),
            "index": str(item.index),
            "runpod_job_id": str(self._job.get("id", "")),
        }
        if item.seed is not None:
            meta["seed"] = str(item.seed)
        if item.aspect_ratio:
            meta["aspect_ratio"] = item.aspect_ratio
        if item.image_size:
            meta["image_size"] = item.image_size
        if item.ref_keys:
            meta["ref_keys"] = " ".join(item.ref_keys)
        if item.edit:
            meta["edit_source"] = item.edit.source_key
        if item.region:
            r = item.region
            meta["region"] = ",".join(f"{v:.4f}" for v in (r.left, r.top, r.right, r.bottom))
        return meta

    def _maybe_send_progress(self) -> None:
        done, total = len(self._results), len(self._chunk.items)
        if done >= total:
            return  # the final result follows at once; a progress update now could overtake it
        concurrency = self._chunk.concurrency
        if total > concurrency and total - done < concurrency:
            # The last round of a multi-round chunk: every item left is in flight, so an update tells the bot
            # nothing it can schedule with, and sent now it would make the result wait `progress_settle_s`.
            return
        self._progress.send(
            done,
            total,
            lambda: [self._results[item.index] for item in self._chunk.items if item.index in self._results],
        )

    async def _let_progress_settle(self) -> None:
        await self._progress.settle()


# What the worker's entry point and tests take from here; they live in `worker.deps` so every job kind can use them.
__all__ = [
    "Handler",
    "RunpodJob",
    "WorkerDeps",
    "describe_validation_error",
    "discard_progress",
    "make_handler",
    "parse_chunk",
    "run_selftest",
]
