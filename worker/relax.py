"""Relax mode's two worker job kinds: a part's requests written and uploaded, a finished batch's results collected.

One relax part is one Gemini batch job (docs/architecture.md, "The bot ⇄ worker contract"). The bot makes the
cheap calls (create, get, list, cancel, delete); the worker moves the heavy bytes:

* `relax_prepare` (`RelaxPrepareInput` → `RelaxPrepareResult`) writes one JSONL line per item,
  `{"key": "<index>", "request": GenerateContentRequest}` (https://ai.google.dev/gemini-api/docs/batch-mode,
  "Input file"), each request exactly what the online call sends (`worker.gemini.request_json`). A reference used by
  two or more items of the part is uploaded once through the Files API and named by URI (`fileData`); the others
  are inlined as the online call inlines them. The file is written to disk line by line (images make it gigabytes)
  and uploaded through the Files API with the MIME type Google's batch samples give it, `jsonl`. Items refused
  before any call (a missing reference: BAD_INPUT; a request over 20 MB: TOO_LARGE, as `check_request` decides for
  both modes) come back as errors; items whose line would pass `max_file_bytes` are left for a later part.
* `relax_collect` (`RelaxCollectInput` → `ChunkResult`) streams the batch's result file through the SDK's download
  (`GET {version}/files/{id}:download?alt=media`), splits it into lines of at most `max_result_line_bytes` (a 4K
  PNG is ~20 MB in base64), joins each line to its item by `key`, reads its answer as the online path does
  (`parse_response_json`, `classify_status`) and writes the image with the same PNG metadata to the item's output
  key, skipping an output already stored (a re-run costs nothing twice). Items the file does not hold come back
  UPSTREAM. At most `relax_concurrency` lines are held at once (the download waits for a free slot), so memory is
  bounded by a few lines, never the file.

Both kinds answer the store being down as per-item `STORAGE` errors (retryable) rather than failing the job.
"""

import asyncio
import json
import logging
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from pydantic import ValidationError

from worker.contract import (
    ChunkItem,
    ChunkResult,
    ErrorCode,
    ItemError,
    ItemOk,
    ItemResult,
    RelaxCollectInput,
    RelaxCollectItem,
    RelaxPrepareInput,
    RelaxPrepareResult,
    add_usage,
    relax_display_name,
)
from worker.deps import ProgressPacer, RunpodJob, WorkerDeps, describe_validation_error, store_calls
from worker.errors import GenerationError, InputError, WorkerError
from worker.gemini import check_request, classify_status, parse_response_json, request_json
from worker.generation import GeminiFiles, GenerationRequest, InputImage
from worker.images import ImageDecodeError, finish_png
from worker.storecalls import StoreCalls

log = logging.getLogger(__name__)

_Part = TypeVar("_Part", RelaxPrepareInput, RelaxCollectInput)

# Google's batch samples upload the input file with `mime_type='jsonl'`
# (https://ai.google.dev/gemini-api/docs/batch-mode, "Input file").
JSONL_MIME_TYPE = "jsonl"
# A result line's head, `{"key": "<index>"` (Google's output lines start with the request's key).
_KEY_IN_LINE = re.compile(rb'\s*\{\s*"key"\s*:\s*"([^"\\]{1,64})"')
_MISSING = "missing from the batch's results"


def _error(index: int, exc: WorkerError) -> ItemError:
    usage = exc.usage if isinstance(exc, GenerationError) else None
    return ItemError(index=index, code=exc.code, message=exc.message, retryable=exc.retryable, usage=usage)


def _parse(job: RunpodJob, model: type[_Part]) -> _Part:
    """Validate `job["input"]` as `model`, with unique item indices (each is a line's key).

    Raises:
        InputError: the input is missing or invalid; the message names the fields, never their values.
    """
    raw = job.get("input")
    if not isinstance(raw, dict):
        raise InputError(f"input: expected a JSON object, got {type(raw).__name__}")
    try:
        parsed = model.model_validate(raw)
    except ValidationError as exc:
        raise InputError(describe_validation_error(exc)) from exc
    counts = Counter(item.index for item in parsed.items)
    duplicates = sorted(index for index, count in counts.items() if count > 1)
    if duplicates:
        raise InputError(f"items.index: duplicate value(s) {', '.join(map(str, duplicates[:5]))}")
    return parsed


# -- relax_prepare ---------------------------------------------------------------------------------------------


def _image_keys(item: ChunkItem) -> list[str]:
    """Return the store keys of an item's images, each once: its edit source, then its references."""
    keys = [item.edit.source_key] if item.edit else []
    return list(dict.fromkeys([*keys, *item.ref_keys]))


class _Preparation:
    """One relax_prepare job while it runs: the shared references uploaded, the lines written, the errors."""

    def __init__(self, deps: WorkerDeps, files: GeminiFiles, part: RelaxPrepareInput, calls: StoreCalls) -> None:
        self._deps = deps
        self._files = files
        self._part = part
        self._calls = calls
        self._name = relax_display_name(part.job_id, part.part)
        self._shared: dict[str, InputImage | GenerationError] = {}
        self.ref_files: list[str] = []
        self.results: list[ItemError] = []
        self.included: list[int] = []
        self.file_bytes = 0

    async def upload_shared(self, workdir: Path) -> None:
        """Upload each image used by two or more items once; remember its URI, or why it cannot be used."""
        uses = Counter(key for item in self._part.items for key in _image_keys(item))
        for key in (key for key, count in uses.items() if count > 1):
            self._shared[key] = await self._upload_one(key, workdir)

    async def _upload_one(self, key: str, workdir: Path) -> InputImage | GenerationError:
        try:
            image = await self._calls.load_image(key, "reference image")
        except GenerationError as exc:  # STORAGE: the store is down
            return exc
        if isinstance(image, str):
            return GenerationError(ErrorCode.BAD_INPUT, image)
        path = workdir / f"ref-{len(self.ref_files)}"
        await asyncio.to_thread(path.write_bytes, image.data)
        try:
            uploaded = await self._files.upload_file(
                path, mime_type=image.mime_type, display_name=f"{self._name}-ref-{len(self.ref_files)}"
            )
        except GenerationError as exc:
            return exc
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        self.ref_files.append(uploaded.name)
        return InputImage(data=b"", mime_type=image.mime_type, file_uri=uploaded.uri, file_bytes=len(image.data))

    async def write_lines(self, out: BinaryIO) -> None:
        """Write one line per item that can be asked and fits; record the others' errors."""
        for item in self._part.items:
            try:
                request = await self._request(item)
                refused = check_request(request)
                if refused is not None:
                    raise refused
            except GenerationError as exc:
                self.results.append(_error(item.index, exc))
                continue
            line = await asyncio.to_thread(_line, item.index, request)
            if self.file_bytes + len(line) > self._part.max_file_bytes:
                continue  # in neither list: the bot sends it in a later part
            await asyncio.to_thread(out.write, line)
            self.file_bytes += len(line)
            self.included.append(item.index)

    async def _request(self, item: ChunkItem) -> GenerationRequest:
        """Return the item's request, its images read from the store (shared ones by URI).

        Raises:
            GenerationError: BAD_INPUT for an unusable image, STORAGE when the store is down, or the error its
                shared reference's upload met.
        """
        images: dict[str, InputImage] = {}
        for key in _image_keys(item):
            images[key] = await self._image(key)
        return GenerationRequest(
            model=self._part.model,
            prompt=item.prompt,
            references=tuple(images[key] for key in item.ref_keys),
            aspect_ratio=item.aspect_ratio,
            image_size=item.image_size,
            seed=item.seed,
            edit_source=images[item.edit.source_key] if item.edit else None,
            history=tuple(item.edit.history) if item.edit else (),
        )

    async def _image(self, key: str) -> InputImage:
        """Return an item's image: a shared one by URI, another read from the store now (used once, not kept)."""
        shared = self._shared.get(key)
        if isinstance(shared, GenerationError):
            raise shared
        if shared is not None:
            return shared
        loaded = await self._calls.load_image(key, "reference image")
        if isinstance(loaded, str):
            raise GenerationError(ErrorCode.BAD_INPUT, loaded)
        return loaded

    def fail_all_if_store_down(self) -> None:
        """Answer the whole part STORAGE once the store failed (the bot sends it again later, in one piece).

        Items refused for good (BAD_INPUT, TOO_LARGE) keep their answer.
        """
        if not self._calls.down:
            return
        storage = GenerationError(ErrorCode.STORAGE, "the store was unavailable while the part was prepared")
        refused = {r.index: r for r in self.results if r.code is not ErrorCode.STORAGE}
        self.results = [refused.get(item.index) or _error(item.index, storage) for item in self._part.items]
        self.included, self.file_bytes = [], 0

    async def upload_file(self, path: Path) -> str | None:
        """Upload the written JSONL; None when no line was written. A failure fails every included item."""
        if not self.included:
            return None
        try:
            uploaded = await self._files.upload_file(path, mime_type=JSONL_MIME_TYPE, display_name=self._name)
        except GenerationError as exc:
            self.results.extend(_error(index, exc) for index in self.included)
            self.included, self.file_bytes = [], 0
            await self.forget_refs()
            return None
        return uploaded.name

    async def forget_refs(self) -> None:
        """Delete the references uploaded for a part that will not run (Gemini would keep them 48 hours)."""
        for name in self.ref_files:
            await self._files.delete_file(name)
        self.ref_files = []


def _accepted(deps: WorkerDeps, job: RunpodJob, model: type[_Part]) -> tuple[_Part, GeminiFiles] | dict[str, object]:
    """Return a relax job's input and the Files API client, or the answer refusing the job (bad input, no client)."""
    try:
        part = _parse(job, model)
    except InputError as exc:
        return {"error": f"{exc.code}: {exc.message}"}
    if deps.files is None:
        return {"error": f"{ErrorCode.CONFIG}: this worker has no Gemini Files API client"}
    return part, deps.files


def _line(index: int, request: GenerationRequest) -> bytes:
    """Return one input line, `{"key": …, "request": …}` and a newline; blocking (base64 of the images)."""
    return json.dumps({"key": str(index), "request": request_json(request)}, separators=(",", ":")).encode() + b"\n"


async def run_relax_prepare(deps: WorkerDeps, job: RunpodJob) -> dict[str, object]:
    """Answer a relax_prepare job: write the part's requests as JSONL and upload it (see the module docstring)."""
    accepted = _accepted(deps, job, RelaxPrepareInput)
    if isinstance(accepted, dict):
        return accepted
    part, files = accepted
    log.info(
        "job %s: relax_prepare of %s part %d, %d item(s)",
        job.get("id", "?"),
        part.job_id,
        part.part,
        len(part.items),
        extra={"job_id": part.job_id, "action": "claim"},
    )
    prep = _Preparation(deps, files, part, store_calls(deps, part.job_id))
    # Disk work runs in threads: the loop also carries RunPod's heartbeat and progress.
    workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="peel-relax-", dir=deps.relax_dir))
    try:
        await prep.upload_shared(workdir)
        path = workdir / "requests.jsonl"
        out = await asyncio.to_thread(path.open, "wb")
        try:
            await prep.write_lines(out)
        finally:
            await asyncio.to_thread(out.close)
        prep.fail_all_if_store_down()
        if not prep.included:
            await prep.forget_refs()
        file_name = await prep.upload_file(path)
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)
    log.info(
        "job %s: %d line(s), %d bytes, %d shared reference(s), %d refused",
        job.get("id", "?"),
        len(prep.included),
        prep.file_bytes,
        len(prep.ref_files),
        len(prep.results),
        extra={"job_id": part.job_id, "action": "succeed"},
    )
    return RelaxPrepareResult(
        file_name=file_name,
        included=prep.included,
        ref_files=prep.ref_files,
        file_bytes=prep.file_bytes,
        results=prep.results,
    ).to_payload()


# -- relax_collect ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _LineSplitter:
    """Cuts a byte stream into lines of at most `max_bytes`; a longer line is dropped, its key (if seen) kept."""

    max_bytes: int
    buffer: bytearray
    overflowing: bool = False
    overflow_key: str | None = None

    def feed(self, chunk: bytes) -> tuple[list[bytes], list[str | None]]:
        """Return the whole lines ended in `chunk`, and the keys of lines dropped as too long (None: not seen)."""
        lines: list[bytes] = []
        dropped: list[str | None] = []
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            self._take(chunk[start:end])
            if not self.overflowing:
                lines.append(bytes(self.buffer))
            else:
                dropped.append(self.overflow_key)
            self.buffer.clear()
            self.overflowing, self.overflow_key = False, None
            start = end + 1
        self._take(chunk[start:])
        return [line for line in lines if line.strip()], dropped

    def _take(self, piece: bytes) -> None:
        if self.overflowing:
            return
        self.buffer += piece
        if len(self.buffer) > self.max_bytes:
            match = _KEY_IN_LINE.search(bytes(self.buffer[:512]))
            self.overflow_key = match.group(1).decode() if match else None
            self.overflowing = True
            self.buffer.clear()

    def finish(self) -> tuple[list[bytes], list[str | None]]:
        """Return the last line when the stream did not end with a newline."""
        return self.feed(b"\n") if self.buffer or self.overflowing else ([], [])


class _Collection:
    """One relax_collect job while it runs: results so far, lines in flight, progress throttling."""

    def __init__(self, deps: WorkerDeps, job: RunpodJob, part: RelaxCollectInput, calls: StoreCalls) -> None:
        self._deps = deps
        self._job = job
        self._part = part
        self._calls = calls
        self._items = {str(item.index): item for item in part.items}
        self._results: dict[int, ItemResult] = {}
        self._seen: set[str] = set()
        self._slots = asyncio.Semaphore(deps.relax_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._splitter = _LineSplitter(max_bytes=deps.max_result_line_bytes, buffer=bytearray())
        self._progress = ProgressPacer(deps, job)

    async def run(self, files: GeminiFiles) -> ChunkResult:
        failure: GenerationError | None = None
        try:
            await files.download_file(self._part.result_file, self._take_chunk)
            await self._dispatch(*self._splitter.finish())
        except GenerationError as exc:
            failure = exc
            log.warning("job %s: reading %s failed: %s", self._part.job_id, self._part.result_file, exc.message)
        except BaseException:
            # RunPod's cancel or timeout (or a bug): stop the lines in flight too; stores write atomically.
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            raise
        if self._tasks:
            await asyncio.gather(*self._tasks)
        for item in self._part.items:
            if item.index not in self._results:
                error = GenerationError(
                    failure.code if failure else ErrorCode.UPSTREAM,
                    f"the batch's result file could not be read: {failure.message}" if failure else _MISSING,
                )
                self._results[item.index] = _error(item.index, error)
        results = [self._results[item.index] for item in self._part.items]
        ok = sum(1 for r in results if isinstance(r, ItemOk))
        return ChunkResult(ok=ok, failed=len(results) - ok, results=results)

    async def _take_chunk(self, chunk: bytes) -> None:
        await self._dispatch(*self._splitter.feed(chunk))

    async def _dispatch(self, lines: Sequence[bytes], dropped: Sequence[str | None]) -> None:
        for key in dropped:
            limit = self._deps.max_result_line_bytes
            error = GenerationError(ErrorCode.UPSTREAM, f"its result line is over {limit:,} bytes")
            if (item := self._claim(key)) is not None:
                self._set(item.index, _error(item.index, error))
        for line in lines:
            await self._slots.acquire()  # the download waits here: a few lines in memory, never the file
            task = asyncio.create_task(self._line(line), name=f"relax-line-{self._part.job_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _claim(self, key: str | None) -> RelaxCollectItem | None:
        """Return the item a line's key names, once: None for a key not in the part or already seen."""
        item = self._items.get(key) if key is not None else None
        if item is None or key in self._seen:
            log.warning("job %s: result line for key %r ignored (unknown or seen)", self._part.job_id, key)
            return None
        self._seen.add(str(item.index))
        return item

    def _set(self, index: int, result: ItemResult) -> None:
        self._results[index] = result
        self._maybe_send_progress()

    async def _line(self, line: bytes) -> None:
        try:
            # A re-run finds most outputs stored: the key at the line's head is enough to skip one without parsing
            # megabytes of JSON. Google writes `key` first; a line that does not is parsed whole to find it.
            peeked = _KEY_IN_LINE.match(line[:512])
            key = peeked.group(1).decode() if peeked else None
            parsed: dict[str, Any] | None = None
            if key is None:
                parsed = await self._parse(line)
                key = str(parsed["key"]) if parsed is not None and "key" in parsed else None
            item = self._claim(key)
            if item is None:
                return
            try:
                result: ItemResult = await self._collect(item, parsed if parsed is not None else line)
            except WorkerError as exc:
                result = _error(item.index, exc)
            self._set(item.index, result)
        finally:
            self._slots.release()

    async def _parse(self, line: bytes) -> dict[str, Any] | None:
        try:
            parsed = await asyncio.to_thread(json.loads, line)
        except (ValueError, RecursionError):
            parsed = None
        if not isinstance(parsed, dict):
            log.warning("job %s: a result line is not a JSON object; ignored", self._part.job_id)
            return None
        return parsed

    async def _collect(self, item: RelaxCollectItem, line: bytes | dict[str, Any]) -> ItemOk:
        size = await self._calls.stored_png_size(item.output_key)
        if size is not None:
            await self._calls.ensure_thumbnail(item.output_key)  # an output made before the worker wrote thumbnails
            return ItemOk(index=item.index, key=item.output_key, width=size[0], height=size[1], skipped=True)
        parsed = await self._parse(line) if isinstance(line, bytes) else line
        del line  # parsed: the raw bytes are no longer needed
        if parsed is None:
            raise GenerationError(ErrorCode.UPSTREAM, "its result line is not a JSON object")
        if "response" not in parsed:
            raise classify_status(parsed.get("error") or parsed.get("status"))
        image = await asyncio.to_thread(parse_response_json, parsed.pop("response"))
        try:
            try:
                png = await asyncio.to_thread(finish_png, image.data, image.mime_type, self._metadata(item))
            except ImageDecodeError as exc:
                raise GenerationError(ErrorCode.NO_IMAGE, "the model's image could not be decoded") from exc
            await self._calls.put_output(item.output_key, png.data)
        except GenerationError as exc:
            exc.usage = add_usage(exc.usage, image.usage)  # the batch made (and billed) the image all the same
            raise
        return ItemOk(
            index=item.index,
            key=item.output_key,
            width=png.width,
            height=png.height,
            note=image.note,
            usage=image.usage,
        )

    def _metadata(self, item: RelaxCollectItem) -> dict[str, str]:
        """Return the PNG text chunks a chunk's worker writes, with the part in place of the chunk."""
        part = self._part
        meta = {"Software": "Peel"}
        if item.prompt is not None:
            meta["prompt"] = item.prompt
        meta |= {
            "model": part.model,
            "job_id": part.job_id,
            "mode": "relax",
            "part": str(part.part),
            "index": str(item.index),
            "runpod_job_id": str(self._job.get("id", "")),
        }
        optional = {
            "seed": str(item.seed) if item.seed is not None else None,
            "aspect_ratio": item.aspect_ratio,
            "image_size": item.image_size,
            "ref_keys": " ".join(item.ref_keys) or None,
            "edit_source": item.edit_source,
        }
        return meta | {k: v for k, v in optional.items() if v}

    def _maybe_send_progress(self) -> None:
        done, total = len(self._results), len(self._part.items)
        if done >= total:
            return  # the final result follows at once; a progress update now could overtake it
        self._progress.send(
            done, total, lambda: [self._results[i.index] for i in self._part.items if i.index in self._results]
        )

    async def let_progress_settle(self) -> None:
        """Wait until a recent progress update has had time to land before the result (runpod-python#250)."""
        await self._progress.settle()


async def run_relax_collect(deps: WorkerDeps, job: RunpodJob) -> dict[str, object]:
    """Answer a relax_collect job: stream the batch's results into the store (see the module docstring)."""
    accepted = _accepted(deps, job, RelaxCollectInput)
    if isinstance(accepted, dict):
        return accepted
    part, files = accepted
    log.info(
        "job %s: relax_collect of %s part %d from %s, %d item(s)",
        job.get("id", "?"),
        part.job_id,
        part.part,
        part.result_file,
        len(part.items),
        extra={"job_id": part.job_id, "action": "claim"},
    )
    collection = _Collection(deps, job, part, store_calls(deps, part.job_id))
    result = await collection.run(files)
    await collection.let_progress_settle()
    log.info("job %s: %d ok, %d failed", job.get("id", "?"), result.ok, result.failed, extra={"action": "succeed"})
    return result.to_payload()
