"""The local endpoint's worker face: the protocol the runpod SDK's worker runtime speaks (job-take, job-done, …)."""

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, cast

from aiohttp import web

from bot.runpod.types import RemoteStatus
from local.runpod.jobs import WorkerInfo
from local.runpod.queue import JobQueue, int_param

log = logging.getLogger(__name__)


class WorkerApi(JobQueue):
    """The handlers of the worker protocol (long-polled takes and stops, results, stream, pings)."""

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
        wanted = int_param(request.query.get("batch_size"), default=1, low=1, high=64) if batch else 1
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
