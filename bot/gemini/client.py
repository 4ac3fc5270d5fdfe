"""Gemini's Batch API for relax mode, through google-genai (create, list, cancel, file delete) and its REST get.

The bot makes the cheap calls of a relax batch (create, list, get, cancel, and deleting a collected part's batch
record and files); the worker the heavy ones (uploading requests, streaming results).
Every call is one HTTP request with a timeout; the SDK's own retries are off, as the dispatcher's loop is the
retry (it asks again on its next iteration).

`get` reads the batch resource with one REST GET (`GET /v1beta/batches/{id}`,
ai.google.dev/api/batch-mode#method:-batches.get) instead of the SDK's `batches.get`: google-genai's Gemini-API
`BatchJob` keeps no counts (`_BatchJob_from_mldev` maps only Vertex's `completionStats`), and the progress
message shows `batchStats` as the batch runs.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

import aiohttp
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import SecretStr

from bot.core.relax import BatchCounts
from bot.gemini.types import BatchInfo, GeminiBatchError, GeminiProblem

GOOGLE_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"
# Listing looks for a part's batch by display name; the Batch API returns at most 1,000 a page
# (ai.google.dev/api/batch-mode#method:-batches.list, pageSize).
LIST_PAGE_SIZE = 1000


def _problem_of_status(status: int, message: str) -> GeminiProblem:
    if status in (401, 403) or "API_KEY_INVALID" in message:
        return GeminiProblem.REFUSED
    if status == 404:
        return GeminiProblem.NOT_FOUND
    if status == 429:
        return GeminiProblem.BUSY
    if status >= 500:
        return GeminiProblem.UNREACHABLE
    return GeminiProblem.INVALID


def _count(stats: Mapping[str, Any], name: str) -> int:
    value = stats.get(name, 0)  # int64 fields arrive as JSON strings
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def batch_from_rest(data: Mapping[str, Any]) -> BatchInfo:
    """Read a batch resource as the REST API answers it (`{"name", "metadata": {state, batchStats, output…}}`)."""
    meta = data.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    state = str(meta.get("state", "BATCH_STATE_PENDING")).replace("BATCH_STATE_", "JOB_STATE_")
    stats = meta.get("batchStats")
    stats = stats if isinstance(stats, dict) else {}
    output = meta.get("output")
    output = output if isinstance(output, dict) else {}
    error = data.get("error")
    return BatchInfo(
        name=str(data.get("name", "")),
        display_name=meta.get("displayName") if isinstance(meta.get("displayName"), str) else None,
        state=state,
        counts=BatchCounts(
            requests=_count(stats, "requestCount"),
            succeeded=_count(stats, "successfulRequestCount"),
            failed=_count(stats, "failedRequestCount"),
            pending=_count(stats, "pendingRequestCount"),
        ),
        result_file=output.get("responsesFile") if isinstance(output.get("responsesFile"), str) else None,
        create_time=_time(meta.get("createTime")),
        error=str(error.get("message", "")) if isinstance(error, dict) else None,
    )


def _batch_from_sdk(job: types.BatchJob) -> BatchInfo:
    state = job.state.value if job.state is not None else "JOB_STATE_PENDING"
    return BatchInfo(
        name=job.name or "",
        display_name=job.display_name,
        state=state,
        result_file=job.dest.file_name if job.dest is not None else None,
        create_time=job.create_time,
        error=job.error.message if job.error is not None else None,
    )


class GenaiBatches:
    """`bot.gemini.types.GeminiBatches` with google-genai over the bot's aiohttp session."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        api_key: SecretStr,
        base_url: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self._http = http
        self._api_key = api_key
        self._base_url = (base_url or GOOGLE_BASE_URL).rstrip("/")
        self._timeout_s = timeout_s
        self._client: genai.Client | None = None
        self._lock = asyncio.Lock()

    async def _genai(self) -> genai.Client:
        # The SDK's constructor does blocking work (SSL contexts), so it runs in a thread, once.
        async with self._lock:
            if self._client is None:
                options = types.HttpOptions(
                    api_version=API_VERSION,
                    base_url=self._base_url,
                    timeout=max(1, round(self._timeout_s * 1000)),
                    retry_options=types.HttpRetryOptions(attempts=1),
                    aiohttp_client=self._http,
                )
                self._client = await asyncio.to_thread(
                    genai.Client, api_key=self._api_key.get_secret_value(), http_options=options
                )
            return self._client

    async def find(self, display_name: str) -> BatchInfo | None:
        """Return a batch with this display name, or None (pages are read until it is found).

        Peel creates one batch per display name (it looks before it creates), so the first found is the one.
        """
        client = await self._genai()
        async with _translated("list"):
            pager = await client.aio.batches.list(config=types.ListBatchJobsConfig(page_size=LIST_PAGE_SIZE))
            async for job in pager:
                if job.display_name == display_name:
                    return _batch_from_sdk(job)
        return None

    async def check(self) -> None:
        """List one page of batch jobs: the bot's key reaches the Batch API (`python -m bot doctor`).

        Raises:
            GeminiBatchError: it does not.
        """
        client = await self._genai()
        async with _translated("list"):
            await client.aio.batches.list(config=types.ListBatchJobsConfig(page_size=1))

    async def create(self, *, model: str, file_name: str, display_name: str) -> BatchInfo:
        """Create a batch job of the requests in an uploaded JSONL file."""
        client = await self._genai()
        async with _translated("create"):
            job = await client.aio.batches.create(
                model=model, src=file_name, config=types.CreateBatchJobConfig(display_name=display_name)
            )
        return _batch_from_sdk(job)

    async def get(self, name: str) -> BatchInfo:
        """Return a batch's state and counts now (one REST GET: the SDK's BatchJob drops the counts)."""
        url = f"{self._base_url}/{API_VERSION}/{name}"
        headers = {"x-goog-api-key": self._api_key.get_secret_value()}
        timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        async with _translated("get"), self._http.get(url, headers=headers, timeout=timeout) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise GeminiBatchError(
                    _problem_of_status(resp.status, text), f"get {name}: HTTP {resp.status}", status=resp.status
                )
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise GeminiBatchError(GeminiProblem.UNREACHABLE, f"get {name}: not JSON") from exc
        if not isinstance(data, dict):
            raise GeminiBatchError(GeminiProblem.UNREACHABLE, f"get {name}: not an object")
        return batch_from_rest(data)

    async def cancel(self, name: str) -> None:
        """Ask Gemini to stop a batch."""
        client = await self._genai()
        async with _translated("cancel"):
            await client.aio.batches.cancel(name=name)

    async def delete(self, name: str) -> None:
        """Delete an ended batch job's record, so listing for a display name stays short; one gone is no error."""
        client = await self._genai()
        try:
            async with _translated("delete"):
                await client.aio.batches.delete(name=name)
        except GeminiBatchError as exc:
            if exc.problem is not GeminiProblem.NOT_FOUND:
                raise

    async def delete_file(self, name: str) -> None:
        """Delete an uploaded or result file; one already gone (or expired) is no error."""
        client = await self._genai()
        try:
            async with _translated("delete file"):
                await client.aio.files.delete(name=name)
        except GeminiBatchError as exc:
            # The Files API answers 403 (not 404) for a file that is gone (ai.google.dev/api/files).
            if exc.status not in (403, 404):
                raise


@contextlib.asynccontextmanager
async def _translated(what: str) -> AsyncIterator[None]:
    """Turn what a call raises into `GeminiBatchError`: the dispatcher acts on the problem, never on SDK types."""
    try:
        yield
    except GeminiBatchError:
        raise
    except genai_errors.APIError as exc:
        code = int(exc.code or 0)
        detail = f"{what}: {code} {exc.status or ''} {exc.message or ''}".strip()
        # A wrong key is a 400 whose details name the reason API_KEY_INVALID (gemini-api/docs/troubleshooting).
        reasons = json.dumps(exc.details, default=str)[:2000]
        raise GeminiBatchError(_problem_of_status(code, f"{detail} {reasons}"), detail, status=code) from exc
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise GeminiBatchError(GeminiProblem.UNREACHABLE, f"{what}: {type(exc).__name__}") from exc
