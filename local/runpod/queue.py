"""The local endpoint's jobs and queues, and RunPod's rules for them: shares, deadlines, requeues, retention."""

import asyncio
import json
import logging
import math
import time
from collections import deque
from pathlib import Path

import aiohttp
from aiohttp import web

from bot.runpod.types import RemoteStatus
from local.runpod.jobs import Compact, Job, WorkerInfo
from local.runpod.limits import RouteGate
from local.runpod.webhooks import deliver, is_private

log = logging.getLogger(__name__)


class JobQueue:
    """The state of the endpoint (set by `LocalEndpoint.__init__`) and the rules every face applies to it."""

    endpoint_id: str
    api_key: str
    client_offline: bool
    base_url: str
    _worker_key: str
    _n_workers: int
    _extra_env: dict[str, str]
    _command: list[str]
    _host: str
    _port: int
    _retention_s: float
    _sync_retention_s: float
    _execution_timeout_range_ms: tuple[int, int]
    _ttl_range_ms: tuple[int, int]
    _gate: RouteGate
    _max_queue: int
    _webhook_allow_private: bool
    _webhook_retry_delay_s: float
    _webhook_tasks: set[asyncio.Task[bool]]
    _http: aiohttp.ClientSession | None
    _default_execution_timeout_ms: int
    _default_ttl_ms: int
    _max_requeues: int
    _take_wait_s: float
    _stop_wait_s: float
    _restart_backoff_s: tuple[float, float]
    _stop_grace_s: float
    _tick_s: float
    _cwd: Path | None
    _jobs: dict[str, Job]
    _queue: deque[str]
    _low_queue: deque[str]
    _wake: asyncio.Event
    _workers: dict[str, WorkerInfo]
    _dead: set[str]
    _slot_generation: dict[int, int]
    _counts: dict[str, int]
    _restarts: int
    _closing: bool
    _runner: web.AppRunner | None
    _tasks: list[asyncio.Task[None]]

    @property
    def closing(self) -> bool:
        """True once `close()` has begun."""
        return self._closing

    def workers(self) -> list[WorkerInfo]:
        """Return the live worker processes."""
        return [w for w in self._workers.values() if w.alive]

    def _known(self, request: web.Request) -> Job | None:
        """Return the job named by the request's `{id}`, if the endpoint still knows it."""
        return self._jobs.get(request.match_info["id"])

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

    def _queued(self) -> int:
        """Return how many jobs wait in the queues (a cancelled or purged one leaves its id behind until taken)."""
        return sum(
            1
            for queue in (self._queue, self._low_queue)
            for job_id in queue
            if (job := self._jobs.get(job_id)) is not None and job.status is RemoteStatus.IN_QUEUE
        )

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
        # A job that ran reports the time it ran however it ended, a cancelled one too: RunPod bills that time
        # (https://docs.runpod.io/serverless/pricing) and /status reports it as `executionTime`
        # (https://docs.runpod.io/serverless/endpoints/operation-reference); /cancel answers the id and status only.
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
        if job.webhook is not None:
            self._send_webhook(job, job.webhook)
        action = {RemoteStatus.COMPLETED: "succeed", RemoteStatus.CANCELLED: "cancel"}.get(status, "fail")
        log.info("job %s %s", job.id, status.value, extra={"action": action, "remote_id": job.id})

    def _send_webhook(self, job: Job, url: str) -> None:
        if is_private(url) and not self._webhook_allow_private:
            log.warning("job %s: webhook %s is a private address RunPod cannot reach; not delivered", job.id, url)
            return
        if self._http is None:
            self._http = aiohttp.ClientSession()
        task = asyncio.create_task(
            deliver(self._http, url, job.body(), delay_s=self._webhook_retry_delay_s), name=f"webhook-{job.id}"
        )
        self._webhook_tasks.add(task)
        task.add_done_callback(self._webhook_tasks.discard)

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
                    if job.finished_at is not None and now - job.finished_at >= job.retention_s:
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


def int_param(value: str | None, *, default: int, low: int, high: int) -> int:
    """Return a query parameter as an int within [low, high]; `default` when absent or not a number."""
    try:
        number = int(value) if value is not None else default
    except ValueError:
        number = default
    return max(low, min(high, number))
