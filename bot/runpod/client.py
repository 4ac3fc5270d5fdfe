"""`RunpodHttpGateway`: the `RunpodGateway` port over RunPod Serverless's REST API v2 (aiohttp).

The same client talks to `https://api.runpod.ai/v2/{endpoint}` and to the embedded local endpoint
(`local.runpod`); only the base URL, endpoint id and key change.

Retries: 429, 5xx and connection failures are retried with capped exponential backoff and full jitter (a
`Retry-After` header is honoured up to the cap). `/run` is not idempotent, so it is not retried after a failure
that may have happened once the request was sent (a timeout or a dropped connection); the error then carries
`maybe_submitted=True` and the caller decides (the worker skips outputs that already exist, so a resubmission
costs nothing twice).

Pacing: every attempt waits for room under RunPod's documented rate limits (`bot.runpod.pacing.RoutePacer`), so a
burst (cancelling hundreds of chunks, polling a large batch) is spread out by the bot rather than refused by RunPod.
"""

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import aiohttp
from pydantic import SecretStr

from bot.runpod.errors import (
    RunpodAuthError,
    RunpodProtocolError,
    RunpodRejectedError,
    RunpodUnavailableError,
)
from bot.runpod.pacing import RoutePacer
from bot.runpod.types import EndpointHealth, RemoteJob, RemoteStatus
from bot.runpod.wire import route_family

if TYPE_CHECKING:
    from bot.runpod.wire import HealthBody, Policy, RunRequest, StatusBody

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.runpod.ai/v2"

# Statuses RunPod's docs list that the API answers under another name (runpod/docs#511).
_STATUS_ALIASES = {"RUNNING": RemoteStatus.IN_PROGRESS}


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Retry budget for one request: capped exponential delays with full jitter."""

    max_attempts: int = 5
    base_delay_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, attempt: int, *, rand: float, retry_after_s: float | None = None) -> float:
        """Return the delay before attempt `attempt + 1` (attempt counts from 1); `rand` is uniform in [0, 1)."""
        ceiling = min(self.cap_s, self.base_delay_s * 2.0 ** (attempt - 1))
        jittered = ceiling * (0.5 + rand / 2)
        if retry_after_s is not None:
            return min(self.cap_s, max(jittered, retry_after_s))
        return jittered


class _RetryableError(Exception):
    """Internal: one attempt failed in a way worth repeating."""

    def __init__(self, message: str, *, status_code: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after_s = retry_after_s


class RunpodHttpGateway:
    """Talk to one RunPod Serverless endpoint over its REST API v2.

    Args:
        session: a shared `aiohttp.ClientSession`, owned by the caller.
        endpoint_id: the endpoint's id (`local` for the embedded endpoint).
        api_key: sent as `Authorization: Bearer …`; never logged.
        base_url: `https://api.runpod.ai/v2` in production, the local endpoint's `…/v2` otherwise.
        request_timeout_s: total timeout of one HTTP attempt.
        backoff: retry budget for 429, 5xx and connection failures.
        sleep: awaited between attempts (tests inject a recorder).
        rand: uniform random numbers in [0, 1) for the jitter.
        pacer: keeps requests under RunPod's rate limits; one with RunPod's documented limits when None.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        endpoint_id: str,
        api_key: SecretStr | str,
        base_url: str = DEFAULT_BASE_URL,
        request_timeout_s: float = 30.0,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        pacer: RoutePacer | None = None,
    ) -> None:
        if not endpoint_id or "/" in endpoint_id:
            raise ValueError("endpoint_id must be a non-empty path segment")
        self._http = session
        self._base = f"{base_url.rstrip('/')}/{endpoint_id}"
        self._endpoint_id = endpoint_id
        key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self._headers = {"Authorization": f"Bearer {key.get_secret_value()}"}
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._rand = rand
        self._pacer = pacer or RoutePacer()

    def __repr__(self) -> str:
        return f"RunpodHttpGateway(base={self._base!r})"

    @property
    def endpoint_url(self) -> str:
        """The endpoint's base URL (`…/v2/{endpoint}`)."""
        return self._base

    async def run(
        self,
        payload: Mapping[str, object],
        *,
        execution_timeout_ms: int | None = None,
        ttl_ms: int | None = None,
        low_priority: bool = False,
    ) -> RemoteJob:
        """Queue a job whose `input` is `payload`; return its id and first status (normally IN_QUEUE)."""
        body: RunRequest = {"input": dict(payload)}
        policy: Policy = {}
        if execution_timeout_ms is not None:
            policy["executionTimeout"] = execution_timeout_ms
        if ttl_ms is not None:
            policy["ttl"] = ttl_ms
        if low_priority:
            policy["lowPriority"] = True
        if policy:
            body["policy"] = policy
        status, data = await self._request("POST", "/run", body=body, idempotent=False)
        self._raise_for_status("/run", status, data)
        job = parse_status_body(data)
        log.info("runpod job %s submitted (%s)", job.id, job.status, extra={"action": "submit", "remote_id": job.id})
        return job

    async def status(self, job_id: str) -> RemoteJob:
        """Return the job's current status; NOT_FOUND when RunPod answers 404 (forgotten after retention or ttl)."""
        status, data = await self._request("GET", f"/status/{_segment(job_id)}", idempotent=True)
        if status == 404:
            return RemoteJob(id=job_id, status=RemoteStatus.NOT_FOUND, raw=_as_mapping(data))
        self._raise_for_status("/status", status, data)
        job = parse_status_body(data, fallback_id=job_id)
        log.debug("runpod job %s is %s", job.id, job.status, extra={"action": "poll", "remote_id": job.id})
        return job

    async def cancel(self, job_id: str) -> RemoteJob:
        """Cancel a queued or running job; NOT_FOUND when RunPod no longer knows it."""
        status, data = await self._request("POST", f"/cancel/{_segment(job_id)}", idempotent=True)
        if status == 404:
            return RemoteJob(id=job_id, status=RemoteStatus.NOT_FOUND, raw=_as_mapping(data))
        self._raise_for_status("/cancel", status, data)
        job = parse_status_body(data, fallback_id=job_id)
        log.info("runpod job %s cancel: %s", job.id, job.status, extra={"action": "cancel", "remote_id": job.id})
        return job

    async def health(self, *, once: bool = False) -> EndpointHealth:
        """Return the endpoint's job and worker counts; `once`: a single attempt (a probe that is itself retried)."""
        status, data = await self._request("GET", "/health", idempotent=True, max_attempts=1 if once else None)
        self._raise_for_status("/health", status, data)
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("jobs"), dict)
            or not isinstance(data.get("workers"), dict)
        ):
            raise RunpodProtocolError("runpod /health answer lacks jobs/workers", status_code=status)
        body = cast("HealthBody", data)
        return EndpointHealth(jobs=_int_counts(body["jobs"]), workers=_int_counts(body["workers"]))

    async def purge_queue(self) -> int:
        """Remove every queued job; return how many were removed."""
        status, data = await self._request("POST", "/purge-queue", idempotent=True)
        self._raise_for_status("/purge-queue", status, data)
        removed = data.get("removed") if isinstance(data, dict) else None
        if not isinstance(removed, int):
            raise RunpodProtocolError("runpod /purge-queue answer lacks 'removed'", status_code=status)
        return removed

    # ------------------------------------------------------------------------------------------------ transport

    async def _request(
        self, method: str, path: str, *, body: object = None, idempotent: bool, max_attempts: int | None = None
    ) -> tuple[int, object]:
        """Send one request with retries; return the final HTTP status and the parsed JSON body (or None)."""
        max_attempts = max_attempts or self._backoff.max_attempts
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(method, path, body=body, idempotent=idempotent)
            except _RetryableError as exc:
                if attempt >= max_attempts:
                    raise RunpodUnavailableError(
                        f"runpod {method} {path}: {exc} (gave up after {attempt} attempts)",
                        status_code=exc.status_code,
                    ) from exc
                delay = self._backoff.delay(attempt, rand=self._rand(), retry_after_s=exc.retry_after_s)
                log.warning(
                    "runpod %s %s failed (%s); retry %d in %.2fs",
                    method,
                    path,
                    exc,
                    attempt,
                    delay,
                    extra={"action": "retry"},
                )
                await self._sleep(delay)

    async def _attempt(self, method: str, path: str, *, body: object, idempotent: bool) -> tuple[int, object]:
        sent = False
        try:
            async with (
                self._pacer.slot(route_family(path)),
                self._http.request(
                    method, self._base + path, json=body, headers=self._headers, timeout=self._timeout
                ) as resp,
            ):
                sent = True
                if resp.status == 429 or resp.status >= 500:
                    raise _RetryableError(
                        f"HTTP {resp.status}",
                        status_code=resp.status,
                        retry_after_s=_retry_after(resp.headers.get("Retry-After")),
                    )
                text = await resp.text()
                return resp.status, _parse_json(text)
        except _RetryableError:
            raise
        except aiohttp.ClientConnectorError as exc:
            # The connection was never made, so not even `/run` can have reached RunPod.
            raise _RetryableError(f"cannot connect: {exc.os_error.strerror or exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = type(exc).__name__
            if not idempotent:
                raise RunpodUnavailableError(
                    f"runpod {method} {path}: {reason} after sending", maybe_submitted=True
                ) from exc
            raise _RetryableError(f"{reason}{' after response' if sent else ''}") from exc

    @staticmethod
    def _raise_for_status(op: str, status: int, data: object) -> None:
        if 200 <= status < 300:
            return
        detail = _error_detail(data)
        if status in (401, 403):
            raise RunpodAuthError(f"runpod {op} refused the API key (HTTP {status})", status_code=status)
        raise RunpodRejectedError(f"runpod {op} returned HTTP {status}: {detail}", status_code=status)


def _segment(job_id: str) -> str:
    if not job_id or "/" in job_id or job_id in (".", ".."):
        raise ValueError(f"not a RunPod job id: {job_id!r}")
    return job_id


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from RunPod, so fall back to our own backoff
    return seconds if seconds >= 0 else None


def _parse_json(text: str) -> object:
    if not text.strip():
        return None
    try:
        return cast("object", json.loads(text))
    except ValueError:
        return text[:200]


def _error_detail(data: object) -> str:
    if isinstance(data, dict):
        for key in ("error", "message", "detail"):
            if key in data:
                return str(data[key])[:200]
    return str(data)[:200] if data is not None else "(empty body)"


def _as_mapping(data: object) -> Mapping[str, object]:
    return cast("Mapping[str, object]", data) if isinstance(data, dict) else {}


def _int_counts(values: Mapping[str, Any]) -> dict[str, int]:
    return {str(k): int(v) for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _optional_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    return None


def parse_status_body(data: object, *, fallback_id: str | None = None) -> RemoteJob:
    """Turn a `/run`, `/status` or `/cancel` body into a `RemoteJob`.

    `output` is progress while the job is not COMPLETED and the payload says `type: progress` (or has no type);
    it is the final manifest only when its `type` is `result`. COMPLETED without a manifest gives `result=None`.
    On CANCELLED and TIMED_OUT the `output` RunPod still shows is the last progress, kept as `progress`.

    Raises:
        RunpodProtocolError: the body is not an object, or its id or status is missing or unknown.
    """
    if not isinstance(data, dict):
        raise RunpodProtocolError(f"runpod answer is not a JSON object: {str(data)[:100]!r}")
    body = cast("StatusBody", data)
    job_id = body.get("id", fallback_id)
    if not isinstance(job_id, str) or not job_id:
        raise RunpodProtocolError("runpod answer has no job id")
    raw_status = body.get("status")
    if not isinstance(raw_status, str):
        raise RunpodProtocolError(f"runpod answer for {job_id} has no status")
    try:
        status = _STATUS_ALIASES.get(raw_status) or RemoteStatus(raw_status)
    except ValueError as exc:
        raise RunpodProtocolError(f"runpod answer for {job_id} has unknown status {raw_status!r}") from exc
    if status is RemoteStatus.NOT_FOUND:
        raise RunpodProtocolError(f"runpod answer for {job_id} has unknown status {raw_status!r}")

    output = body.get("output")
    kind = output.get("type") if isinstance(output, dict) else None
    progress: Mapping[str, object] | None = None
    result: Mapping[str, object] | None = None
    if isinstance(output, dict):
        if kind == "result" and status in (RemoteStatus.COMPLETED, RemoteStatus.FAILED):
            result = cast("Mapping[str, object]", output)
        elif status is not RemoteStatus.COMPLETED and kind in ("progress", None):
            progress = cast("Mapping[str, object]", output)

    error = body.get("error")
    if error is not None and not isinstance(error, str):
        # RunPod turns a dict `error` into odd states (runpod-python#299); keep it readable.
        error = json.dumps(error, sort_keys=True, default=str)
    return RemoteJob(
        id=job_id,
        status=status,
        progress=progress,
        result=result,
        error=error or None,
        delay_ms=_optional_int(body.get("delayTime")),
        execution_ms=_optional_int(body.get("executionTime")),
        retries=_optional_int(body.get("retries")) or 0,
        raw=cast("Mapping[str, object]", data),
    )
