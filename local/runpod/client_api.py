"""The local endpoint's client face: RunPod's REST API v2 (`run`, `runsync`, `status`, `cancel`, …) behind a key.

RunPod's rules it enforces, each from the page cited in `bot.runpod.wire` (client limits):

| rule | answer |
|---|---|
| rate limits per route family (`local.runpod.limits`) | 429 `{"error": ...}`, no `Retry-After` |
| request body over 10 MB on `/run`, 20 MB on `/runsync` | 413 `{"error": ...}` |
| `/run` or `/runsync` while the queue holds max(50, 500 x WorkersMax) jobs (`queue_limit`) | 429 `{"error": ...}` |
| `policy.executionTimeout` not an integer in (5000 ms, 7 days] | 400 `{"error": ...}` |
| `policy.ttl` not an integer in [10 s, 7 days] | 400 `{"error": ...}` |
| `/runsync?wait=` not an integer in [1000, 300000] ms | 400 `{"error": ...}` |
| results kept 30 min after `/run`, 1 min after `/runsync`, then `/status` is 404 | |
| `webhook`: the final `/status` body POSTed, retried 2 more times 10 s apart until it answers 200 | |

RunPod documents the limits, not the status and body of every refusal: where it does not, the stand-in answers with
HTTP's own status for the case and RunPod's usual error body.
"""

import asyncio
import contextlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.runpod.types import RemoteStatus
from bot.runpod.wire import RUNPOD_BODY_LIMITS, RUNSYNC_WAIT_RANGE_MS
from local.runpod.jobs import Job
from local.runpod.queue import JobQueue
from local.runpod.webhooks import webhook_problem

log = logging.getLogger(__name__)

_HandlerT = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ClientApi(JobQueue):
    """The handlers of the client face; `_client_face` checks the endpoint id and the Bearer key first."""

    def _client_face(self, handler: _HandlerT, family: str | None) -> _HandlerT:
        async def checked(request: web.Request) -> web.StreamResponse:
            if self.client_offline:
                # An outage of RunPod's API as a client meets it: the connection drops with no answer. Nothing of
                # the request is done, and the worker face (and so the jobs in flight) carries on.
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=503)  # never sent: the connection is gone
            if request.match_info["endpoint"] != self.endpoint_id:
                return web.json_response({"error": "endpoint not found"}, status=404)
            auth = request.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ").strip()
            if not secrets.compare_digest(token.encode(), self.api_key.encode()):
                return web.json_response({"error": "Unauthorized"}, status=401)
            refusal = self._gate.admit(family)
            if refusal is not None:
                log.warning("429 on %s: %s", request.path, refusal)
                return web.json_response({"error": refusal}, status=429)
            try:
                return await handler(request)
            finally:
                self._gate.release(family)

        return checked

    async def _run(self, request: web.Request) -> web.StreamResponse:
        job_or_error = await self._submit(request, "run")
        if isinstance(job_or_error, web.StreamResponse):
            return job_or_error
        return web.json_response({"id": job_or_error.id, "status": job_or_error.status.value})

    async def _runsync(self, request: web.Request) -> web.StreamResponse:
        low, high = RUNSYNC_WAIT_RANGE_MS
        wait_ms = _int_or_none(request.query.get("wait", "90000"))
        if wait_ms is None or not low <= wait_ms <= high:
            return _bad_request(f"wait must be an integer number of ms in [{low}, {high}]")
        job_or_error = await self._submit(request, "runsync")
        if isinstance(job_or_error, web.StreamResponse):
            return job_or_error
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(job_or_error.finished.wait(), wait_ms / 1000)
        return web.json_response(job_or_error.body())

    async def _submit(self, request: web.Request, family: str) -> "Job | web.StreamResponse":
        limit = RUNPOD_BODY_LIMITS[family]
        if request.content_length is not None and request.content_length > limit:
            return _too_large(family, limit)
        raw = bytearray()
        while chunk := await request.content.readany():  # a body sent without Content-Length is counted as it comes
            raw += chunk
            if len(raw) > limit:
                return _too_large(family, limit)
        try:
            body = json.loads(raw)
        except ValueError:
            return _bad_request("body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
            return _bad_request("'input' must be an object")
        policy = body.get("policy") or {}
        if not isinstance(policy, dict):
            return _bad_request("'policy' must be an object")
        execution_ms = _policy_ms(policy, "executionTimeout", self._default_execution_timeout_ms)
        ttl_ms = _policy_ms(policy, "ttl", self._default_ttl_ms)
        for name, value, (low, high) in (
            ("executionTimeout", execution_ms, self._execution_timeout_range_ms),
            ("ttl", ttl_ms, self._ttl_range_ms),
        ):
            if value is None or not low <= value <= high:
                return _bad_request(f"policy.{name} must be an integer number of ms in [{low}, {high}]")
        assert execution_ms is not None and ttl_ms is not None
        if (queued := self._queued()) >= self._max_queue:
            # RunPod's queue limit (`bot.runpod.wire.queue_limit`, its source): 429, nothing queued.
            log.warning("429 on /%s: the queue holds %d jobs", family, queued)
            return web.json_response({"error": f"queue is full: {queued} jobs waiting"}, status=429)
        webhook = body.get("webhook")
        if webhook is not None:
            problem = webhook_problem(webhook)
            if problem is not None:
                return _bad_request(problem)
        job = Job(
            id=f"{uuid.uuid4()}-l1",
            input=body["input"],
            execution_timeout_s=execution_ms / 1000,
            ttl_s=ttl_ms / 1000,
            low_priority=bool(policy.get("lowPriority", False)),
            submitted_at=time.monotonic(),
            retention_s=self._sync_retention_s if family == "runsync" else self._retention_s,
            webhook=webhook,
        )
        self._jobs[job.id] = job
        (self._low_queue if job.low_priority else self._queue).append(job.id)
        log.info("job %s queued", job.id, extra={"action": "enqueue", "remote_id": job.id})
        self._notify_queue()
        return job

    async def _status(self, request: web.Request) -> web.StreamResponse:
        job = self._known(request)
        if job is None:
            return _not_found()
        return web.json_response(job.body())

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        job = self._known(request)
        if job is None:
            return _not_found()
        chunks, job.stream = job.stream, []
        return web.json_response({"status": job.status.value, "stream": [{"output": c} for c in chunks]})

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        job = self._known(request)
        if job is None:
            return _not_found()
        if not job.status.is_final:
            self._finish(job, RemoteStatus.CANCELLED, stop=True)
        return web.json_response({"id": job.id, "status": job.status.value})

    async def _retry(self, request: web.Request) -> web.StreamResponse:
        job = self._known(request)
        if job is None:
            return _not_found()
        if job.status not in (RemoteStatus.FAILED, RemoteStatus.TIMED_OUT):
            return web.json_response({"error": f"job is {job.status.value}; only FAILED/TIMED_OUT retry"}, status=400)
        job.status, job.output, job.error, job.finished_at = RemoteStatus.IN_QUEUE, None, None, None
        job.worker_id, job.started_at, job.execution_ms = None, None, None
        job.submitted_at, job.finished = time.monotonic(), asyncio.Event()
        job.retries += 1
        self._counts["retried"] += 1
        self._queue.append(job.id)
        self._notify_queue()
        return web.json_response({"id": job.id, "status": job.status.value})

    async def _purge(self, request: web.Request) -> web.StreamResponse:
        removed = 0
        for queue in (self._queue, self._low_queue):
            while queue:
                job = self._jobs.pop(queue.popleft(), None)
                if job is not None:
                    removed += 1
                    job.finished.set()
        return web.json_response({"removed": removed, "status": "completed"})

    async def _health(self, request: web.Request) -> web.StreamResponse:
        in_queue = sum(1 for j in self._jobs.values() if j.status is RemoteStatus.IN_QUEUE)
        in_progress = sum(1 for j in self._jobs.values() if j.status is RemoteStatus.IN_PROGRESS)
        live = self.workers()
        # Every field RunPod's /health returns (https://docs.runpod.io/serverless/endpoints/operation-reference,
        # "/health"): `ready` counts workers that can take a job now, `throttled` those RunPod holds back for lack of
        # GPUs (never, here).
        idle = sum(1 for w in live if w.ready and not w.jobs)
        workers = {
            "idle": idle,
            "initializing": sum(1 for w in live if not w.ready),
            "ready": idle,
            "running": sum(1 for w in live if w.jobs),
            "throttled": 0,
            "unhealthy": max(0, self._n_workers - sum(1 for w in live if w.slot is not None)),
        }
        jobs = {**self._counts, "inQueue": in_queue, "inProgress": in_progress}
        return web.json_response({"jobs": jobs, "workers": workers})


def _not_found() -> web.Response:
    return web.json_response({"error": "request does not exist"}, status=404)


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def _too_large(family: str, limit: int) -> web.Response:
    return web.json_response({"error": f"request body over the {limit // 1_000_000} MB limit of /{family}"}, status=413)


def _int_or_none(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _policy_ms(policy: dict[str, Any], key: str, default: int) -> int | None:
    """Return a policy time in ms, or None when it is not an integer (a float, a string or a bool)."""
    value = policy.get(key, default)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
