"""Cancelling a large batch with many chunks on RunPod stays under RunPod's `/cancel` limits: no 429 at all.

The local endpoint has no workers (every chunk stays queued on RunPod, so nothing is generated and every RunPod job
can be counted) and enforces `/cancel`'s limit in RunPod's shape, tightened in proportion so that the test is quick:
RunPod allows 100 per 10 s and 20 at once; here 25 per 0.5 s and 5 at once. The bot's gateway paces by the same
table and does not retry, so a single 429 would fail a cancel.
"""

from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.core.chunking import ChunkPolicy
from bot.core.models import ChunkStatus, JobStatus, UserId
from bot.core.policy import DispatchPolicy
from bot.dispatch import Dispatcher
from bot.ledger import Ledger
from bot.runpod.client import Backoff, RunpodHttpGateway
from bot.runpod.pacing import RoutePacer
from bot.runpod.wire import RUNPOD_ROUTE_LIMITS, RouteLimit
from local.runpod import LocalEndpoint
from storage.memory import MemoryStore
from tests.fakes.clock import FakeClock
from tests.protocol.dispatcher.conftest import batch

LIMITS = {**RUNPOD_ROUTE_LIMITS, "cancel": RouteLimit(25, 0.5, 5)}


@pytest.fixture
async def endpoint() -> AsyncIterator[LocalEndpoint]:
    async with LocalEndpoint(workers=0, route_limits=LIMITS) as ep:
        yield ep


async def test_cancelling_a_2000_item_batch_in_200_chunks_meets_no_429_and_leaves_nothing_on_runpod(
    ledger: Ledger, store: MemoryStore, clock: FakeClock, endpoint: LocalEndpoint
) -> None:
    policy = DispatchPolicy(gemini_concurrency=200, max_chunk_concurrency=1, chunks=ChunkPolicy(max_batch_items=10))
    async with aiohttp.ClientSession() as http:
        gateway = RunpodHttpGateway(
            http,
            endpoint_id=endpoint.endpoint_id,
            api_key=endpoint.api_key,
            base_url=endpoint.base_url,
            backoff=Backoff(max_attempts=1),
            pacer=RoutePacer(LIMITS, headroom=1.0),
        )
        d = Dispatcher(ledger, gateway, store, clock=clock, policy=policy)
        submitted = await d.submit(batch(2000))
        assert submitted.job is not None
        await d.run_once()
        in_flight = await ledger.chunks(statuses=(ChunkStatus.IN_FLIGHT,))
        assert len(in_flight) == 200

        result = await d.cancel(submitted.job.id, UserId(1))
        await d.run_once()
        await d.drain_cancels()  # RunPod's cancels go in the background, paced
        remote = [endpoint._jobs[c.runpod_id].status.value for c in in_flight if c.runpod_id in endpoint._jobs]

    assert result.cancelled
    assert endpoint.refused("cancel") == 0
    assert remote == ["CANCELLED"] * 200  # nothing left queued or running on RunPod: nothing more is generated
    assert (await ledger.get_job(submitted.job.id)).status is JobStatus.CANCELLED  # type: ignore[union-attr]
