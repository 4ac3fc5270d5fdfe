"""Cancelling answers at once; RunPod's cancels go in the background, are retried, and what was made is recorded."""

import asyncio
from datetime import timedelta

import pytest

from bot.core.models import ChunkStatus, ItemStatus, JobId, JobStatus, UserId
from bot.core.policy import DispatchPolicy
from bot.dispatch import Dispatcher
from bot.ledger import Ledger
from bot.runpod.errors import RunpodUnavailableError
from bot.runpod.types import RemoteJob
from storage.memory import MemoryStore
from tests.fakes.clock import FakeClock
from tests.fakes.gateway import MemoryRunpod
from tests.protocol.dispatcher.conftest import batch

POLICY = DispatchPolicy(gemini_concurrency=10, max_chunk_concurrency=5)
SETTLE = POLICY.cancel_settle


class HeldCancels(MemoryRunpod):
    """A RunPod whose `/cancel` answers only when the test lets it, and fails `failures` times first."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.gate = asyncio.Event()
        self.failures = 0

    async def cancel(self, job_id: str) -> RemoteJob:
        await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise RunpodUnavailableError("RunPod answered 429 after the client's retries", status_code=429)
        return await super().cancel(job_id)


async def started(d: Dispatcher, n: int) -> JobId:
    result = await d.submit(batch(n))
    assert result.job is not None
    await d.run_once()
    return result.job.id


async def test_cancel_answers_before_runpod_does_and_the_job_is_cancelled_at_once(
    ledger: Ledger, store: MemoryStore, clock: FakeClock
) -> None:
    runpod = HeldCancels(store)
    d = Dispatcher(ledger, runpod, store, clock=clock, policy=POLICY)
    job_id = await started(d, 100)
    on_runpod = [j.id for j in runpod.active()]

    result = await asyncio.wait_for(d.cancel(job_id, UserId(1)), timeout=5)  # RunPod has not answered any cancel

    job = await ledger.get_job(job_id)
    assert result.cancelled and result.message == "Job cancelled."
    assert job is not None and job.status is JobStatus.CANCELLED and job.cancelled == 100
    assert d.cancels_pending == len(on_runpod) == 2
    runpod.gate.set()
    await d.drain_cancels()
    assert runpod.cancelled == on_runpod


async def test_a_cancel_runpod_refused_is_sent_again_by_the_next_iteration(
    ledger: Ledger, store: MemoryStore, clock: FakeClock
) -> None:
    runpod = HeldCancels(store)
    runpod.gate.set()
    runpod.failures = 2
    d = Dispatcher(ledger, runpod, store, clock=clock, policy=POLICY)
    job_id = await started(d, 100)
    on_runpod = [j.id for j in runpod.active()]

    await d.cancel(job_id, UserId(1))
    await d.drain_cancels()
    assert runpod.cancelled == []  # both failed; the chunks are still followed
    assert len(await ledger.chunks(statuses=(ChunkStatus.IN_FLIGHT,))) == 2
    await d.run_once()
    await d.drain_cancels()

    assert sorted(runpod.cancelled) == sorted(on_runpod)
    assert runpod.active() == []
    assert len(runpod.jobs) == 2  # nothing new submitted


async def test_images_made_before_runpod_stopped_the_chunk_are_recorded_and_nothing_else_runs(
    ledger: Ledger, store: MemoryStore, clock: FakeClock
) -> None:
    runpod = MemoryRunpod(store)
    d = Dispatcher(ledger, runpod, store, clock=clock, policy=POLICY)
    job_id = await started(d, 100)
    first, second = runpod.active()
    await runpod.progress(first.id, done=first.indices[:3])  # made, not yet polled when the user cancels

    await d.cancel(job_id, UserId(1))
    await d.drain_cancels()
    await runpod.forget(second.id)  # RunPod's answer to the cancel is enough; it may forget the job meanwhile
    await d.run_once()
    held = await ledger.chunks(statuses=(ChunkStatus.IN_FLIGHT,))
    clock.advance(SETTLE)
    await d.run_once()

    job = await ledger.get_job(job_id)
    assert len(held) == 2  # before `cancel_settle` the chunks still hold their Gemini calls
    assert await ledger.chunks(statuses=(ChunkStatus.IN_FLIGHT,)) == []
    assert {c.status for c in await ledger.chunks(job_id=job_id)} == {ChunkStatus.CANCELLED}
    assert job is not None and job.status is JobStatus.CANCELLED and (job.ok, job.cancelled) == (3, 97)
    assert [i.index for i in await ledger.images(job_id=job_id)] == first.indices[:3]
    assert {i.index for i in await ledger.items(job_id) if i.status is ItemStatus.OK} == set(first.indices[:3])
    assert len(runpod.jobs) == 2
    # Gemini billed them; their usage went with the answers the cancel dropped, so each costs the estimate.
    assert await ledger.job_cost(job_id) == pytest.approx(3 * 0.039)


async def test_a_chunk_that_completes_before_its_cancel_is_recorded_in_full(
    ledger: Ledger, store: MemoryStore, clock: FakeClock
) -> None:
    runpod = HeldCancels(store)  # the cancels stay unanswered: the chunks are polled meanwhile
    d = Dispatcher(ledger, runpod, store, clock=clock, policy=POLICY)
    job_id = await started(d, 100)
    first, _ = runpod.active()

    await d.cancel(job_id, UserId(1))
    await runpod.finish(first.id)
    await d.run_once()
    clock.advance(timedelta(seconds=SETTLE.total_seconds() / 2))
    await d.run_once()
    job_before = await ledger.get_job(job_id)
    clock.advance(SETTLE)
    await d.run_once()

    job = await ledger.get_job(job_id)
    assert job_before is not None and job_before.ok == 0  # settled only `cancel_settle` after RunPod's final word
    assert job is not None and job.ok == len(first.indices) and job.cancelled == 100 - len(first.indices)
    runpod.gate.set()
    await d.drain_cancels()


async def test_a_cancelled_chunks_runpod_time_is_recorded_from_its_status(
    ledger: Ledger, store: MemoryStore, clock: FakeClock
) -> None:
    runpod = MemoryRunpod(store)
    d = Dispatcher(ledger, runpod, store, clock=clock, policy=POLICY)
    job_id = await started(d, 100)
    first, second = runpod.active()
    first.execution_ms = 7_000  # it ran 7 s before the cancel stopped it: /status says so, /cancel does not

    await d.cancel(job_id, UserId(1))
    await d.drain_cancels()
    await runpod.forget(second.id)  # RunPod forgot the other: its time is unknown
    clock.advance(SETTLE)
    await d.run_once()

    chunks = {c.runpod_id: c for c in await ledger.chunks(job_id=job_id)}
    assert {c.status for c in chunks.values()} == {ChunkStatus.CANCELLED}
    assert await ledger.job_cost(job_id) == pytest.approx(7.0 * POLICY.runpod_price_per_s)
    assert await ledger.spent(owner_id=1) == pytest.approx(7.0 * POLICY.runpod_price_per_s)
