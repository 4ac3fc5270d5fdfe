"""Test doubles for RunPod: a scripted REST server for client tests, and fixtures around the local endpoint.

`FakeRunpod` answers RunPod's REST API v2 routes from per-operation scripts (`fake.script("status", [429, (200,
{...})])`) and records every request, so client tests can show how each answer is handled.
"""

import asyncio
import contextlib
import json
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from bot.runpod.client import RunpodHttpGateway
from bot.runpod.types import RemoteJob
from local.runpod import LocalEndpoint

# RunPod refuses an `executionTimeout` of 5 s or less and a `ttl` under 10 s; tests of those deadlines widen the
# accepted ranges so that they run in milliseconds.
MS_DEADLINES: dict[str, Any] = {"execution_timeout_range_ms": (1, 10**9), "ttl_range_ms": (1, 10**9)}


@dataclass(frozen=True, slots=True)
class Answer:
    """One scripted answer: an HTTP status and JSON body, or a dropped connection."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    disconnect: bool = False
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request the fake received."""

    op: str
    method: str
    path: str
    headers: dict[str, str]
    json: Any


ScriptItem = int | tuple[int, Any] | Answer


class FakeRunpod:
    """A RunPod REST API v2 server that answers from scripts and records requests.

    Operations: `run`, `status`, `cancel`, `health`, `purge-queue`. An operation with an empty script answers a
    plausible default (`run` queues a job `job-N`, `status`/`cancel` answer 404, `health` all zero).
    """

    def __init__(self, endpoint_id: str = "ep") -> None:
        self.endpoint_id = endpoint_id
        self.requests: list[Recorded] = []
        self._scripts: dict[str, deque[Answer]] = {}
        self._next_id = 0
        self.base_url = ""

    def script(self, op: str, answers: Iterable[ScriptItem]) -> None:
        """Queue answers for an operation, used one per request in order."""
        queue = self._scripts.setdefault(op, deque())
        for item in answers:
            if isinstance(item, Answer):
                queue.append(item)
            elif isinstance(item, tuple):
                queue.append(Answer(item[0], item[1]))
            else:
                queue.append(Answer(item, {"error": f"scripted {item}"} if item >= 400 else None))

    def ops(self) -> list[str]:
        """Return the operations received, in order."""
        return [r.op for r in self.requests]

    def app(self) -> web.Application:
        """Build the aiohttp application."""
        app = web.Application()
        prefix = f"/v2/{self.endpoint_id}"
        app.router.add_post(f"{prefix}/run", self._handle("run"))
        app.router.add_get(f"{prefix}/status/{{id}}", self._handle("status"))
        app.router.add_post(f"{prefix}/cancel/{{id}}", self._handle("cancel"))
        app.router.add_get(f"{prefix}/health", self._handle("health"))
        app.router.add_post(f"{prefix}/purge-queue", self._handle("purge-queue"))
        return app

    def _default(self, op: str, request: web.Request) -> Answer:
        if op == "run":
            self._next_id += 1
            return Answer(200, {"id": f"job-{self._next_id}", "status": "IN_QUEUE"})
        if op == "health":
            return Answer(200, {"jobs": {"completed": 0, "failed": 0, "inProgress": 0, "inQueue": 0, "retried": 0},
                                "workers": {"idle": 0, "running": 0}})  # fmt: skip
        if op == "purge-queue":
            return Answer(200, {"removed": 0, "status": "completed"})
        return Answer(404, {"error": "request does not exist"})

    def _handle(self, op: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            text = await request.text()
            self.requests.append(
                Recorded(
                    op=op,
                    method=request.method,
                    path=request.path,
                    headers=dict(request.headers),
                    json=json.loads(text) if text else None,
                )
            )
            queue = self._scripts.get(op)
            answer = queue.popleft() if queue else self._default(op, request)
            if answer.delay_s:
                await asyncio.sleep(answer.delay_s)
            if answer.disconnect:
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)
            if answer.body is None:
                return web.Response(status=answer.status, headers=answer.headers)
            return web.json_response(answer.body, status=answer.status, headers=answer.headers)

        return handler


# ------------------------------------------------------------------------------------------ the local endpoint

HANDLERS_COMMAND = (sys.executable, "-m", "tests.fakes.runpod_handlers")


@contextlib.asynccontextmanager
async def running_endpoint(**kwargs: Any) -> AsyncIterator[tuple[LocalEndpoint, RunpodHttpGateway]]:
    """Start a `LocalEndpoint` (default: 2 workers of the tiny test handler) and a client bound to it."""
    kwargs.setdefault("worker_command", HANDLERS_COMMAND)
    kwargs.setdefault("stop_grace_s", 2.0)
    async with LocalEndpoint(**kwargs) as endpoint, aiohttp.ClientSession() as http:
        gateway = RunpodHttpGateway(
            http, endpoint_id=endpoint.endpoint_id, api_key=endpoint.api_key, base_url=endpoint.base_url
        )
        yield endpoint, gateway


async def poll_until(
    gateway: RunpodHttpGateway,
    job_id: str,
    until: Callable[[RemoteJob], bool] = lambda job: job.status.is_final,
    *,
    timeout_s: float = 20.0,
    interval_s: float = 0.05,
) -> tuple[RemoteJob, list[RemoteJob]]:
    """Poll `/status` until `until(job)`; return the last answer and every answer seen."""
    seen: list[RemoteJob] = []
    async with asyncio.timeout(timeout_s):
        while True:
            job = await gateway.status(job_id)
            seen.append(job)
            if until(job):
                return job, seen
            await asyncio.sleep(interval_s)


async def wait_until(predicate: Callable[[], Awaitable[bool] | bool], timeout_s: float = 10.0) -> None:
    """Poll a (sync or async) predicate until it holds, or raise TimeoutError."""
    async with asyncio.timeout(timeout_s):
        while True:
            outcome = predicate()
            if not isinstance(outcome, bool):
                outcome = await outcome
            if outcome:
                return
            await asyncio.sleep(0.05)
