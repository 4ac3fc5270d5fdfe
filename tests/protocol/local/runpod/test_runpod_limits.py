"""One test per RunPod limit the local endpoint enforces: accepted at the limit, refused one past it, as documented.

The limits and their sources are in `bot.runpod.wire` (client limits) and `local.runpod.client_api`.
"""

import asyncio
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.runpod.types import RemoteStatus
from bot.runpod.wire import RUNPOD_ROUTE_LIMITS, RouteLimit, queue_limit
from local.runpod import LocalEndpoint
from tests.fakes.runpod import running_endpoint, wait_until
from tests.protocol.local.runpod.test_endpoint_rules import SdkLikeWorker

WEEK_MS = 7 * 24 * 3600 * 1000


class Client:
    """Raw HTTP to the client face, so every status and body is seen as sent."""

    def __init__(self, http: aiohttp.ClientSession, endpoint: LocalEndpoint) -> None:
        self.http = http
        self.root = f"{endpoint.base_url}/{endpoint.endpoint_id}"
        self.headers = {"Authorization": f"Bearer {endpoint.api_key}"}

    async def call(self, method: str, path: str, *, body: Any = None, data: bytes | None = None) -> tuple[int, Any]:
        headers = dict(self.headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.http.request(
            method, self.root + path, json=body, data=io.BytesIO(data) if data is not None else None, headers=headers
        ) as resp:
            text = await resp.text()
            assert "Retry-After" not in resp.headers
            return resp.status, json.loads(text) if text else None


@pytest.fixture
async def raw() -> AsyncIterator[tuple[LocalEndpoint, Client, aiohttp.ClientSession]]:
    async with running_endpoint(workers=0, take_wait_s=0.2, stop_wait_s=0.2) as (ep, _), aiohttp.ClientSession() as h:
        yield ep, Client(h, ep), h


def padded(size: int) -> bytes:
    """A `/run` body of exactly `size` bytes."""
    empty = len(b'{"input":{"p":""}}')
    return b'{"input":{"p":"' + b"x" * (size - empty) + b'"}}'


async def test_cancel_takes_100_requests_per_10_s_and_answers_the_101st_429(raw: Any) -> None:
    ep, client, _ = raw
    assert RUNPOD_ROUTE_LIMITS["cancel"] == RouteLimit(100, 10.0, 20)
    answers = [await client.call("POST", f"/cancel/job-{n}") for n in range(100)]
    status, body = await client.call("POST", "/cancel/job-100")

    assert {s for s, _ in answers} == {404}  # counted, though the jobs are unknown
    assert status == 429
    assert body == {"error": "rate limit exceeded: 100 requests per 10 s on /cancel"}
    assert ep.refused("cancel") == 1


async def test_purge_queue_takes_2_requests_per_10_s_and_answers_the_third_429(raw: Any) -> None:
    _, client, _ = raw
    first, second = await client.call("POST", "/purge-queue"), await client.call("POST", "/purge-queue")
    third = await client.call("POST", "/purge-queue")

    assert [first[0], second[0]] == [200, 200]
    assert third[0] == 429 and "2 requests per 10 s" in third[1]["error"]


@pytest.mark.parametrize("family", ["run", "status"])
async def test_each_family_answers_429_one_past_its_tightened_window_and_again_after_it(family: str) -> None:
    limits = {**RUNPOD_ROUTE_LIMITS, family: RouteLimit(3, 0.5, None)}
    async with running_endpoint(workers=0, route_limits=limits) as (ep, _), aiohttp.ClientSession() as h:
        client = Client(h, ep)
        call: tuple[str, str, Any] = ("POST", "/run", {"input": {}}) if family == "run" else ("GET", "/status/x", None)
        method, path, body = call
        statuses = [(await client.call(method, path, body=body))[0] for _ in range(4)]
        other = await client.call("POST", "/cancel/x")  # another family keeps its own count
        await asyncio.sleep(0.55)
        after = await client.call(method, path, body=body)

    assert 429 not in statuses[:3]
    assert statuses[3] == 429
    assert other[0] == 404
    assert after[0] != 429


async def test_concurrent_limit_answers_429_while_the_slots_are_held() -> None:
    limits = {**RUNPOD_ROUTE_LIMITS, "runsync": RouteLimit(100, 10.0, 1)}
    async with running_endpoint(workers=0, route_limits=limits) as (ep, _), aiohttp.ClientSession() as h:
        client = Client(h, ep)
        held = asyncio.create_task(client.call("POST", "/runsync?wait=1000", body={"input": {}}))
        await wait_until(lambda: len(ep._jobs) == 1)
        second = await client.call("POST", "/runsync?wait=1000", body={"input": {}})
        first = await held
        third = await client.call("POST", "/runsync?wait=1000", body={"input": {}})

    assert second == (429, {"error": "rate limit exceeded: 1 concurrent requests on /runsync"})
    assert first[0] == 200 and first[1]["status"] == "IN_QUEUE"
    assert third[0] == 200


async def test_run_takes_a_10_mb_body_and_answers_413_one_byte_past(raw: Any) -> None:
    _, client, _ = raw
    at_limit = await client.call("POST", "/run", data=padded(10_000_000))
    past = await client.call("POST", "/run", data=padded(10_000_001))

    assert at_limit[0] == 200
    assert past == (413, {"error": "request body over the 10 MB limit of /run"})


async def test_runsync_takes_a_20_mb_body_and_answers_413_one_byte_past(raw: Any) -> None:
    _, client, _ = raw
    at_limit = await client.call("POST", "/runsync?wait=1000", data=padded(20_000_000))
    past = await client.call("POST", "/runsync?wait=1000", data=padded(20_000_001))

    assert at_limit[0] == 200
    assert past == (413, {"error": "request body over the 20 MB limit of /runsync"})


@pytest.mark.parametrize(
    ("field", "accepted", "refused"),
    [
        ("executionTimeout", 5001, 5000),
        ("executionTimeout", WEEK_MS, WEEK_MS + 1),
        ("ttl", 10_000, 9_999),
        ("ttl", WEEK_MS, WEEK_MS + 1),
        ("ttl", 60_000, 60_000.5),
        ("executionTimeout", 60_000, "60000"),
    ],
)
async def test_policy_times_outside_runpods_range_are_answered_400(
    raw: Any, field: str, accepted: int, refused: object
) -> None:
    _, client, _ = raw
    ok = await client.call("POST", "/run", body={"input": {}, "policy": {field: accepted}})
    bad = await client.call("POST", "/run", body={"input": {}, "policy": {field: refused}})

    assert ok[0] == 200
    assert bad[0] == 400 and bad[1]["error"].startswith(f"policy.{field} must be an integer number of ms")


@pytest.mark.parametrize(("accepted", "refused"), [(1000, 999), (300_000, 300_001)])
async def test_runsync_wait_outside_1000_to_300000_ms_is_answered_400(raw: Any, accepted: int, refused: int) -> None:
    ep, client, _ = raw
    ok = asyncio.create_task(client.call("POST", f"/runsync?wait={accepted}", body={"input": {}}))
    bad = await client.call("POST", f"/runsync?wait={refused}", body={"input": {}})
    await wait_until(lambda: len(ep._jobs) == 1)
    only = next(iter(ep._jobs.values()))
    ep._finish(only, RemoteStatus.CANCELLED)  # end the wait without a worker

    assert bad == (400, {"error": "wait must be an integer number of ms in [1000, 300000]"})
    assert (await ok)[0] == 200


async def test_runsync_results_are_kept_a_minute_and_run_results_thirty() -> None:
    async with (
        running_endpoint(workers=0, take_wait_s=0.2, retention_s=60, sync_retention_s=0.3) as (ep, gw),
        aiohttp.ClientSession() as h,
    ):
        assert LocalEndpoint(workers=0)._sync_retention_s == 60.0
        assert LocalEndpoint(workers=0)._retention_s == 30 * 60
        client, worker = Client(h, ep), SdkLikeWorker(h, ep)
        sync = asyncio.create_task(client.call("POST", "/runsync?wait=5000", body={"input": {}}))
        asynchronous = await gw.run({})
        for job in await worker.take(batch_size=2):
            await worker.done(job["id"], {"output": {"type": "result", "ok": 1}})
        sync_id = (await sync)[1]["id"]
        await asyncio.sleep(0.5)

        assert (await client.call("GET", f"/status/{sync_id}"))[0] == 404
        assert (await client.call("GET", f"/status/{asynchronous.id}"))[1]["status"] == "COMPLETED"


async def test_health_answers_every_field_runpod_returns(raw: Any) -> None:
    _, client, _ = raw
    status, body = await client.call("GET", "/health")

    assert status == 200
    assert set(body["jobs"]) == {"completed", "failed", "inProgress", "inQueue", "retried"}
    assert set(body["workers"]) == {"idle", "initializing", "ready", "running", "throttled", "unhealthy"}


class Hook:
    """A webhook receiver on 127.0.0.1 that answers the statuses it is given, then 200."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[Any] = []

    async def __call__(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


async def serve(hook: Hook) -> tuple[web.AppRunner, str]:
    app = web.Application()

    async def receive(request: web.Request) -> web.Response:
        return await hook(request)

    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/hook"


@pytest.mark.parametrize(("answers", "posts"), [([500], 2), ([500, 503, 500, 500], 3)])
async def test_webhook_gets_the_final_status_and_is_retried_two_more_times_until_200(
    answers: list[int], posts: int
) -> None:
    hook = Hook(list(answers))
    runner, url = await serve(hook)
    try:
        async with (
            running_endpoint(workers=0, take_wait_s=0.2, webhook_allow_private=True, webhook_retry_delay_s=0.05) as (
                ep,
                _,
            ),
            aiohttp.ClientSession() as h,
        ):
            client, worker = Client(h, ep), SdkLikeWorker(h, ep)
            _, submitted = await client.call("POST", "/run", body={"input": {}, "webhook": url})
            await worker.take()
            await worker.done(submitted["id"], {"output": {"type": "result", "ok": 1}})
            await wait_until(lambda: len(hook.bodies) >= posts and not ep._webhook_tasks, timeout_s=5)
            _, status = await client.call("GET", f"/status/{submitted['id']}")
    finally:
        await runner.cleanup()

    assert len(hook.bodies) == posts
    assert hook.bodies[0] == status and status["status"] == "COMPLETED"


async def test_webhook_to_a_private_address_is_accepted_but_never_called_by_default() -> None:
    hook = Hook([])
    runner, url = await serve(hook)
    try:
        async with running_endpoint(workers=0, take_wait_s=0.2) as (ep, _), aiohttp.ClientSession() as h:
            client, worker = Client(h, ep), SdkLikeWorker(h, ep)
            status, submitted = await client.call("POST", "/run", body={"input": {}, "webhook": url})
            await worker.take()
            await worker.done(submitted["id"], {"output": {"type": "result", "ok": 1}})
            await asyncio.sleep(0.2)
            bad = await client.call("POST", "/run", body={"input": {}, "webhook": "ftp://example.com/x"})
    finally:
        await runner.cleanup()

    assert status == 200
    assert hook.bodies == []
    assert bad == (400, {"error": "'webhook' must be an absolute http or https URL"})


def test_queue_limit_is_50_or_500_per_max_worker_whichever_is_more() -> None:
    assert [queue_limit(n) for n in (0, 1, 2, 20)] == [50, 500, 1000, 10_000]
    assert LocalEndpoint(workers=0)._max_queue == 500  # external workers only: counted as one
    assert LocalEndpoint(workers=3)._max_queue == 1500


@pytest.mark.parametrize("route", ["/run", "/runsync?wait=1000"])
async def test_run_answers_429_while_the_queue_is_full_and_takes_a_job_once_one_leaves_it(route: str) -> None:
    async with running_endpoint(workers=0, max_queue=3) as (ep, _), aiohttp.ClientSession() as h:
        client = Client(h, ep)
        ids = [(await client.call("POST", "/run", body={"input": {"n": n}}))[1]["id"] for n in range(3)]
        full = await client.call("POST", route, body={"input": {"n": 3}})
        await client.call("POST", f"/cancel/{ids[0]}")
        after = await client.call("POST", "/run", body={"input": {"n": 4}})
        again = await client.call("POST", "/run", body={"input": {"n": 5}})

    assert full == (429, {"error": "queue is full: 3 jobs waiting"})
    assert len(ep._jobs) == 4  # the refused job was never queued
    assert after[0] == 200 and after[1]["status"] == "IN_QUEUE"
    assert again[0] == 429
