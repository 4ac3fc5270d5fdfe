"""What a chunk really cost, recorded by the dispatcher: the real worker against the local Gemini on 127.0.0.1.

The dispatcher runs over the in-memory RunPod; the test plays RunPod by running each chunk's input through the real
handler with the real Gemini adapter, so the usage recorded is what the local Gemini's `usageMetadata` said.
"""

import asyncio
import math
from collections.abc import AsyncIterator

import pytest

from bot.core.models import JobKind, JobParams, JobRequest, NewItem, UserId
from bot.core.policy import DispatchPolicy
from bot.core.pricing import cost_of
from bot.dispatch import Dispatcher
from bot.ledger import Ledger
from bot.runpod.types import RemoteStatus
from local.gemini.faults import Faults
from local.gemini.server import LocalGemini
from storage.memory import MemoryStore
from tests.fakes.gateway import MemoryRunpod
from tests.protocol.dispatcher.conftest import MakeDispatcher
from worker.contract import ChunkResult, TokenUsage
from worker.gemini import GeminiImageGenerator
from worker.handler import WorkerDeps, make_handler

MODEL = "gemini-3.1-flash-image-preview"
BLOCK_WORD = "forbidden"
PRICE_PER_S = 0.0002


@pytest.fixture
async def worker(store: MemoryStore) -> AsyncIterator[WorkerDeps]:
    async with LocalGemini(port=0, draw_px=32, faults=Faults(block_word=BLOCK_WORD, block_as="prompt")) as gemini:
        generator = await asyncio.to_thread(
            GeminiImageGenerator, api_key="local-key", base_url=gemini.url, max_attempts=1
        )
        async with generator as gen:
            yield WorkerDeps(store=store, generator=gen)


async def run_on_worker(runpod: MemoryRunpod, deps: WorkerDeps, *, execution_ms: int) -> None:
    """Complete every active RunPod job with what the real handler answers for it."""
    for job in runpod.active():
        output = await make_handler(deps)({"id": job.id, "input": job.input.to_payload()})
        job.status, job.result, job.execution_ms = RemoteStatus.COMPLETED, output, execution_ms


def request(prompts: list[str], *, size: str = "2K") -> JobRequest:
    return JobRequest(
        kind=JobKind.BATCH,
        owner_id=UserId(7),
        prompt="p",
        params=JobParams(model=MODEL, image_size=size, seed=1),
        items=tuple(NewItem(prompt=p) for p in prompts),
        guild_id=55,
    )


@pytest.fixture
def dispatcher(make_dispatcher: MakeDispatcher) -> Dispatcher:
    return make_dispatcher(DispatchPolicy(runpod_price_per_s=PRICE_PER_S))


async def test_each_item_records_the_price_table_applied_to_the_usage_gemini_reported(
    dispatcher: Dispatcher, runpod: MemoryRunpod, ledger: Ledger, worker: WorkerDeps
) -> None:
    prompts = ["a lighthouse at dusk", f"a {BLOCK_WORD} harbour", "a quiet street in the rain, seen from above"]
    submitted = await dispatcher.submit(request(prompts))
    assert submitted.job is not None
    await dispatcher.run_once()
    await run_on_worker(runpod, worker, execution_ms=4_000)
    await dispatcher.run_once()

    made, blocked, other = await ledger.items(submitted.job.id)

    # The local Gemini reports Google's counts: ~4 characters a text token, 1680 tokens for a 2K image of 3.1 Flash
    # Image, and thoughts apart (https://ai.google.dev/gemini-api/docs/tokens, .../pricing).
    assert made.usage is not None and made.usage.image_output_tokens == 1680 and made.usage.thoughts_tokens > 0
    assert made.usage.prompt_tokens == math.ceil(len(prompts[0]) / 4)
    for item in (made, other):
        assert item.cost_usd == pytest.approx(cost_of(MODEL, item.usage, batch=False))
        assert item.cost_usd == pytest.approx(0.101, abs=0.002)  # about the catalogue's price of a 2K image
    assert blocked.error_code == "SAFETY"
    assert blocked.usage == TokenUsage(prompt_tokens=math.ceil(len(prompts[1]) / 4))
    assert blocked.cost_usd == pytest.approx(blocked.usage.prompt_tokens * 0.50 / 1e6)  # the input is billed
    items_cost = sum(i.cost_usd or 0.0 for i in (made, blocked, other))
    runpod_cost = 4.0 * PRICE_PER_S
    assert await ledger.job_cost(submitted.job.id) == pytest.approx(items_cost + runpod_cost)
    # What the caps count: each of the 3 items' costs and the chunk's rounded to the micro-dollar.
    assert await ledger.spent(owner_id=7, guild_id=55) == pytest.approx(items_cost + runpod_cost, abs=4 * 0.5e-6)


async def test_an_image_found_stored_after_its_chunks_answer_was_lost_is_recorded_at_the_catalogue_price(
    dispatcher: Dispatcher, runpod: MemoryRunpod, ledger: Ledger, worker: WorkerDeps
) -> None:
    submitted = await dispatcher.submit(request(["a lighthouse at dusk"]))
    assert submitted.job is not None
    await dispatcher.run_once()
    [job] = runpod.active()
    first = ChunkResult.model_validate(await make_handler(worker)({"id": job.id, "input": job.input.to_payload()}))
    [paid] = first.results
    # The chunk's answer is lost (RunPod forgot it): the dispatcher finds the image stored, without its usage.
    await runpod.forget(job.id)
    await dispatcher.run_once()
    [item] = await ledger.items(submitted.job.id)

    assert item.cost_usd == pytest.approx(cost_of(MODEL, None, batch=False, image_size="2K"))  # the estimate
    assert paid.usage is not None and paid.usage.image_output_tokens == 1680  # what the lost answer said
