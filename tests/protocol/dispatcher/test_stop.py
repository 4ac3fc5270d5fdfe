"""Stopping the dispatcher (SIGTERM): no new chunks, a submission in progress completes, nothing is cancelled."""

import asyncio
from collections.abc import Mapping
from typing import Any

from bot.core.models import ChunkStatus
from bot.dispatch import Dispatcher
from bot.ledger import Ledger
from bot.runpod.types import RemoteJob
from tests.fakes.clock import FakeClock
from tests.fakes.gateway import MemoryRunpod
from tests.protocol.dispatcher.conftest import batch, grid


class SlowRun(MemoryRunpod):
    """A RunPod whose `/run` answers only when released, so a stop can arrive while a chunk is being submitted."""

    def __init__(self, runpod: MemoryRunpod) -> None:
        super().__init__(runpod.store)
        self.sent = asyncio.Event()
        self.release = asyncio.Event()

    async def run(self, payload: Mapping[str, object], **kwargs: Any) -> RemoteJob:
        self.sent.set()
        await self.release.wait()
        return await super().run(payload, **kwargs)


async def test_stop_lets_a_submission_in_progress_finish_and_submits_nothing_more(
    ledger: Ledger, runpod: MemoryRunpod, clock: FakeClock
) -> None:
    slow = SlowRun(runpod)
    dispatcher = Dispatcher(ledger, slow, runpod.store, clock=clock)
    await dispatcher.submit(grid(key="a"))
    await dispatcher.submit(batch(20, key="b"))
    task = asyncio.create_task(dispatcher.run_forever(resume=False))
    await asyncio.wait_for(slow.sent.wait(), 5)

    stopping = asyncio.create_task(dispatcher.stop(task, grace_s=5))
    await asyncio.sleep(0.05)
    slow.release.set()
    await asyncio.wait_for(stopping, 5)

    assert task.done() and not task.cancelled()
    chunks = await ledger.chunks()
    # The chunk /run was sending when the stop came is recorded in flight (the next process re-attaches to it);
    # nothing was submitted after it, and nothing was cancelled on RunPod.
    assert [c.status for c in chunks] == [ChunkStatus.IN_FLIGHT]
    assert len(slow.jobs) == 1 and slow.cancelled == []


async def test_stop_cancels_an_iteration_that_outlasts_the_grace(
    ledger: Ledger, runpod: MemoryRunpod, clock: FakeClock
) -> None:
    slow = SlowRun(runpod)
    dispatcher = Dispatcher(ledger, slow, runpod.store, clock=clock)
    await dispatcher.submit(grid(key="a"))
    task = asyncio.create_task(dispatcher.run_forever(resume=False))
    await asyncio.wait_for(slow.sent.wait(), 5)

    await dispatcher.stop(task, grace_s=0.05)

    assert task.cancelled()
    # Caught mid-submission: the next process reconciles it (resume_after_restart) and submits its items again.
    assert [c.status for c in await ledger.chunks()] == [ChunkStatus.SUBMITTING]


async def test_a_stop_that_comes_before_the_loop_starts_ends_it_before_it_submits(
    runpod: MemoryRunpod, dispatcher: Dispatcher
) -> None:
    await dispatcher.submit(grid(key="a"))
    task = asyncio.create_task(dispatcher.run_forever(resume=False))

    await dispatcher.stop(task, grace_s=5)

    assert task.done() and not task.cancelled()
    assert runpod.jobs == {}
