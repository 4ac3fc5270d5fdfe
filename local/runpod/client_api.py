"""The local endpoint's client face: RunPod's REST API v2 (`run`, `runsync`, `status`, `cancel`, …) behind a key."""

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.runpod.types import RemoteStatus
from local.runpod.jobs import Job
from local.runpod.queue import JobQueue, int_param

log = logging.getLogger(__name__)

_HandlerT = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ClientApi(JobQueue):
    """The handlers of the client face; `_client_face` checks the endpoint id and the Bearer key first."""

    def _client_face(self, handler: _HandlerT) -> _HandlerT:
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
            return await handler(request)

        return checked

    async def _run(self, request: web.Request) -> web.StreamResponse:
        job_or_error = await self._submit(request)
        if isinstance(job_or_error, web.StreamResponse):
            return job_or_error
        return web.json_response({"id": job_or_error.id, "status": job_or_error.status.value})

    async def _runsync(self, request: web.Request) -> web.StreamResponse:
        job_or_error = await self._submit(request)
        if isinstance(job_or_error, web.StreamResponse):
            return job_or_error
        wait_ms = int_param(request.query.get("wait"), default=90_000, low=1000, high=300_000)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(job_or_error.finished.wait(), wait_ms / 1000)
        return web.json_response(job_or_error.body())

    async def _submit(self, request: web.Request) -> "Job | web.StreamResponse":
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
            return web.json_response({"error": "'input' must be an object"}, status=400)
        policy = body.get("policy") or {}
        if not isinstance(policy, dict):
            return web.json_response({"error": "'policy' must be an object"}, status=400)
        try:
            execution_ms = int(policy.get("executionTimeout", self._default_execution_timeout_ms))
            ttl_ms = int(policy.get("ttl", self._default_ttl_ms))
        except (TypeError, ValueError):
            return web.json_response({"error": "policy times must be integers (ms)"}, status=400)
        if execution_ms <= 0 or ttl_ms <= 0:
            return web.json_response({"error": "policy times must be positive"}, status=400)
        job = Job(
            id=f"{uuid.uuid4()}-l1",
            input=body["input"],
            execution_timeout_s=execution_ms / 1000,
            ttl_s=ttl_ms / 1000,
            low_priority=bool(policy.get("lowPriority", False)),
            submitted_at=time.monotonic(),
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
        workers = {
            "idle": sum(1 for w in live if w.ready and not w.jobs),
            "running": sum(1 for w in live if w.jobs),
            "initializing": sum(1 for w in live if not w.ready),
            "unhealthy": max(0, self._n_workers - sum(1 for w in live if w.slot is not None)),
        }
        jobs = {**self._counts, "inQueue": in_queue, "inProgress": in_progress}
        return web.json_response({"jobs": jobs, "workers": workers})


def _not_found() -> web.Response:
    return web.json_response({"error": "request does not exist"}, status=404)
