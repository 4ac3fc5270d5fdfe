"""A local RunPod-compatible Serverless endpoint that runs the real worker as subprocesses.

One aiohttp app serves both faces of RunPod Serverless on 127.0.0.1:

* the **client API** of REST v2 under `/v2/{endpoint}/`: `run`, `runsync`, `status/{id}`, `stream/{id}`,
  `cancel/{id}`, `retry/{id}`, `purge-queue`, `health` (Bearer key), so `RunpodHttpGateway` talks to it unchanged;
* the **worker protocol** the runpod SDK's worker runtime speaks (runpod 1.12, observed in
  `/work/shared/research/runpod.md` §2.3): long-polled `job-take/{worker}` and `job-take-batch/{worker}`,
  `job-done/{worker}/{job}` (JSON sent as `application/x-www-form-urlencoded`; `"status": "IN_PROGRESS"` marks
  progress), `job-stream/{worker}/{job}`, long-polled `job-stop/{worker}` and `ping/{worker}`.

It starts N worker processes (default `python -m worker`, unmodified) with the environment the SDK's production
runtime needs, restarts a worker that exits (with backoff), and applies RunPod's rules: `executionTimeout` →
TIMED_OUT and the worker told to stop the job; cancel removes queued jobs and stops running ones; `ttl` (from
submission) forgets a job even while it runs; finished jobs are kept for a retention time, then `/status` answers
404; a job whose worker dies mid-run is requeued `max_requeues` times (once by default), then FAILED.
Queued jobs go to the least busy of the workers asking for them, split evenly among equally busy ones, so a worker
that asks for a batch of four while others wait idle gets its share, not all four (each worker is one Python
process: one that ran every chunk would be held back by its own CPU while the others sat still).

Run it in-process (`async with LocalEndpoint(workers=2, env=...) as ep: ep.base_url, ep.endpoint_id, ep.api_key`)
or standalone: `python -m local.runpod --port 8790 --workers 2`.
"""

import asyncio
import contextlib
import json
import logging
import math
import os
import secrets
import signal
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, cast

from aiohttp import web

from bot.core.restart import RestartBackoff
from bot.runpod.types import RemoteStatus
from local.lifetime import die_with_parent
from local.runpod.jobs import Compact, Job, WorkerInfo
from local.runpod.processes import (
    DEFAULT_WORKER_COMMAND,
    PASS_THROUGH_NAMES,
    PASS_THROUGH_PREFIXES,
    PROJECT_ROOT,
    exited,
    finish_relay,
    relay_output,
)

log = logging.getLogger(__name__)

_HandlerT = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LocalEndpoint:
    """A RunPod-compatible Serverless endpoint on 127.0.0.1 running N worker subprocesses.

    Args:
        workers: how many worker processes to keep running (0: only external workers pointed at it).
        env: extra environment for the workers (e.g. `STORAGE_URL`, `GEMINI_BASE_URL`); it overrides what is passed
            through from this process (`STORAGE_*`, `GEMINI_*`, `WORKER_*`, `PATH`, …; never the bot's secrets).
        worker_command: the worker's argv; default `python -m worker`.
        host, port: where to listen (port 0 picks a free one).
        endpoint_id: the `{endpoint}` path segment.
        api_key: the client API key (Bearer); a random one when None.
        retention_s: how long finished jobs stay readable (RunPod: 30 min), then 404.
        default_execution_timeout_ms, default_ttl_ms: used when `/run` has no `policy` (RunPod: 10 min, 24 h).
        max_requeues: how many times a job whose worker died is put back in the queue before it FAILS.
        take_wait_s, stop_wait_s: how long `job-take` and `job-stop` long-polls are held open. The SDK sleeps 1 s
            after an empty job-stop answer, blind to stops meanwhile, so a stop poll is held long (60 s, under the
            SDK's 90 s timeout): a cancel then reaches a held poll at once instead of landing in that blind second.
        restart_backoff_s: (first, cap) delay before restarting a worker that exited; it doubles while workers
            keep dying within 10 x first of starting.
        stop_grace_s: how long a worker has to exit after SIGTERM before it is killed.
        cwd: the workers' working directory (default: this process's).
    """

    def __init__(
        self,
        *,
        workers: int = 2,
        env: Mapping[str, str] | None = None,
        worker_command: Sequence[str] = DEFAULT_WORKER_COMMAND,
        host: str = "127.0.0.1",
        port: int = 0,
        endpoint_id: str = "local",
        api_key: str | None = None,
        retention_s: float = 30 * 60,
        default_execution_timeout_ms: int = 600_000,
        default_ttl_ms: int = 24 * 3600 * 1000,
        max_requeues: int = 1,
        take_wait_s: float = 5.0,
        stop_wait_s: float = 60.0,
        restart_backoff_s: tuple[float, float] = (0.5, 30.0),
        stop_grace_s: float = 3.0,
        tick_s: float = 0.05,
        cwd: Path | None = None,
    ) -> None:
        if workers < 0:
            raise ValueError("workers must be >= 0")
        self.endpoint_id = endpoint_id
        self.api_key = api_key or f"local-{secrets.token_urlsafe(18)}"
        self._worker_key = secrets.token_urlsafe(18)
        self._n_workers = workers
        self._extra_env = dict(env or {})
        self._command = list(worker_command)
        self._host = host
        self._port = port
        self._retention_s = retention_s
        self._default_execution_timeout_ms = default_execution_timeout_ms
        self._default_ttl_ms = default_ttl_ms
        self._max_requeues = max_requeues
        self._take_wait_s = take_wait_s
        self._stop_wait_s = stop_wait_s
        self._restart_backoff_s = restart_backoff_s
        self._stop_grace_s = stop_grace_s
        self._tick_s = tick_s
        self._cwd = cwd

        self._jobs: dict[str, Job] = {}
        self._queue: deque[str] = deque()
        self._low_queue: deque[str] = deque()
        self._wake = asyncio.Event()
        self._workers: dict[str, WorkerInfo] = {}
        self._dead: set[str] = set()
        self._slot_generation: dict[int, int] = {}
        self._counts = {"completed": 0, "failed": 0, "retried": 0}
        self._restarts = 0
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.base_url = ""

    # ------------------------------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Listen, then start the worker processes and the deadline keeper."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        assert isinstance(server, asyncio.Server)
        port = server.sockets[0].getsockname()[1]
        self.base_url = f"http://{self._host}:{port}/v2"
        self._tasks.append(asyncio.create_task(self._keep_deadlines(), name="runpod-local-deadlines"))
        for slot in range(self._n_workers):
            self._tasks.append(asyncio.create_task(self._supervise(slot), name=f"runpod-local-worker-{slot}"))
        log.info("local RunPod endpoint %s on %s with %d worker(s)", self.endpoint_id, self.base_url, self._n_workers)

    async def close(self) -> None:
        """Stop the workers (SIGTERM, then SIGKILL after the grace time) and the server."""
        if self._closing:
            return
        self._closing = True
        self._notify_queue()
        for worker in self._workers.values():
            worker.stop_wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        log.info("local RunPod endpoint %s closed", self.endpoint_id)

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait until every worker slot's current process has asked for a job (is ready)."""
        async with asyncio.timeout(timeout_s):
            while not self._closing:
                ready = {w.slot for w in self._workers.values() if w.alive and w.ready and w.slot is not None}
                if len(ready) >= self._n_workers:
                    return
                await asyncio.sleep(0.05)

    # ------------------------------------------------------------------------------------------------ inspection

    @property
    def closing(self) -> bool:
        """True once `close()` has begun."""
        return self._closing

    def workers(self) -> list[WorkerInfo]:
        """Return the live worker processes."""
        return [w for w in self._workers.values() if w.alive]

    def worker_of(self, job_id: str) -> str | None:
        """Return the id of the worker running the job, if any."""
        job = self._jobs.get(job_id)
        return job.worker_id if job is not None and job.status is RemoteStatus.IN_PROGRESS else None

    @property
    def restarts(self) -> int:
        """How many worker processes were started after the first ones."""
        return self._restarts

    def kill_worker(self, worker_id: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send a signal to a worker's process group (tests and chaos drills)."""
        worker = self._workers.get(worker_id)
        if worker is None or worker.pid is None:
            raise KeyError(worker_id)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, sig)

    # ------------------------------------------------------------------------------------------------ the app

    def app(self) -> web.Application:
        """Build the aiohttp application of both faces."""
        app = web.Application(client_max_size=20 * 1024 * 1024)
        p = "/v2/{endpoint}"
        client: list[tuple[str, str, _HandlerT]] = [
            ("POST", "/run", self._run),
            ("POST", "/runsync", self._runsync),
            ("GET", "/status/{id}", self._status),
            ("POST", "/status/{id}", self._status),
            ("GET", "/stream/{id}", self._stream),
            ("POST", "/stream/{id}", self._stream),
            ("POST", "/cancel/{id}", self._cancel),
            ("POST", "/retry/{id}", self._retry),
            ("POST", "/purge-queue", self._purge),
            ("GET", "/health", self._health),
        ]
        for method, path, handler in client:
            app.router.add_route(method, p + path, self._client_face(handler))
        app.router.add_get(p + "/job-take/{worker}", self._job_take)
        app.router.add_get(p + "/job-take-batch/{worker}", self._job_take)
        app.router.add_post(p + "/job-done/{worker}/{id}", self._job_done)
        app.router.add_post(p + "/job-stream/{worker}/{id}", self._job_stream)
        app.router.add_get(p + "/job-stop/{worker}", self._job_stop)
        app.router.add_get(p + "/ping/{worker}", self._ping)
        return app

    def _client_face(self, handler: _HandlerT) -> _HandlerT:
        async def checked(request: web.Request) -> web.StreamResponse:
            if request.match_info["endpoint"] != self.endpoint_id:
                return web.json_response({"error": "endpoint not found"}, status=404)
            auth = request.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ").strip()
            if not secrets.compare_digest(token.encode(), self.api_key.encode()):
                return web.json_response({"error": "Unauthorized"}, status=401)
            return await handler(request)

        return checked

    # ------------------------------------------------------------------------------------------------ client face

    async def _run(self, request: web.Request) -> web.StreamResponse:
        job_or_error = await self._submit(request)
        if isinstance(job_or_error, web.StreamResponse):
            return job_or_error
        return web.json_response({"id": job_or_error.id, "status": job_or_error.status.value})

    async def _runsync(self, request: web.Request) -> web.StreamResponse:
        job_or_error = await self._submit(request)
        if isinstance(job_or_error, web.StreamResponse):
            return job_or_error
        wait_ms = _int_param(request.query.get("wait"), default=90_000, low=1000, high=300_000)
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

    def _known(self, request: web.Request) -> Job | None:
        return self._jobs.get(request.match_info["id"])

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

    # ------------------------------------------------------------------------------------------------ worker face

    def _worker(self, request: web.Request) -> WorkerInfo | None:
        """Return the calling worker, registering an external one on first contact; None for a dead generation."""
        if request.match_info["endpoint"] != self.endpoint_id:
            return None
        worker_id = request.match_info["worker"]
        if worker_id in self._dead:
            return None
        worker = self._workers.get(worker_id)
        if worker is None:
            log.info("external worker %s connected", worker_id)
            worker = self._workers[worker_id] = WorkerInfo(id=worker_id, slot=None)
        return worker

    async def _job_take(self, request: web.Request) -> web.StreamResponse:
        worker = self._worker(request)
        if worker is None:
            return web.Response(status=204)
        worker.ready = True
        batch = request.path.rsplit("/", 2)[-2] == "job-take-batch"
        wanted = _int_param(request.query.get("batch_size"), default=1, low=1, high=64) if batch else 1
        deadline = time.monotonic() + self._take_wait_s
        worker.taking = True
        try:
            while not self._closing and worker.alive and not worker.retiring:
                jobs = self._take(worker, wanted)
                if jobs:
                    payload = [{"id": j.id, "input": j.input} for j in jobs]
                    return web.json_response(payload if batch else payload[0])
                if not await _wait_until(self._wake, deadline):
                    break
        finally:
            worker.taking = False
            if self._queue or self._low_queue:
                self._notify_queue()  # a job this worker left to a less busy one is not stranded if that one left
        return web.Response(status=204)

    def _share(self, worker: WorkerInfo, wanted: int) -> int:
        """Return how many queued jobs `worker` may take now: none while a less busy worker asks too.

        Among the workers asking now, the least busy ones split the queue evenly; the rest wait for the next job.
        """
        peers = [w for w in self._workers.values() if (w.taking or w is worker) and w.alive and not w.retiring]
        load = len(worker.jobs)
        if any(len(peer.jobs) < load for peer in peers):
            return 0
        equals = sum(1 for peer in peers if len(peer.jobs) == load)
        return min(wanted, math.ceil((len(self._queue) + len(self._low_queue)) / equals))

    def _take(self, worker: WorkerInfo, wanted: int) -> list[Job]:
        taken: list[Job] = []
        now = time.monotonic()
        wanted = self._share(worker, wanted)
        for queue in (self._queue, self._low_queue):
            while queue and len(taken) < wanted:
                job = self._jobs.get(queue.popleft())
                if job is None or job.status is not RemoteStatus.IN_QUEUE:
                    continue
                job.status, job.worker_id, job.started_at = RemoteStatus.IN_PROGRESS, worker.id, now
                job.takes += 1
                if job.delay_ms is None:
                    job.delay_ms = round((now - job.submitted_at) * 1000)
                worker.jobs.add(job.id)
                taken.append(job)
                log.info("job %s taken by %s", job.id, worker.id, extra={"action": "claim", "remote_id": job.id})
        return taken

    async def _read_worker_body(self, request: web.Request) -> dict[str, Any] | None:
        # The SDK sends JSON text labelled application/x-www-form-urlencoded (rp_http._transmit), so read raw text.
        try:
            body = json.loads(await request.text())
        except ValueError:
            return None
        return cast("dict[str, Any]", body) if isinstance(body, dict) else None

    async def _job_done(self, request: web.Request) -> web.StreamResponse:
        worker = self._worker(request)
        body = await self._read_worker_body(request)
        if body is None:
            return web.json_response({"error": "body is not a JSON object"}, status=400)
        job = self._known(request)
        if worker is None or job is None or job.status is not RemoteStatus.IN_PROGRESS or job.worker_id != worker.id:
            # Late progress (the SDK sends it from a thread, unordered), a result after a timeout or cancel, or a
            # message from a worker the job was taken from: RunPod ignores these too.
            log.debug("ignored job-done for %s from %s", request.match_info["id"], request.match_info["worker"])
        elif body.get("status") == "IN_PROGRESS":
            job.output = body.get("output")
        else:
            error = body.get("error")
            job.output = body.get("output")
            if error:
                job.error = error if isinstance(error, str) else json.dumps(error, default=str)
                self._finish(job, RemoteStatus.FAILED)
            else:
                self._finish(job, RemoteStatus.COMPLETED)
        if worker is not None and body.get("stopPod") and worker.proc is not None:
            log.info("worker %s asked to be refreshed", worker.id)
            self._retire(worker)
            with contextlib.suppress(ProcessLookupError):
                worker.proc.terminate()
        return web.json_response({})

    async def _job_stream(self, request: web.Request) -> web.StreamResponse:
        worker = self._worker(request)
        body = await self._read_worker_body(request)
        job = self._known(request)
        if body is not None and worker is not None and job is not None and job.worker_id == worker.id:
            job.stream.append(body.get("output"))
        return web.json_response({})

    async def _job_stop(self, request: web.Request) -> web.StreamResponse:
        worker = self._worker(request)
        if worker is None:
            return web.Response(status=204)
        deadline = time.monotonic() + self._stop_wait_s
        while not self._closing and worker.alive and not worker.retiring:
            if worker.stop:
                ids = sorted(worker.stop)
                worker.stop.clear()
                return web.json_response({"jobsToStop": ids})
            if not await _wait_until(worker.stop_wake, deadline):
                break
        return web.Response(status=204)

    async def _ping(self, request: web.Request) -> web.StreamResponse:
        worker = self._worker(request)
        if worker is not None:
            worker.last_ping_at = time.monotonic()
            worker.runpod_version = request.query.get("runpod_version", worker.runpod_version)
            if request.query.get("status") == "unhealthy":
                log.warning(
                    "worker %s failed its fitness check %s: %s",
                    worker.id,
                    request.query.get("check", "?"),
                    request.query.get("reason", "?"),
                )
        return web.json_response({})

    # ------------------------------------------------------------------------------------------------ job rules

    def _notify_queue(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    def _retire(self, worker: WorkerInfo) -> None:
        worker.retiring = True
        worker.stop_wake.set()
        self._notify_queue()

    def _tell_stop(self, job: Job) -> None:
        worker = self._workers.get(job.worker_id or "")
        if worker is not None and worker.alive:
            worker.stop.add(job.id)
            worker.stop_wake.set()
            worker.stop_wake = asyncio.Event()

    def _release(self, job: Job) -> None:
        worker = self._workers.get(job.worker_id or "")
        if worker is not None:
            worker.jobs.discard(job.id)

    def _finish(self, job: Job, status: RemoteStatus, *, stop: bool = False) -> None:
        now = time.monotonic()
        was_running = job.status is RemoteStatus.IN_PROGRESS
        if was_running and job.started_at is not None:
            elapsed_ms = round((now - job.started_at) * 1000)
            if status is RemoteStatus.TIMED_OUT:
                elapsed_ms = min(elapsed_ms, round(job.execution_timeout_s * 1000))
            job.execution_ms = elapsed_ms
        job.status, job.finished_at = status, now
        if status in (RemoteStatus.COMPLETED, RemoteStatus.CANCELLED):
            # Kept for the retention time only to answer /status, which never shows the input; only FAILED and
            # TIMED_OUT jobs can be retried. A batch of 10,000 items leaves ~400 such jobs here, so keep them small.
            job.input = {}
        if job.output is not None and not isinstance(job.output, Compact):
            job.output = Compact(json.dumps(job.output, separators=(",", ":")))
        if status is RemoteStatus.COMPLETED:
            self._counts["completed"] += 1
        elif status in (RemoteStatus.FAILED, RemoteStatus.TIMED_OUT):
            self._counts["failed"] += 1
        if was_running:
            if stop:
                self._tell_stop(job)
            self._release(job)
        job.finished.set()
        action = {RemoteStatus.COMPLETED: "succeed", RemoteStatus.CANCELLED: "cancel"}.get(status, "fail")
        log.info("job %s %s", job.id, status.value, extra={"action": action, "remote_id": job.id})

    def _forget(self, job: Job, reason: str) -> None:
        if job.status is RemoteStatus.IN_PROGRESS:
            self._tell_stop(job)
            self._release(job)
        self._jobs.pop(job.id, None)
        job.finished.set()
        log.info("job %s forgotten (%s)", job.id, reason, extra={"action": "reclaim", "remote_id": job.id})

    async def _keep_deadlines(self) -> None:
        """Apply executionTimeout, ttl and retention."""
        while True:
            await asyncio.sleep(self._tick_s)
            now = time.monotonic()
            for job in list(self._jobs.values()):
                if job.status.is_final:
                    if job.finished_at is not None and now - job.finished_at >= self._retention_s:
                        self._forget(job, "retention over")
                elif now - job.submitted_at >= job.ttl_s:
                    self._forget(job, "ttl over")
                elif (
                    job.status is RemoteStatus.IN_PROGRESS
                    and job.started_at is not None
                    and now - job.started_at >= job.execution_timeout_s
                ):
                    self._finish(job, RemoteStatus.TIMED_OUT, stop=True)

    def _worker_died(self, worker: WorkerInfo, returncode: int | None) -> None:
        worker.alive = False
        self._dead.add(worker.id)
        self._workers.pop(worker.id, None)
        worker.stop_wake.set()
        for job_id in sorted(worker.jobs):
            job = self._jobs.get(job_id)
            if job is None or job.status is not RemoteStatus.IN_PROGRESS or job.worker_id != worker.id:
                continue
            if job.retries < self._max_requeues:
                job.retries += 1
                self._counts["retried"] += 1
                job.status, job.worker_id, job.started_at, job.output = RemoteStatus.IN_QUEUE, None, None, None
                self._queue.appendleft(job.id)
                log.warning(
                    "worker %s died (rc=%s) running job %s; requeued (retry %d)",
                    worker.id,
                    returncode,
                    job.id,
                    job.retries,
                    extra={"action": "retry", "remote_id": job.id},
                )
            else:
                job.error = f"worker {worker.id} exited (rc={returncode}) while running the job"
                self._finish(job, RemoteStatus.FAILED)
        worker.jobs.clear()
        self._notify_queue()

    # ------------------------------------------------------------------------------------------------ processes

    def worker_env(self, worker_id: str) -> dict[str, str]:
        """Return the environment a worker process gets."""
        env = {k: v for k, v in os.environ.items() if k in PASS_THROUGH_NAMES or k.startswith(PASS_THROUGH_PREFIXES)}
        env.update(self._extra_env)
        root = self.base_url.removesuffix("/v2") + f"/v2/{self.endpoint_id}"
        env.update(
            {
                # `$ID` and `$RUNPOD_POD_ID` are placeholders the SDK fills in; the query strings are needed because
                # the SDK appends `&job_in_progress=`, `&batch_size=` and `&isStream=`.
                "RUNPOD_WEBHOOK_GET_JOB": f"{root}/job-take/$ID?gpu=none",
                "RUNPOD_WEBHOOK_POST_OUTPUT": f"{root}/job-done/$RUNPOD_POD_ID/$ID?gpu=none",
                "RUNPOD_WEBHOOK_POST_STREAM": f"{root}/job-stream/$RUNPOD_POD_ID/$ID?gpu=none",
                "RUNPOD_WEBHOOK_PING": f"{root}/ping/$RUNPOD_POD_ID?gpu=none",
                "RUNPOD_AI_API_KEY": self._worker_key,
                "RUNPOD_POD_ID": worker_id,
                "RUNPOD_POD_HOSTNAME": worker_id,
                "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
                "RUNPOD_SKIP_GPU_CHECK": "true",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.setdefault("RUNPOD_LOG_LEVEL", "INFO")
        # The SDK's heartbeat uses `interval // 1000` seconds as its HTTP timeout; below 1 s that is 0 and the ping
        # process dies with a ValueError (runpod 1.12 rp_ping.py), so never go below 1000 ms.
        interval = env.get("RUNPOD_PING_INTERVAL", "")
        if interval and (not interval.isdigit() or int(interval) < 1000):
            env["RUNPOD_PING_INTERVAL"] = "1000"
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = f"{PROJECT_ROOT}{os.pathsep}{path}" if path else str(PROJECT_ROOT)
        return env

    async def _supervise(self, slot: int) -> None:
        """Keep one worker process running in this slot, restarting it with backoff when it exits."""
        first, cap = self._restart_backoff_s
        backoff = RestartBackoff(first_s=first, cap_s=cap, stable_s=10 * first)
        while not self._closing:
            generation = self._slot_generation.get(slot, 0) + 1
            self._slot_generation[slot] = generation
            if generation > 1:
                self._restarts += 1
            worker_id = f"{self.endpoint_id}-w{slot + 1}-g{generation}"
            started = time.monotonic()
            worker = WorkerInfo(id=worker_id, slot=slot)
            self._workers[worker_id] = worker
            try:
                returncode = await self._run_process(worker)
            except OSError:
                log.exception("cannot start worker %s (%s)", worker_id, self._command[0])
                returncode = None
            self._worker_died(worker, returncode)
            if self.closing:
                return
            delay = backoff.after_exit(time.monotonic() - started)
            log.warning("worker %s exited (rc=%s); restarting in %.1fs", worker_id, returncode, delay)
            await asyncio.sleep(delay)

    async def _run_process(self, worker: WorkerInfo) -> int | None:
        proc = await asyncio.create_subprocess_exec(
            *self._command,
            env=self.worker_env(worker.id),
            cwd=self._cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group, so the SDK's ping child dies with it
            preexec_fn=die_with_parent(),  # and no orphan when this process is killed
            limit=1 << 20,
        )
        worker.proc, worker.pid = proc, proc.pid
        restarted = worker.slot is not None and self._slot_generation.get(worker.slot, 1) > 1
        # A restart is the end of an outage the operator was warned of: at the same level as that warning.
        log.log(logging.WARNING if restarted else logging.INFO, "worker %s started (pid %d)", worker.id, proc.pid)
        relay = asyncio.create_task(relay_output(worker.id, proc))
        try:
            return await exited(proc)
        except asyncio.CancelledError:
            await self._stop_process(worker, proc)
            raise
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group (the ping process)
            await finish_relay(relay)

    async def _stop_process(self, worker: WorkerInfo, proc: asyncio.subprocess.Process) -> None:
        self._retire(worker)
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(exited(proc), self._stop_grace_s)
        except TimeoutError:
            log.warning("worker %s ignored SIGTERM; killing it", worker.id)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await exited(proc)


async def _wait_until(event: asyncio.Event, deadline: float) -> bool:
    """Wait for `event` (or the monotonic `deadline`) in a long-poll; return False once the deadline has passed.

    The event is read when called: the endpoint replaces a set event with a fresh one, so each wait takes the
    current one.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), remaining)
    return True


def _not_found() -> web.Response:
    return web.json_response({"error": "request does not exist"}, status=404)


def _int_param(value: str | None, *, default: int, low: int, high: int) -> int:
    try:
        number = int(value) if value is not None else default
    except ValueError:
        number = default
    return max(low, min(high, number))
