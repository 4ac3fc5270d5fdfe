"""What was spent, in the SQLite ledger: costs recorded with items and chunks, `spent`, `job_cost`, migration 0007."""

import asyncio
import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from bot.core.models import ChunkStatus, ItemOutcome, ItemStatus, JobId, NewJob
from bot.ledger import Ledger
from tests.fakes.clock import FakeClock
from tests.protocol.ledger.conftest import MakeJob, items
from tests.protocol.ledger.downgrade import to_schema_6
from worker.contract import TokenUsage

USAGE = TokenUsage(prompt_tokens=10, output_tokens=1290, image_output_tokens=1290)


async def run_chunk(
    ledger: Ledger,
    job: NewJob,
    costs: list[float | None],
    clock: FakeClock,
    *,
    runpod_s: float | None = None,
    runpod_cost_usd: float | None = None,
) -> None:
    """Create `job` with one item per cost, run them in one chunk, and record each OK with its cost."""
    await ledger.create_job(job, items(len(costs)), now=clock.now())
    chunk = await ledger.start_chunk(job.id, list(range(len(costs))), concurrency=4, now=clock.now())
    outcomes = [
        ItemOutcome(index=i, status=ItemStatus.OK, key=f"outputs/{job.id}/{i}.png", cost_usd=cost, usage=USAGE)
        for i, cost in enumerate(costs)
    ]
    await ledger.record_outcomes(
        chunk.id, outcomes, now=clock.now(), final=ChunkStatus.DONE, runpod_s=runpod_s, runpod_cost_usd=runpod_cost_usd
    )


async def test_record_outcomes_stores_each_items_cost_and_usage_and_none_keeps_them(
    ledger: Ledger, make_job: MakeJob, clock: FakeClock
) -> None:
    job = make_job()
    await ledger.create_job(job, items(2), now=clock.now())
    chunk = await ledger.start_chunk(job.id, [0, 1], concurrency=2, now=clock.now())
    blocked = ItemOutcome(
        index=0, status=ItemStatus.ERROR, error_code="SAFETY", cost_usd=0.000003, usage=TokenUsage(prompt_tokens=10)
    )
    retry = ItemOutcome(index=1, status=ItemStatus.PENDING, error_code="UPSTREAM", retry_at=clock.now())
    await ledger.record_outcomes(chunk.id, [blocked, retry], now=clock.now())

    got = await ledger.items(job.id)

    assert (got[0].cost_usd, got[0].usage) == (0.000003, TokenUsage(prompt_tokens=10))
    assert (got[1].cost_usd, got[1].usage) == (None, None)  # no answer came: nothing recorded


async def test_spent_sums_item_costs_and_runpod_costs_by_owner_guild_and_period(
    ledger: Ledger, make_job: MakeJob, clock: FakeClock
) -> None:
    day_one = clock.now()
    alice_a = dataclasses.replace(make_job(owner=1), guild_id=100)
    await run_chunk(ledger, alice_a, [0.039, 0.039], clock, runpod_s=10.0, runpod_cost_usd=0.0016)
    clock.advance(timedelta(days=1))
    bob = dataclasses.replace(make_job(owner=2), guild_id=100)
    await run_chunk(ledger, bob, [0.134], clock, runpod_s=5.0, runpod_cost_usd=0.0008)
    alice_b = dataclasses.replace(make_job(owner=1), guild_id=200)
    # A made item with no recorded cost (a model without token prices) counts at the price table's estimate.
    await run_chunk(ledger, alice_b, [0.067, None], clock)

    assert await ledger.spent() == pytest.approx(0.078 + 0.0016 + 0.134 + 0.0008 + 0.067 + 0.039)
    assert await ledger.spent(owner_id=1) == pytest.approx(0.078 + 0.0016 + 0.067 + 0.039)
    assert await ledger.spent(guild_id=100) == pytest.approx(0.078 + 0.0016 + 0.134 + 0.0008)
    assert await ledger.spent(owner_id=1, guild_id=200) == pytest.approx(0.067 + 0.039)
    day_two = day_one + timedelta(days=1)
    assert await ledger.spent(since=day_two) == pytest.approx(0.134 + 0.0008 + 0.067 + 0.039)
    assert await ledger.spent(until=day_two) == pytest.approx(0.078 + 0.0016)
    assert await ledger.spent(owner_id=3) == 0.0
    assert await ledger.job_cost(alice_a.id) == pytest.approx(0.078 + 0.0016)
    assert await ledger.job_cost(JobId("j_none")) is None


async def test_runpod_time_of_a_chunks_jobs_adds_up(ledger: Ledger, make_job: MakeJob, clock: FakeClock) -> None:
    job = make_job()
    await ledger.create_job(job, items(1), now=clock.now())
    chunk = await ledger.start_chunk(job.id, [0], concurrency=1, now=clock.now())

    await ledger.record_outcomes(chunk.id, [], now=clock.now(), runpod_s=2.0, runpod_cost_usd=0.00032)  # prepare
    await ledger.record_outcomes(chunk.id, [], now=clock.now(), runpod_s=3.0, runpod_cost_usd=0.00048)  # collect

    assert await ledger.job_cost(job.id) == pytest.approx(0.0008)


async def test_migration_0007_applies_to_an_existing_ledger_and_keeps_its_items(
    db_path: Path, make_job: MakeJob, clock: FakeClock
) -> None:
    job = make_job()
    async with await Ledger.open(db_path) as first:
        await first.create_job(job, items(2), now=clock.now())

    await asyncio.to_thread(to_schema_6, db_path)  # the ledger as a bot before #25 left it
    async with await Ledger.open(db_path) as again:
        assert await again.schema_version() >= 7
        got = await again.items(job.id)
        assert [(i.index, i.cost_usd, i.usage) for i in got] == [(0, None, None), (1, None, None)]
        assert await again.spent() == 0.0
        chunk = await again.start_chunk(job.id, [0], concurrency=1, now=clock.now())
        await again.record_outcomes(
            chunk.id, [ItemOutcome(index=0, status=ItemStatus.OK, key="k/0.png", cost_usd=0.039)], now=clock.now()
        )
        assert await again.spent(owner_id=job.owner_id) == pytest.approx(0.039)
