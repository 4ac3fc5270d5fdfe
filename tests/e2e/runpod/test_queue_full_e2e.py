"""A batch completes though RunPod's queue is full: the bot meets `/run`'s 429, backs off and loses no item.

RunPod answers `/run` 429 while the endpoint's queue holds max(50, 500 x WorkersMax) jobs
(`bot.runpod.wire.queue_limit`); the local endpoint here holds three at most, so a batch of six chunks or more
fills it at once. The dispatcher drives real `python -m worker` subprocesses calling the local Gemini, as in
production.
"""

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from bot.core.chunking import ChunkPolicy
from bot.core.models import JobStatus
from bot.core.outage import OutagePolicy
from bot.core.policy import DispatchPolicy
from bot.dispatch import Dispatcher
from bot.ledger import Ledger
from bot.runpod.client import Backoff, RunpodHttpGateway
from storage import open_store
from tests.e2e.runpod.stack import local_gemini, worker_endpoint
from tests.fakes.runpod import wait_until
from tests.protocol.dispatcher.conftest import batch

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

ITEMS = 12  # in chunks of at most 2: six or more, twice the queue
MAX_QUEUE = 3


async def test_a_batch_completes_when_its_runs_meet_a_full_queue(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="local.runpod.client_api")
    caplog.set_level(logging.INFO, logger="bot.dispatch.outage")
    store_url = f"file://{tmp_path / 'store'}"
    # Should a 429 open the RunPod breaker (it must not), probes come quickly here.
    outage = OutagePolicy(first_probe=timedelta(seconds=0.2), probe_cap=timedelta(seconds=0.5))
    policy = DispatchPolicy(
        gemini_concurrency=ITEMS, max_chunk_concurrency=1, chunks=ChunkPolicy(max_batch_items=2), outage=outage
    )
    store = open_store(store_url)
    ledger = await Ledger.open(tmp_path / "ledger.sqlite3")
    async with (
        local_gemini(latency_s=0.1, draw_px=64) as gemini_url,
        worker_endpoint(store_url=store_url, gemini_url=gemini_url, max_queue=MAX_QUEUE) as endpoint,
        aiohttp.ClientSession() as http,
    ):
        gateway = RunpodHttpGateway(
            http,
            endpoint_id=endpoint.endpoint_id,
            api_key=endpoint.api_key,
            base_url=endpoint.base_url,
            backoff=Backoff(max_attempts=3, base_delay_s=0.1, cap_s=0.5),
        )
        d = Dispatcher(ledger, gateway, store, policy=policy, poll_interval_s=0.2)
        loop = asyncio.create_task(d.run_forever(resume=False))
        try:
            submitted = await d.submit(batch(ITEMS))
            assert submitted.job is not None
            job_id = submitted.job.id

            async def finished() -> bool:
                job = await ledger.get_job(job_id)
                return job is not None and job.status.is_final

            await wait_until(finished, timeout_s=50)
        finally:
            await d.stop(loop)
        async with http.get(f"{gemini_url}/stats") as resp:
            gemini = dict(await resp.json())
    job = await ledger.get_job(job_id)
    images = await ledger.images(job_id=job_id)
    await ledger.close()
    await store.close()
    full = [r for r in caplog.records if "the queue holds" in r.getMessage()]
    busy = [r for r in caplog.records if r.name == "bot.dispatch.outage" and "busy" in r.getMessage()]
    outages = [r for r in caplog.records if r.name == "bot.dispatch.outage" and r.levelno >= logging.ERROR]

    assert full, "the queue never filled: the test shows nothing"
    assert busy, "the bot never met the full queue after its retries"
    assert outages == []  # a full queue is RunPod busy, not down: no breaker, no alert
    assert job is not None and job.status is JobStatus.DONE
    assert job.ok == len(images) == ITEMS
    assert gemini["images"] == ITEMS  # no item generated twice, none lost
