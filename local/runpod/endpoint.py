"""A local RunPod-compatible Serverless endpoint that runs the real worker as subprocesses.

One aiohttp app serves both faces of RunPod Serverless on 127.0.0.1:

* the **client API** of REST v2 under `/v2/{endpoint}/`: `run`, `runsync`, `status/{id}`, `stream/{id}`,
  `cancel/{id}`, `retry/{id}`, `purge-queue`, `health` (Bearer key), so `RunpodHttpGateway` talks to it unchanged;
* the **worker protocol** the runpod SDK's worker runtime speaks (runpod 1.12, as observed from the SDK's
  `rp_job.py`, `rp_http.py` and `rp_ping.py`; `bot/runpod/wire.py` has its shapes): long-polled
  `job-take/{worker}` and `job-take-batch/{worker}`, `job-done/{worker}/{job}` (JSON sent as
  `application/x-www-form-urlencoded`; `"status": "IN_PROGRESS"` marks progress), `job-stream/{worker}/{job}`,
  long-polled `job-stop/{worker}` and `ping/{worker}`.

It starts N worker processes (default `python -m worker`, unmodified) with the environment the SDK's production
runtime needs, restarts a worker that exits (with backoff), and applies RunPod's rules: `executionTimeout` →
TIMED_OUT and the worker told to stop the job; cancel removes queued jobs and stops running ones; `ttl` (from
submission) forgets a job even while it runs; finished jobs are kept for a retention time (30 min after `/run`,
1 min after `/runsync`), then `/status` answers 404; the client face's documented rate limits, body limits, policy
ranges and webhooks (the table in `local.runpod.client_api`); a job whose worker dies mid-run is requeued
`max_requeues` times (once by default), then FAILED.
Queued jobs go to the least busy of the workers asking for them, split evenly among equally busy ones, so a worker
that asks for a batch of four while others wait idle gets its share, not all four (each worker is one Python
process: one that ran every chunk would be held back by its own CPU while the others sat still).

Run it in-process (`async with LocalEndpoint(workers=2, env=...) as ep: ep.base_url, ep.endpoint_id, ep.api_key`)
or standalone: `python -m local.runpod --port 8790 --workers 2`.
"""

import asyncio
import contextlib
import logging
import os
import secrets
import signal
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Self

from aiohttp import web

from bot.runpod.types import RemoteStatus
from bot.runpod.wire import EXECUTION_TIMEOUT_RANGE_MS, TTL_RANGE_MS, RouteLimit, queue_limit, route_family
from local.runpod.client_api import ClientApi
from local.runpod.limits import RouteGate
from local.runpod.processes import (
    DEFAULT_WORKER_COMMAND,
    WorkerSupervisor,
)
from local.runpod.webhooks import WEBHOOK_RETRY_DELAY_S
from local.runpod.worker_api import WorkerApi

if TYPE_CHECKING:
    from local.runpod.jobs import Job, WorkerInfo

log = logging.getLogger(__name__)

_HandlerT = Callable[[web.Request], Awaitable[web.StreamResponse]]


class LocalEndpoint(ClientApi, WorkerApi, WorkerSupervisor):
    """A RunPod-compatible Serverless endpoint on 127.0.0.1 running N worker subprocesses.

    Args:
        workers: how many worker processes to keep running (0: only external workers pointed at it).
        env: extra environment for the workers (e.g. `STORAGE_URL`, `GEMINI_BASE_URL`); it overrides what is passed
            through from this process (`STORAGE_*`, `GEMINI_*`, `WORKER_*`, `PATH`, …; never the bot's secrets).
        worker_command: the worker's argv; default `python -m worker`.
        host, port: where to listen (port 0 picks a free one).
        endpoint_id: the `{endpoint}` path segment.
        api_key: the client API key (Bearer); a random one when None.
        retention_s: how long finished `/run` jobs stay readable (RunPod: 30 min), then 404.
        sync_retention_s: the same for `/runsync` jobs (RunPod: 1 min).
        route_limits: rate limits per route family (default RunPod's documented ones, `RUNPOD_ROUTE_LIMITS`); tests
            tighten them.
        max_queue: how many jobs may wait in the queue before `/run` and `/runsync` answer 429 (default RunPod's
            rule, `queue_limit`: max(50, 500 x WorkersMax), WorkersMax being `workers`, or 1 with only external
            workers); tests tighten it.
        execution_timeout_range_ms, ttl_range_ms: the `policy` values accepted (default RunPod's documented ranges);
            tests of timeouts widen them to run in milliseconds.
        webhook_allow_private: deliver webhooks to loopback and private addresses, which RunPod never reaches (tests).
        webhook_retry_delay_s: the delay between webhook attempts (RunPod: 10 s).
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
        sync_retention_s: float = 60.0,
        route_limits: Mapping[str, RouteLimit] | None = None,
        max_queue: int | None = None,
        execution_timeout_range_ms: tuple[int, int] = EXECUTION_TIMEOUT_RANGE_MS,
        ttl_range_ms: tuple[int, int] = TTL_RANGE_MS,
        webhook_allow_private: bool = False,
        webhook_retry_delay_s: float = WEBHOOK_RETRY_DELAY_S,
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
        # True: the client face drops every connection unanswered, as in an outage of RunPod's API (tests).
        self.client_offline = False
        self._worker_key = secrets.token_urlsafe(18)
        self._n_workers = workers
        self._extra_env = dict(env or {})
        self._command = list(worker_command)
        self._host = host
        self._port = port
        self._retention_s = retention_s
        self._sync_retention_s = sync_retention_s
        self._gate = RouteGate(route_limits)
        self._max_queue = max_queue if max_queue is not None else queue_limit(max(workers, 1))
        if self._max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        self._execution_timeout_range_ms = execution_timeout_range_ms
        self._ttl_range_ms = ttl_range_ms
        self._webhook_allow_private = webhook_allow_private
        self._webhook_retry_delay_s = webhook_retry_delay_s
        self._webhook_tasks = set()
        self._http = None
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
        for hook in list(self._webhook_tasks):
            hook.cancel()
        if self._http is not None:
            await self._http.close()
            self._http = None
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

    def worker_of(self, job_id: str) -> str | None:
        """Return the id of the worker running the job, if any."""
        job = self._jobs.get(job_id)
        return job.worker_id if job is not None and job.status is RemoteStatus.IN_PROGRESS else None

    def refused(self, family: str) -> int:
        """How many requests of a route family (`run`, `status`, `cancel`, …) were answered 429."""
        return self._gate.refused(family)

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
        # Bodies are read and measured by the handlers (RunPod's 10 MB /run and 20 MB /runsync limits).
        app = web.Application(client_max_size=21 * 1024 * 1024)
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
            app.router.add_route(method, p + path, self._client_face(handler, route_family(path)))
        app.router.add_get(p + "/job-take/{worker}", self._job_take)
        app.router.add_get(p + "/job-take-batch/{worker}", self._job_take)
        app.router.add_post(p + "/job-done/{worker}/{id}", self._job_done)
        app.router.add_post(p + "/job-stream/{worker}/{id}", self._job_stream)
        app.router.add_get(p + "/job-stop/{worker}", self._job_stop)
        app.router.add_get(p + "/ping/{worker}", self._ping)
        return app
