"""Cancelling a 2,000-item batch while its chunks run and queue on RunPod, under RunPod's rate limits.

The dispatcher drives the local RunPod endpoint, whose real `python -m worker` subprocesses call the local Gemini,
and writes to a file store, all as in production. The endpoint enforces RunPod's rate limits tightened in
proportion so the test is quick (every family's window a twentieth, its counts half: ten times RunPod's rate, so
`/cancel` allows 50 per 0.5 s and 10 at once where RunPod allows 100 per 10 s and 20 at once); the bot's gateway
paces by the same table and keeps its retries. The cancel answers at once; RunPod's cancels follow in the
background without one 429 or retry, every RunPod job ends CANCELLED or COMPLETED, Gemini is called no more, and
the ledger's images are exactly the outputs in the store.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.core.chunking import ChunkPolicy
from bot.core.models import ChunkStatus, JobStatus, UserId
from bot.core.policy import DispatchPolicy
from bot.dispatch import Dispatcher
from bot.ledger import Ledger
from bot.runpod.client import RunpodHttpGateway
from bot.runpod.pacing import RoutePacer
from bot.runpod.types import RemoteStatus
from bot.runpod.wire import RUNPOD_ROUTE_LIMITS, RouteLimit
from storage import open_store
from tests.e2e.runpod import stack
from tests.e2e.runpod.stack import local_gemini, worker_endpoint
from tests.fakes.runpod import wait_until
from tests.protocol.dispatcher.conftest import batch

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

CHUNKS = 200  # 2,000 items in chunks of 10


def _tightened(limit: RouteLimit) -> RouteLimit:
    concurrent = None if limit.concurrent is None else max(1, limit.concurrent // 2)
    return RouteLimit(max(1, limit.requests // 2), limit.window_s / 20, concurrent)


LIMITS = {family: _tightened(limit) for family, limit in RUNPOD_ROUTE_LIMITS.items()}


@pytest.fixture
async def gemini_url() -> AsyncIterator[str]:
    async with local_gemini(latency_s=0.1, draw_px=64) as url:
        yield url


async def test_cancelling_a_2000_item_batch_under_runpod_limits_answers_at_once_and_generates_nothing_more(
    gemini_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.runpod.client")
    store_root = tmp_path / "store"
    store_url = f"file://{store_root}"
    policy = DispatchPolicy(
        gemini_concurrency=CHUNKS,
        max_chunk_concurrency=1,
        chunks=ChunkPolicy(max_batch_items=10),
        # Production's wait (5 s) for a stopped worker to finish writing the images it made: at 1 s, a worker
        # slowed by the other suites on the same cores wrote some after their chunk was settled, unrecorded.
        cancel_settle=DispatchPolicy().cancel_settle,
    )
    store = open_store(store_url)
    ledger = await Ledger.open(tmp_path / "ledger.sqlite3")
    async with (
        worker_endpoint(
            store_url=store_url, gemini_url=gemini_url, env={"LOCAL_GEMINI_DRAW_PX": "64"}, route_limits=LIMITS
        ) as endpoint,
        aiohttp.ClientSession() as http,
    ):
        gateway = RunpodHttpGateway(
            http,
            endpoint_id=endpoint.endpoint_id,
            api_key=endpoint.api_key,
            base_url=endpoint.base_url,
            pacer=RoutePacer(LIMITS),
        )
        d = Dispatcher(ledger, gateway, store, policy=policy, poll_interval_s=0.2)

        async def gemini_stats() -> dict[str, int]:
            return await stack.gemini_stats(http, gemini_url)

        loop = asyncio.create_task(d.run_forever(resume=False))
        try:
            submitted = await d.submit(batch(2000))
            assert submitted.job is not None
            job_id = submitted.job.id

            async def running_with_many_queued() -> bool:
                job = await ledger.get_job(job_id)
                return job is not None and job.ok >= 4

            await wait_until(running_with_many_queued, timeout_s=20)
            on_runpod = [c.runpod_id for c in await ledger.chunks(job_id=job_id) if c.runpod_id is not None]
            queued = sum(1 for j in endpoint._jobs.values() if j.status is RemoteStatus.IN_QUEUE)

            result = await asyncio.wait_for(d.cancel(job_id, UserId(1)), timeout=5)
            outstanding = d.cancels_pending  # read before anything else runs: the cancel sent none of them itself
            cancelled_at_once = await ledger.get_job(job_id)

            async def settled() -> bool:
                return await ledger.chunks(statuses=(ChunkStatus.IN_FLIGHT, ChunkStatus.SUBMITTING)) == []

            await wait_until(settled, timeout_s=30)
            stats = await gemini_stats()
            await asyncio.sleep(1.0)  # a worker still calling Gemini would show here
            requests_later = (await gemini_stats())["requests"]
            async with http.get(f"{gemini_url}/admin/requests") as resp:
                seeds = [r["seed"] for r in await resp.json()]
        finally:
            await d.stop(loop)
        remote = [endpoint._jobs[rid].status for rid in on_runpod]
        refused = {family: endpoint.refused(family) for family in LIMITS}
    job = await ledger.get_job(job_id)
    images = await ledger.images(job_id=job_id)
    await ledger.close()
    await store.close()
    outputs = await asyncio.to_thread(lambda: sorted(p.name for p in (store_root / "outputs" / job_id).glob("*.png")))
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]

    assert len(on_runpod) >= CHUNKS and queued >= CHUNKS // 2  # many chunks queued, two running
    assert result.cancelled
    assert cancelled_at_once is not None and cancelled_at_once.status is JobStatus.CANCELLED
    assert outstanding >= queued  # the user was answered before RunPod's cancels went out
    assert refused == dict.fromkeys(LIMITS, 0) and retries == []  # paced: no 429, so none to handle
    assert set(remote) <= {RemoteStatus.CANCELLED, RemoteStatus.COMPLETED}
    assert remote.count(RemoteStatus.CANCELLED) >= CHUNKS - 10
    requests = stats["requests"]
    assert requests_later == requests  # nothing more is generated
    assert job is not None and job.ok == len(images) == len(outputs) > 0  # every image made is recorded, once
    assert sorted(f"{i.index:05d}.png" for i in images) == outputs
    # Every Gemini call was for a different item (its seed): no item was generated twice.
    assert len(seeds) == len(set(seeds)) == requests >= len(outputs), seeds
