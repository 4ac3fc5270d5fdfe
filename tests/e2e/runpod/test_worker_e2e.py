"""The bot's RunPod client → the local endpoint → real `python -m worker` subprocesses → the local Gemini server.

Everything is the production code path; only URLs and keys differ. `local_gemini`'s `/stats` counts the
generateContent calls, which shows that a chunk run again after its worker was killed generates nothing twice.
"""

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from bot.runpod.client import RunpodHttpGateway
from bot.runpod.types import RemoteJob, RemoteStatus
from local.runpod import LocalEndpoint
from storage import Store, open_store
from tests.e2e.runpod.stack import GEMINI_KEY, gemini_stats, local_gemini
from tests.fakes.runpod import MS_DEADLINES, poll_until, running_endpoint

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

LATENCY_S = 0.3


@dataclass
class Stack:
    endpoint: LocalEndpoint
    gateway: RunpodHttpGateway
    store: Store
    gemini_url: str
    http: aiohttp.ClientSession

    async def gemini_requests(self) -> int:
        return (await gemini_stats(self.http, self.gemini_url))["requests"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    store_url = f"file://{tmp_path_factory.mktemp('store')}"
    async with local_gemini(latency_s=LATENCY_S, draw_px=64) as gemini_url, aiohttp.ClientSession() as http:
        worker_env = {
            "STORAGE_URL": store_url,
            "GEMINI_API_KEY": GEMINI_KEY,
            "GEMINI_BASE_URL": gemini_url,
            "LOCAL_GEMINI_DRAW_PX": "64",
        }
        async with running_endpoint(
            workers=2,
            env=worker_env,
            worker_command=(sys.executable, "-m", "worker"),
            retention_s=4.0,
            take_wait_s=2.0,
            **MS_DEADLINES,
        ) as (endpoint, gateway):
            store = open_store(store_url)
            try:
                yield Stack(endpoint, gateway, store, gemini_url, http)
            finally:
                await store.close()


@pytest_asyncio.fixture(loop_scope="module")
async def ready(stack: Stack) -> Stack:
    await stack.endpoint.wait_ready(timeout_s=30)
    return stack


def chunk(job_id: str, n: int, *, concurrency: int = 4, chunk_no: int = 0) -> dict[str, Any]:
    """A chunk input as the bot ⇄ worker contract (worker/contract.py) has it."""
    return {
        "schema": 1,
        "job_id": job_id,
        "chunk": chunk_no,
        "model": "gemini-2.5-flash-image",
        "concurrency": concurrency,
        "items": [
            {
                "index": i,
                "prompt": f"a lighthouse at dusk, variation {i}",
                "ref_keys": [],
                "aspect_ratio": "1:1",
                "image_size": "1K",
                "seed": 1000 + i,
                "output_key": f"outputs/{job_id}/{i:05d}.png",
            }
            for i in range(n)
        ],
    }


def progressing(job: RemoteJob) -> bool:
    return job.status is RemoteStatus.IN_PROGRESS and job.progress is not None


def done_at_least(n: int) -> Callable[[RemoteJob], bool]:
    return lambda job: job.progress is not None and progressing(job) and int(str(job.progress.get("done", 0))) >= n


async def test_chunk_completes_with_its_images_in_the_store_and_progress_visible(ready: Stack) -> None:
    submitted = await ready.gateway.run(chunk("j_e2e_done", 6, concurrency=1))

    final, seen = await poll_until(ready.gateway, submitted.id, timeout_s=40)

    assert final.status is RemoteStatus.COMPLETED, final.raw
    assert final.result is not None
    assert final.result["type"] == "result"
    assert final.result["ok"] == 6
    assert any(j.progress is not None and j.progress.get("type") == "progress" for j in seen)
    for i in range(6):
        assert await ready.store.exists(f"outputs/j_e2e_done/{i:05d}.png")


async def test_two_workers_run_chunks_in_parallel(ready: Stack) -> None:
    a = await ready.gateway.run(chunk("j_e2e_par_a", 4, concurrency=1))
    b = await ready.gateway.run(chunk("j_e2e_par_b", 4, concurrency=1))

    both = False
    async with asyncio.timeout(40):
        while True:
            ja, jb = await ready.gateway.status(a.id), await ready.gateway.status(b.id)
            both |= ja.status is RemoteStatus.IN_PROGRESS and jb.status is RemoteStatus.IN_PROGRESS
            if ja.status.is_final and jb.status.is_final:
                break
            await asyncio.sleep(0.05)

    assert both
    assert ja.raw.get("workerId") != jb.raw.get("workerId")
    assert (ja.status, jb.status) == (RemoteStatus.COMPLETED, RemoteStatus.COMPLETED)


async def test_cancel_of_a_queued_and_of_a_running_chunk(ready: Stack) -> None:
    gw = ready.gateway
    one = await gw.run(chunk("j_e2e_can_1", 40, concurrency=1))
    two = await gw.run(chunk("j_e2e_can_2", 40, concurrency=1))
    queued = await gw.run(chunk("j_e2e_can_q", 2))
    await poll_until(gw, one.id, progressing, timeout_s=20)
    await poll_until(gw, two.id, progressing, timeout_s=20)

    assert (await gw.cancel(queued.id)).status is RemoteStatus.CANCELLED
    assert (await gw.cancel(one.id)).status is RemoteStatus.CANCELLED
    assert (await gw.cancel(two.id)).status is RemoteStatus.CANCELLED
    requests = await ready.gemini_requests()
    await asyncio.sleep(1.0)  # a worker that ignored the stop would keep calling Gemini

    assert await ready.gemini_requests() - requests <= 2  # at most the calls in flight at the cancel
    assert not await ready.store.exists("outputs/j_e2e_can_q/00000.png")


async def test_execution_timeout_gives_timed_out(ready: Stack) -> None:
    submitted = await ready.gateway.run(chunk("j_e2e_timeout", 40, concurrency=1), execution_timeout_ms=1500)

    final, _ = await poll_until(ready.gateway, submitted.id, timeout_s=20)

    assert final.status is RemoteStatus.TIMED_OUT
    assert final.execution_ms == 1500


async def test_killed_worker_means_the_chunk_runs_again_on_a_fresh_worker_without_generating_twice(
    ready: Stack,
) -> None:
    n = 10
    before = await ready.gemini_requests()
    submitted = await ready.gateway.run(chunk("j_e2e_kill", n, concurrency=1))
    await poll_until(ready.gateway, submitted.id, done_at_least(3), timeout_s=30)
    victim = ready.endpoint.worker_of(submitted.id)
    assert victim is not None

    ready.endpoint.kill_worker(victim)
    final, _ = await poll_until(ready.gateway, submitted.id, timeout_s=60)

    assert final.status is RemoteStatus.COMPLETED, final.raw
    assert final.retries == 1
    assert final.raw.get("workerId") != victim
    assert final.result is not None
    assert final.result["ok"] == n
    # Every finished image was skipped on the re-run; only the one call in flight at the kill can repeat.
    assert n <= await ready.gemini_requests() - before <= n + 1


async def test_status_after_retention_is_the_404_result(ready: Stack) -> None:
    submitted = await ready.gateway.run(chunk("j_e2e_retention", 1))
    final, _ = await poll_until(ready.gateway, submitted.id, timeout_s=20)
    assert final.status is RemoteStatus.COMPLETED

    gone, _ = await poll_until(
        ready.gateway, submitted.id, lambda j: j.status is RemoteStatus.NOT_FOUND, timeout_s=10, interval_s=0.25
    )

    assert gone.status is RemoteStatus.NOT_FOUND
