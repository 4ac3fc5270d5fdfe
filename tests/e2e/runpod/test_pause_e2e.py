"""Pausing a batch of 40, 400 and 4,000 items while its chunks run on RunPod, then resuming it.

The dispatcher drives the local RunPod endpoint, whose real `python -m worker` subprocesses call the local Gemini
(with latency injected, so calls are in flight at the pause) and write to a file store, as in production. After
Pause the workers start no new Gemini call (they find the job's stop marker before each one), so the local Gemini's
request count grows by at most the calls in flight when Pause returned; the job says "pausing" while chunks are
out and "paused" once none is, with every unmade item pending, none failed. Resume makes exactly the rest: in the
end Gemini was called once per item, and every output exists once.

A trial ("Try on 4") runs on the same stack: the job holds all but its first 4 items, pauses itself once those
are made, and Resume ("Start the rest") makes the others: 4 + (n - 4) Gemini calls, not n + 4.
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from bot.core.models import ItemStatus, JobStatus
from bot.core.policy import DispatchPolicy
from bot.dispatch import Dispatcher
from bot.ledger import NOTE_HOLD_FROM, Ledger
from bot.runpod.client import RunpodHttpGateway
from storage import open_store
from tests.e2e.runpod import stack
from tests.e2e.runpod.stack import local_gemini, worker_endpoint
from tests.fakes.runpod import wait_until
from tests.protocol.dispatcher.conftest import batch
from worker.contract import stop_key

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


GEMINI_CONCURRENCY = 16


@pytest.mark.parametrize(
    ("items", "latency_s", "pause_at"),
    [
        (40, 0.5, lambda n: 12),  # the case: chunks of the whole batch are out at Start
        (400, 0.1, lambda n: n // 4),
        (4000, 0.02, lambda n: n // 4),
    ],
    ids=["40", "400", "4000"],
)
async def test_pause_starts_no_gemini_call_beyond_those_in_flight_and_resume_makes_exactly_the_rest(
    items: int, latency_s: float, pause_at: Callable[[int], int], tmp_path: Path
) -> None:
    store_root = tmp_path / "store"
    store_url = f"file://{store_root}"
    store = open_store(store_url)
    ledger = await Ledger.open(tmp_path / "ledger.sqlite3")
    started = time.monotonic()
    async with (
        local_gemini(latency_s=latency_s, draw_px=16) as gemini_url,
        worker_endpoint(store_url=store_url, gemini_url=gemini_url) as endpoint,
        aiohttp.ClientSession() as http,
    ):
        gateway = RunpodHttpGateway(
            http, endpoint_id=endpoint.endpoint_id, api_key=endpoint.api_key, base_url=endpoint.base_url
        )
        d = Dispatcher(
            ledger, gateway, store, policy=DispatchPolicy(gemini_concurrency=GEMINI_CONCURRENCY), poll_interval_s=0.1
        )

        async def gemini_stats() -> dict[str, int]:
            return await stack.gemini_stats(http, gemini_url)

        loop = asyncio.create_task(d.run_forever(resume=False))
        try:
            submitted = await d.submit(batch(items))
            assert submitted.job is not None
            job_id = submitted.job.id

            async def calls_made() -> bool:  # Gemini's count: the ledger hears of images up to a second later
                return (await gemini_stats())["requests"] >= pause_at(items)

            await wait_until(calls_made, timeout_s=30)
            before = await gemini_stats()
            await d.pause(job_id)
            at_pause = await gemini_stats()
            pausing = await d.pausing(job_id)

            async def paused() -> bool:
                return await d.pausing(job_id) == 0

            await wait_until(paused, timeout_s=30)
            held = await ledger.get_job(job_id)
            await asyncio.sleep(0.5)  # a worker still calling Gemini would show here
            after_pause = await gemini_stats()
            statuses = [i.status for i in await ledger.items(job_id)]

            await d.resume(job_id)
            marker_after_resume = await store.exists(stop_key(job_id))

            async def done() -> bool:
                job = await ledger.get_job(job_id)
                return job is not None and job.status.is_final

            await wait_until(done, timeout_s=60)
            final = await gemini_stats()
            async with http.get(f"{gemini_url}/admin/requests") as resp:
                seeds = [r["seed"] for r in await resp.json()]
        finally:
            await d.stop(loop)
    job = await ledger.get_job(job_id)
    await ledger.close()
    await store.close()
    outputs = await asyncio.to_thread(lambda: sorted((store_root / "outputs" / job_id).glob("*.png")))
    elapsed = time.monotonic() - started

    assert pausing > 0  # chunks were out when Pause returned: "pausing" first
    assert held is not None and held.status is JobStatus.PAUSED and 0 < held.ok < items
    grew = after_pause["requests"] - at_pause["requests"]
    # No call starts after Pause returned beyond those the workers had begun: an item that found no marker just
    # before it was written is in flight even if its request reaches Gemini a moment later (on a loaded machine
    # the worker's event loop may hold it that long, so Gemini's own in-flight count is no bound). At most one
    # call per Gemini slot, GEMINI_CONCURRENCY in all; a worker ignoring the marker would make thousands.
    assert grew <= GEMINI_CONCURRENCY, (grew, before, at_pause, after_pause, elapsed)
    assert statuses.count(ItemStatus.OK) == held.ok
    assert statuses.count(ItemStatus.PENDING) == items - held.ok  # the rest waits, nothing failed
    assert not marker_after_resume
    assert job is not None and job.status is JobStatus.DONE and job.ok == items and job.failed == 0
    # Exactly one Gemini call per item: nothing made twice, and the pause cost no call.
    assert final["requests"] == items == len(outputs), (final, elapsed)
    assert len(set(seeds)) == len(seeds)
    print(f"{items} items: {grew} call(s) after Pause (in flight before: {before['in_flight']}), {elapsed:.1f} s")


async def test_a_trial_of_4_then_the_rest_calls_gemini_4_plus_n_minus_4_times(tmp_path: Path) -> None:
    items = 40
    store_url = f"file://{tmp_path / 'store'}"
    store = open_store(store_url)
    ledger = await Ledger.open(tmp_path / "ledger.sqlite3")
    async with (
        local_gemini(latency_s=0.05, draw_px=16) as gemini_url,
        worker_endpoint(store_url=store_url, gemini_url=gemini_url) as endpoint,
        aiohttp.ClientSession() as http,
    ):
        gateway = RunpodHttpGateway(
            http, endpoint_id=endpoint.endpoint_id, api_key=endpoint.api_key, base_url=endpoint.base_url
        )
        d = Dispatcher(ledger, gateway, store, policy=DispatchPolicy(gemini_concurrency=16), poll_interval_s=0.1)

        async def gemini_requests() -> int:
            return (await stack.gemini_stats(http, gemini_url))["requests"]

        loop = asyncio.create_task(d.run_forever(resume=False))
        try:
            submitted = await d.submit(replace(batch(items), notes={NOTE_HOLD_FROM: 4}))
            assert submitted.job is not None
            job_id = submitted.job.id

            async def status_is(status: JobStatus) -> bool:
                job = await ledger.get_job(job_id)
                return job is not None and job.status is status

            await wait_until(lambda: status_is(JobStatus.PAUSED), timeout_s=30)
            trial = await ledger.get_job(job_id)
            await asyncio.sleep(0.5)  # nothing more of it runs
            after_trial = await gemini_requests()

            await d.resume(job_id, release_hold=True)  # "Start the rest"
            await wait_until(lambda: status_is(JobStatus.DONE), timeout_s=30)
            final = await gemini_requests()
            made = sorted(i.index for i in await ledger.items(job_id, statuses=(ItemStatus.OK,)))
        finally:
            await d.stop(loop)
    await ledger.close()
    await store.close()

    assert trial is not None and trial.ok == 4 and trial.remaining == items - 4
    assert after_trial == 4
    assert final == items  # 4 + (n - 4): the trial's images are part of the batch, not made twice
    assert made == list(range(items))
