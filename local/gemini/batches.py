"""The Gemini Batch API as the local server keeps it: batches, their state machine, counts and results.

The wire, each rule from its source (https://ai.google.dev/api/batch-mode, the reference;
https://ai.google.dev/gemini-api/docs/batch-api, the guide; google-genai 3.x `batches.py`, what the SDK sends and
parses):

- `models.batchGenerateContent` takes `{"batch": GenerateContentBatch}` with a required `displayName` and an
  `inputConfig` that is either `requests.requests` (inlined `{"request": GenerateContentRequest, "metadata":
  {...}}`, "total request size under 20MB") or `fileName` ("files/…", a JSONL file uploaded through the Files API,
  "The maximum allowed file size for an input file is 2GB"), and answers an `Operation`: `name` "batches/{id}",
  `metadata` the batch (`@type` …GenerateContentBatch, `model`, `displayName`, `state`, `createTime`, `updateTime`,
  `endTime`, `batchStats`, `output`), `done` once it ended and, on success, `response` the output (the guide's
  REST example reads `.response.responsesFile`; the SDK reads `metadata.output`, so both are given).
- `batchStats` holds `requestCount`, `successfulRequestCount`, `failedRequestCount`, `pendingRequestCount`,
  int64 as strings and left out when zero (proto3 JSON omits default values, https://protobuf.dev JSON mapping).
- `state` is the BatchState enum: BATCH_STATE_PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED, EXPIRED (the SDK
  maps each to its JOB_STATE_* name, `_transformers.t_job_state`).
- An input file's line is `{"key": …, "request": GenerateContentRequest}`; the results of a file batch are a JSONL
  file "where each line is either a GenerateContentResponse or a status object", annotated with the request's key:
  this server writes `{"key", "response"}` or `{"key", "error": google.rpc.Status}` (the error member as
  `InlinedResponse.error` names it; the file's exact member is not documented), in an order that is not the input
  order (a shuffle seeded by the batch id: clients must join on `key`). Inlined requests answer
  `output.inlinedResponses.inlinedResponses` in input order, each `{"response", "metadata"}` or `{"error",
  "metadata"}`.
- A line that is not a valid request (bad JSON, an unknown field, a value Gemini refuses) becomes that request's
  error in the results, as the guide says to "parse each line to check if it's a GenerateContentResponse or a
  status object indicating an error for that specific request"; the batch is not refused, since the file is read
  after the batch is created. An inlined request is part of the create call's body, so Google's proto-JSON parser
  refuses a bad one there (400, `local.gemini.schema`).
- "JOB_STATE_EXPIRED: The job has expired because it was running or pending for more than 48 hours. The job will
  not have any results to retrieve." (the guide): a batch still pending or running 48 hours after its creation on
  the Files API's clock ends EXPIRED with no output.
- Cancel: "When a job is canceled, it stops processing new requests." The guide promises no results of a cancelled
  job, so this server gives none (stricter). Cancelling a batch that has already ended answers 400
  FAILED_PRECONDITION (assumed: the docs do not say).
- Delete: "When a job is deleted, it stops processing new requests and is removed from the list of batch jobs";
  afterwards get, cancel and delete answer 404 NOT_FOUND. `GET /admin/batches` still shows it (for tests).
- "Concurrent batch requests: 100" (https://ai.google.dev/gemini-api/docs/rate-limits#batch-mode): a 101st batch
  pending or running is refused with 429 RESOURCE_EXHAUSTED (the wording assumed).
- batches.list: `pageSize` and `pageToken` are "the standard list page size/token", with no default or maximum
  documented; this server answers 10 by default and at most 100 (assumed, so clients must page), newest first.
"""

import asyncio
import hashlib
import json
import os
import random
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from local.gemini.files import FileError, FileStore, discard, open_off_loop, timestamp
from local.gemini.schema import BATCH_FILE_LINE, check
from local.gemini.wire import JsonObject

BATCH_TTL_S = 48 * 3600  # "running or pending for more than 48 hours" (the guide, JOB_STATE_EXPIRED)
MAX_ACTIVE_BATCHES = 100  # "Concurrent batch requests: 100" (ai.google.dev/gemini-api/docs/rate-limits#batch-mode)
DEFAULT_BATCHES_PAGE = 10  # assumed: batches.list documents no default page size
MAX_BATCHES_PAGE = 100  # assumed: nor a maximum
RESULTS_MIME = "application/jsonl"


class BatchState(StrEnum):
    """A batch's state (https://ai.google.dev/api/batch-mode#BatchState)."""

    PENDING = "BATCH_STATE_PENDING"
    RUNNING = "BATCH_STATE_RUNNING"
    SUCCEEDED = "BATCH_STATE_SUCCEEDED"
    FAILED = "BATCH_STATE_FAILED"
    CANCELLED = "BATCH_STATE_CANCELLED"
    EXPIRED = "BATCH_STATE_EXPIRED"


ACTIVE = frozenset({BatchState.PENDING, BatchState.RUNNING})
FORCEABLE = frozenset({BatchState.FAILED, BatchState.EXPIRED, BatchState.CANCELLED})


class BatchError(Exception):
    """A Batch API call the server refuses: its HTTP status, Google status and message."""

    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


def batch_not_found(batch_id: str) -> BatchError:
    """Return the answer for a batch that does not exist or was deleted (Google's usual NOT_FOUND wording)."""
    return BatchError(404, "NOT_FOUND", f"Requested entity was not found: batches/{batch_id}.")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one request of a batch came to: a GenerateContentResponse or a google.rpc.Status, and an image or not."""

    response: JsonObject | None = None
    error: JsonObject | None = None
    image: bool = False


# Draws one request: (model name, API version, the request as sent, a cache of referenced files) → its outcome.
Draw = Callable[[str, str, object, dict[str, bytes]], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class BatchSettings:
    """How batches behave now: the wait before running, requests at once, failing share, the next batch's fate."""

    wait_s: float
    concurrency: int
    fail_rate: float
    next_state: BatchState | None


@dataclass(slots=True, kw_only=True)
class Batch:
    """One batch: what it was asked, where it is, what it made."""

    batch_id: str
    display_name: str
    model: str
    created: float
    updated: float
    request_count: int
    inline: list[JsonObject] | None = None  # the inlined requests, or None for a file batch
    source: IO[bytes] | None = None  # the input file, held open so deleting it does not break the batch
    lines: list[tuple[int, int]] = field(default_factory=list)  # (offset, length) of each input line
    state: BatchState = BatchState.PENDING
    ended: float | None = None
    succeeded: int = 0
    failed: int = 0
    output_file_id: str | None = None
    inline_responses: list[JsonObject | None] = field(default_factory=list)
    error: JsonObject | None = None
    fate: BatchState | None = None  # `next_batch_state`: how this batch ends instead of running
    deleted: bool = False
    drawn: Counter[str] = field(default_factory=Counter)  # images drawn per request key
    task: asyncio.Task[None] | None = None

    def is_running(self) -> bool:
        """Whether the batch is running (a call, so a check after an await is not narrowed away by mypy)."""
        return self.state == BatchState.RUNNING

    @property
    def name(self) -> str:
        """The batch's resource name."""
        return f"batches/{self.batch_id}"

    def stats(self) -> JsonObject:
        """Return `batchStats`, int64 as strings, zeros left out as proto3 JSON does."""
        counts = {
            "requestCount": self.request_count,
            "successfulRequestCount": self.succeeded,
            "failedRequestCount": self.failed,
            "pendingRequestCount": self.request_count - self.succeeded - self.failed,
        }
        return {name: str(value) for name, value in counts.items() if value}

    def output(self) -> JsonObject | None:
        """Return the batch's output (GenerateContentBatchOutput) once it succeeded, else None."""
        if self.state != BatchState.SUCCEEDED:
            return None
        if self.output_file_id is not None:
            return {"responsesFile": f"files/{self.output_file_id}"}
        return {"inlinedResponses": {"inlinedResponses": [r for r in self.inline_responses if r is not None]}}

    def operation(self, version: str) -> JsonObject:
        """Return the batch as the API answers it: an Operation whose metadata is the GenerateContentBatch."""
        package = f"type.googleapis.com/google.ai.generativelanguage.{'v1' if version == 'v1' else 'v1beta'}"
        metadata: JsonObject = {
            "@type": f"{package}.GenerateContentBatch",
            "model": f"models/{self.model}",
            "displayName": self.display_name,
            "createTime": timestamp(self.created),
            "updateTime": timestamp(self.updated),
            "batchStats": self.stats(),
            "state": self.state.value,
            "name": self.name,
        }
        if self.ended is not None:
            metadata["endTime"] = timestamp(self.ended)
        answer: JsonObject = {"name": self.name, "metadata": metadata}
        if self.state not in ACTIVE:
            answer["done"] = True
        if (output := self.output()) is not None:
            metadata["output"] = output
            answer["response"] = {"@type": f"{package}.GenerateContentBatchOutput", **output}
        if self.error is not None:
            answer["error"] = self.error
        return answer

    def summary(self) -> JsonObject:
        """Return what `GET /admin/batches` shows of it."""
        return {
            "name": self.name,
            "displayName": self.display_name,
            "model": self.model,
            "state": self.state.value,
            "requestCount": self.request_count,
            "successfulRequestCount": self.succeeded,
            "failedRequestCount": self.failed,
            "createTime": timestamp(self.created),
            "deleted": self.deleted,
            "images": sum(self.drawn.values()),
        }


def _index_lines(source: IO[bytes]) -> list[tuple[int, int]]:
    """Return (offset, length) of each non-blank line of a JSONL file (blocking; reads it once, line by line)."""
    lines: list[tuple[int, int]] = []
    offset = 0
    for line in source:
        if line.strip():
            lines.append((offset, len(line)))
        offset += len(line)
    return lines


def _read_line(source: IO[bytes], offset: int, length: int) -> bytes:
    return os.pread(source.fileno(), length, offset)  # no shared file position: safe from several threads


def _status(code: int, status: str, message: str) -> JsonObject:
    return {"code": code, "message": message, "status": status}


class BatchStore:
    """The batches of the local Batch API and the background tasks that run them.

    Args:
        files: the Files API's store (input files, result files, its clock).
        draw: draws one request exactly as generateContent would (`local.gemini.server`).
        settings: returns the current batch settings (read when a batch starts waiting and running).
        rng: the random source of the failing share.
    """

    def __init__(self, files: FileStore, draw: Draw, settings: Callable[[], BatchSettings], rng: random.Random) -> None:
        self.files = files
        self._draw = draw
        self._settings = settings
        self.rng = rng
        self._batches: dict[str, Batch] = {}

    # -- the API --------------------------------------------------------------------------------------------

    async def create(
        self, *, model: str, version: str, display_name: str, inline: list[JsonObject] | None, file_name: str | None
    ) -> Batch:
        """Create a batch and start it in the background.

        Raises:
            BatchError: too many batches pending or running, or the input file is not usable.
        """
        self._expire_all()
        if sum(1 for b in self._batches.values() if b.state in ACTIVE) >= MAX_ACTIVE_BATCHES:
            raise BatchError(
                429,
                "RESOURCE_EXHAUSTED",
                f"You have reached the limit of {MAX_ACTIVE_BATCHES} concurrent batch requests. "
                "For more information, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
            )
        now = self.files.now()
        batch = Batch(
            batch_id=secrets.token_hex(10),
            display_name=display_name,
            model=model,
            created=now,
            updated=now,
            request_count=0,
        )
        if inline is not None:
            batch.inline = inline
            batch.request_count = len(inline)
            batch.inline_responses = [None] * len(inline)
        else:
            batch.source, batch.lines = await self._open_input(str(file_name))
            batch.request_count = len(batch.lines)
        settings = self._settings()
        batch.fate = settings.next_state
        self._batches[batch.batch_id] = batch
        batch.task = asyncio.create_task(self._run(batch, version), name=f"local-gemini-{batch.name}")
        return batch

    async def _open_input(self, file_name: str) -> tuple[IO[bytes], list[tuple[int, int]]]:
        file_id = file_name.removeprefix("files/")
        try:
            stored = self.files.get(file_id)
        except FileError as exc:
            raise BatchError(exc.code, exc.status, exc.message) from None
        if stored.source != "UPLOADED":
            raise BatchError(400, "INVALID_ARGUMENT", f"{file_name} is not an uploaded input file.")
        source = await open_off_loop(stored.path, "rb")
        try:
            lines = await asyncio.to_thread(_index_lines, source)
        except BaseException:
            source.close()
            raise
        if not lines:
            source.close()
            raise BatchError(400, "INVALID_ARGUMENT", f"The input file {file_name} has no requests.")
        return source, lines

    def get(self, batch_id: str) -> Batch:
        """Return a batch that was not deleted.

        Raises:
            BatchError: 404 NOT_FOUND.
        """
        batch = self._batches.get(batch_id)
        if batch is None or batch.deleted:
            raise batch_not_found(batch_id)
        self._expire(batch)
        return batch

    def listed(self) -> list[Batch]:
        """Return the batches not deleted, newest first."""
        self._expire_all()
        live = [b for b in self._batches.values() if not b.deleted]
        return sorted(live, key=lambda b: (-b.created, b.batch_id))

    def cancel(self, batch_id: str) -> None:
        """Cancel a pending or running batch: it stops processing and ends CANCELLED, with no results.

        Raises:
            BatchError: no such batch, or it has already ended.
        """
        batch = self.get(batch_id)
        if batch.state not in ACTIVE:
            raise BatchError(
                400, "FAILED_PRECONDITION", f"{batch.name} has already ended ({batch.state.value}): nothing to cancel."
            )
        self._end(batch, BatchState.CANCELLED)

    def delete(self, batch_id: str) -> None:
        """Delete a batch: it stops processing and is no longer listed or found.

        Raises:
            BatchError: no such batch.
        """
        batch = self.get(batch_id)
        if batch.state in ACTIVE:
            self._end(batch, BatchState.CANCELLED)
        batch.deleted = True

    # -- admin ----------------------------------------------------------------------------------------------

    def force(self, batch_id: str, state: BatchState) -> Batch:
        """End a pending or running batch in `state` (FAILED, EXPIRED or CANCELLED) at once, for tests.

        Raises:
            BatchError: no such batch, it has already ended, or the state is not one a batch can be forced to.
        """
        if state not in FORCEABLE:
            raise BatchError(400, "INVALID_ARGUMENT", f"a batch can be forced to {sorted(FORCEABLE)}, not {state}")
        batch = self.get(batch_id)
        if batch.state not in ACTIVE:
            raise BatchError(400, "FAILED_PRECONDITION", f"{batch.name} has already ended ({batch.state.value}).")
        self._end(batch, state)
        return batch

    def every(self) -> list[Batch]:
        """Return every batch ever created, deleted ones too, oldest first."""
        self._expire_all()
        return list(self._batches.values())

    async def close(self) -> None:
        """Stop every batch's task and close its input file."""
        tasks = [b.task for b in self._batches.values() if b.task is not None and not b.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for batch in self._batches.values():
            if batch.source is not None:
                batch.source.close()

    # -- the state machine ----------------------------------------------------------------------------------

    def _expire_all(self) -> None:
        for batch in self._batches.values():
            self._expire(batch)

    def _expire(self, batch: Batch) -> None:
        if batch.state in ACTIVE and self.files.now() >= batch.created + BATCH_TTL_S:
            self._end(batch, BatchState.EXPIRED)

    def _end(self, batch: Batch, state: BatchState) -> None:
        """End a batch in `state`, stopping its task unless it is the task itself that ends it."""
        batch.state = state
        batch.updated = batch.ended = self.files.now()
        if state == BatchState.FAILED:
            batch.error = {"code": 13, "message": "The batch failed: an internal error occurred."}  # wording assumed
        if batch.task is not None and batch.task is not asyncio.current_task() and not batch.task.done():
            batch.task.cancel()

    async def _run(self, batch: Batch, version: str) -> None:
        result_path: Path | None = None
        try:
            await asyncio.sleep(self._settings().wait_s)
            self._expire(batch)
            if batch.state != BatchState.PENDING:
                return
            if batch.fate is not None:
                self._end(batch, batch.fate)
                return
            batch.state, batch.updated = BatchState.RUNNING, self.files.now()
            if batch.inline is None:
                result_path = self.files.new_path()
                sha256, size = await self._run_file(batch, version, result_path)
                if batch.is_running():
                    stored = self.files.adopt_generated(
                        result_path, RESULTS_MIME, f"{batch.display_name}-results", sha256=sha256, size=size
                    )
                    result_path = None
                    batch.output_file_id = stored.file_id
            else:

                async def keep(index: int, key: str | None, outcome: Outcome) -> None:
                    assert batch.inline is not None
                    answer: JsonObject = {"response": outcome.response} if outcome.response is not None else {}
                    if outcome.error is not None:
                        answer["error"] = outcome.error
                    if (metadata := batch.inline[index].get("metadata")) is not None:
                        answer["metadata"] = metadata
                    batch.inline_responses[index] = answer

                await self._process(batch, version, range(batch.request_count), self._inline_request, keep)
            if batch.is_running():
                self._end(batch, BatchState.SUCCEEDED)
        finally:
            if batch.source is not None:
                batch.source.close()
            if result_path is not None:
                discard(result_path)  # an ended batch's partial results are never given

    async def _run_file(self, batch: Batch, version: str, result_path: Path) -> tuple[bytes, int]:
        order = list(range(batch.request_count))
        random.Random(batch.batch_id).shuffle(order)  # noqa: S311 - the order results come in, not a secret
        hasher = hashlib.sha256()
        written = 0
        out = await open_off_loop(result_path, "wb")
        lock = asyncio.Lock()

        async def write(key: str | None, outcome: Outcome) -> None:
            line: JsonObject = {} if key is None else {"key": key}
            line |= {"response": outcome.response} if outcome.response is not None else {"error": outcome.error}
            data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
            nonlocal written
            async with lock:
                hasher.update(data)
                written += len(data)
                await asyncio.to_thread(out.write, data)

        async def keep(index: int, key: str | None, outcome: Outcome) -> None:
            await write(key, outcome)

        try:
            await self._process(batch, version, order, self._file_request, keep)
        finally:
            await asyncio.to_thread(out.close)
        return hasher.digest(), written

    async def _process(
        self,
        batch: Batch,
        version: str,
        order: range | list[int],
        request_of: Callable[[Batch, int], Awaitable[tuple[str | None, object, Outcome | None]]],
        keep: Callable[[int, str | None, Outcome], Awaitable[None]],
    ) -> None:
        """Draw the batch's requests in `order`, `concurrency` at once, until all are done or the batch ends."""
        settings = self._settings()
        pending = iter(order)
        cache: dict[str, bytes] = {}

        async def worker() -> None:
            for index in pending:  # one shared iterator: each index goes to one worker
                if not batch.is_running():
                    return
                key, request, refused = await request_of(batch, index)
                if refused is None and settings.fail_rate and self.rng.random() < settings.fail_rate:
                    refused = Outcome(error=_status(500, "INTERNAL", "An internal error has occurred."))
                outcome = refused or await self._draw(batch.model, version, request, cache)
                self._expire(batch)
                if not batch.is_running():  # cancelled, deleted or expired while this request was drawn
                    return
                if outcome.image:
                    batch.drawn[key or ""] += 1
                await keep(index, key, outcome)
                if outcome.response is not None:
                    batch.succeeded += 1
                else:
                    batch.failed += 1
                batch.updated = self.files.now()

        await asyncio.gather(*(worker() for _ in range(max(1, settings.concurrency))))

    async def _inline_request(self, batch: Batch, index: int) -> tuple[str | None, object, Outcome | None]:
        assert batch.inline is not None
        item = batch.inline[index]
        metadata = item.get("metadata")
        key = metadata.get("key") if isinstance(metadata, dict) else None
        return (str(key) if key is not None else None), item.get("request"), None

    async def _file_request(self, batch: Batch, index: int) -> tuple[str | None, object, Outcome | None]:
        assert batch.source is not None
        offset, length = batch.lines[index]
        raw = await asyncio.to_thread(_read_line, batch.source, offset, length)
        try:
            line: Any = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None, None, Outcome(error=_status(400, "INVALID_ARGUMENT", "Invalid JSON in the request line."))
        if not isinstance(line, dict):
            return None, None, Outcome(error=_status(400, "INVALID_ARGUMENT", "A request line must be a JSON object."))
        key = line.get("key") if isinstance(line.get("key"), str) else None
        if violations := check(BATCH_FILE_LINE, line):
            message = "\n".join(v.description for v in violations)
            return key, None, Outcome(error=_status(400, "INVALID_ARGUMENT", message))
        if key is None or "request" not in line:
            refused = _status(400, "INVALID_ARGUMENT", "A request line needs a key and a request.")
            return key, None, Outcome(error=refused)
        return key, line["request"], None
