"""Fairness and the Gemini budget: interactive first, batches round robin, AIMD on rate limits, run_forever."""

import asyncio
import logging
from datetime import timedelta

import pytest

from bot.core.events import JobFinished, Started
from bot.core.models import JobStatus
from bot.core.policy import DispatchPolicy
from bot.dispatch import Dispatcher, policy_from_settings
from bot.ledger import Ledger
from bot.runpod.types import RemoteJob
from storage.memory import MemoryStore
from tests.fakes.clock import FakeClock
from tests.fakes.gateway import MemoryRunpod
from tests.protocol.dispatcher.conftest import MakeDispatcher, batch, grid
from worker.contract import ErrorCode


async def test_grid_goes_before_further_batch_chunks_when_a_big_batch_is_running(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(gemini_concurrency=10, max_chunk_concurrency=5))
    big = await dispatcher.submit(batch(2000))
    await dispatcher.run_once()
    assert len(runpod.active()) == 2  # the batch holds the whole budget
    assert big.job is not None

    small = await dispatcher.submit(grid(owner=2))
    await dispatcher.run_once()
    assert len(runpod.jobs) == 2  # no room yet

    await runpod.finish(runpod.active()[0].id)
    await dispatcher.run_once()

    assert small.job is not None
    assert runpod.submitted_job_ids()[2] == small.job.id
    grid_chunk = runpod.jobs["rp-3"]
    assert grid_chunk.indices == [0, 1, 2, 3] and grid_chunk.input.concurrency == 4  # its fair share of the window
    assert runpod.max_in_flight_concurrency <= 10


async def test_batches_take_turns_when_several_share_the_budget(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(gemini_concurrency=5, max_chunk_concurrency=5))
    jobs = [await dispatcher.submit(batch(100, owner=n)) for n in (1, 2, 3)]
    ids = [r.job.id for r in jobs if r.job is not None]

    for _ in range(6):
        await dispatcher.run_once()
        await runpod.finish_all()

    order = runpod.submitted_job_ids()
    assert order[:6] == [ids[0], ids[1], ids[2], ids[0], ids[1], ids[2]]


async def test_budget_is_never_exceeded_and_halves_when_a_chunk_is_rate_limited(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, clock: FakeClock, ledger: Ledger
) -> None:
    dispatcher = make_dispatcher(
        DispatchPolicy(gemini_concurrency=8, max_chunk_concurrency=4, rate_limit_cooldown=timedelta(seconds=10))
    )
    await dispatcher.submit(batch(300))
    await dispatcher.run_once()
    assert runpod.in_flight_concurrency() == 8

    first = runpod.active()[0]
    await runpod.finish(first.id, errors={first.indices[0]: ErrorCode.RATE_LIMITED})
    await runpod.finish(runpod.active()[0].id, errors={runpod.active()[0].indices[0]: ErrorCode.RATE_LIMITED})
    await dispatcher.run_once()

    assert dispatcher.budget.allowed == 4  # halved once for the burst, not twice
    assert runpod.in_flight_concurrency() <= 4

    windows = []
    for step in range(40):
        clock.advance(timedelta(seconds=3))
        await dispatcher.run_once()
        windows.append(dispatcher.budget.allowed)
        for remote in runpod.active():
            errors = {remote.indices[0]: ErrorCode.RATE_LIMITED} if step == 5 else {}
            await runpod.finish(remote.id, errors=errors)
        assert await ledger.in_flight_concurrency() <= dispatcher.budget.allowed <= 8
    assert runpod.max_in_flight_concurrency <= 8
    assert windows[0] == 4 and windows[:6] == sorted(windows[:6]) and windows[5] == 8  # additive increase, capped
    assert windows[6] == 4  # halved by the second burst
    assert max(windows[7:]) > 4  # and growing back
    [job] = await ledger.list_jobs()
    assert job.status is JobStatus.DONE and job.ok == 300


async def test_policy_from_settings_uses_setting_values_when_built() -> None:
    policy = policy_from_settings(gemini_concurrency=3, max_running_per_user=2, max_waiting_per_user=4)

    assert policy.gemini_concurrency == 3
    assert (policy.caps.user.max_running, policy.caps.user.max_waiting) == (2, 4)
    assert policy.chunks.target_chunk_s == 60.0
    timed = policy_from_settings(gemini_concurrency=3, max_running_per_user=2, max_waiting_per_user=4, batch_chunk_s=5)
    assert timed.chunks.target_chunk_s == 5


class FlakyStatus(MemoryRunpod):
    """Raises an unexpected error from the first status call."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.failures = 1

    async def status(self, job_id: str) -> RemoteJob:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("boom")
        return await super().status(job_id)


async def test_run_forever_submits_when_woken_and_survives_a_failed_iteration(
    ledger: Ledger, store: MemoryStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    runpod = FlakyStatus(store)
    dispatcher = Dispatcher(ledger, runpod, store, clock=clock, poll_interval_s=0.01)
    events = dispatcher.subscribe()
    task = asyncio.create_task(dispatcher.run_forever())
    try:
        with caplog.at_level(logging.ERROR, logger="bot.dispatch"):
            await dispatcher.submit(grid())  # wakes the loop
            async with asyncio.timeout(5):
                async for event in events:
                    if isinstance(event, Started):
                        break
            await runpod.finish_all()
            async with asyncio.timeout(5):  # the first poll fails; a later iteration records the result
                async for event in events:
                    if isinstance(event, JobFinished):
                        break
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    events.close()
    assert [r.getMessage() for r in caplog.records] == ["dispatcher iteration failed"]
    assert isinstance([e async for e in events], list)  # a closed subscription ends


async def test_policy_from_settings_limits_item_attempts_when_given() -> None:
    policy = policy_from_settings(
        gemini_concurrency=3, max_running_per_user=2, max_waiting_per_user=4, item_max_attempts=1
    )

    assert policy.retry.max_attempts == 1
