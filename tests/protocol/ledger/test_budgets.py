"""Budgets in a real SQLite ledger: spend from made images, reservations made with the job, settlement, restarts."""

import asyncio
import dataclasses
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.core.budgets import BudgetHold, Limit, Period, ScopeKind, micros
from bot.core.models import ChunkStatus, ItemOutcome, ItemStatus, JobId, JobStatus, NewJob
from bot.ledger import Ledger
from tests.fakes.clock import FakeClock
from tests.protocol.ledger.conftest import MakeJob, items
from tests.protocol.ledger.downgrade import to_schema_6

IMAGE = micros("0.039")  # gemini-2.5-flash-image's price table, 1K
UTC_TZ = ZoneInfo("UTC")
GUILD = 50


def guild_daily(cap: int) -> tuple[Limit, ...]:
    return (Limit(scope=ScopeKind.GUILD, period=Period.DAY, cap=cap),)


def in_guild(job: NewJob) -> NewJob:
    return dataclasses.replace(job, guild_id=GUILD)


async def make(ledger: Ledger, job_id: JobId, indices: list[int], clock: FakeClock, *, final: bool = True) -> None:
    chunk = await ledger.start_chunk(job_id, indices, concurrency=len(indices), now=clock.now())
    oks = [ItemOutcome(index=i, status=ItemStatus.OK, key=f"outputs/{job_id}/{i:05}.png") for i in indices]
    await ledger.record_outcomes(chunk.id, oks, now=clock.now(), final=ChunkStatus.DONE if final else None)


async def test_spent_prices_each_made_image_in_its_period(ledger: Ledger, make_job: MakeJob, clock: FakeClock) -> None:
    job = in_guild(make_job(owner=1))
    await ledger.create_job(job, items(4), now=clock.now())
    await make(ledger, job.id, [0, 1, 2], clock)
    day = clock.now().replace(hour=0)

    assert await ledger.budget_spent(owner_id=1, since=day, until=day + timedelta(days=1)) == 3 * IMAGE
    assert await ledger.budget_spent(guild_id=GUILD, since=day, until=day + timedelta(days=1)) == 3 * IMAGE
    assert await ledger.budget_spent(owner_id=2, since=day, until=day + timedelta(days=1)) == 0
    assert await ledger.budget_spent(owner_id=1, since=day + timedelta(days=1), until=day + timedelta(days=2)) == 0
    rows = await ledger.spend_rows(since=day, until=day + timedelta(days=1))
    assert [(r.owner_id, r.guild_id, r.usd_micros, r.images) for r in rows] == [(1, GUILD, 3 * IMAGE, 3)]


async def test_two_users_of_one_guild_cannot_reserve_past_its_daily_cap_together(
    ledger: Ledger, make_job: MakeJob, clock: FakeClock
) -> None:
    cap = 10 * IMAGE
    first, second = in_guild(make_job(owner=1)), in_guild(make_job(owner=2))
    hold = BudgetHold(cost=6 * IMAGE, limits=guild_daily(cap), tz=UTC_TZ)
    # Submitted at once: the check and the reservation share the job's transaction, so one of them loses.
    results = await asyncio.gather(
        ledger.create_job(first, items(6), now=clock.now(), hold=hold),
        ledger.create_job(second, items(6), now=clock.now(), hold=hold),
    )
    created = [r for r in results if r.job is not None]
    refused = [r for r in results if r.job is None]
    assert len(created) == 1 and len(refused) == 1
    assert refused[0].budget is not None
    assert (refused[0].budget.spent, refused[0].budget.cost, refused[0].budget.cap) == (6 * IMAGE, 6 * IMAGE, cap)
    # What is left fits exactly: spending exactly the cap is allowed, one micro-dollar more is not.
    exact = BudgetHold(cost=4 * IMAGE, limits=guild_daily(cap), tz=UTC_TZ)
    over = BudgetHold(cost=4 * IMAGE + 1, limits=guild_daily(cap), tz=UTC_TZ)
    assert (await ledger.create_job(in_guild(make_job(owner=3)), items(1), now=clock.now(), hold=over)).job is None
    assert (await ledger.create_job(in_guild(make_job(owner=3)), items(1), now=clock.now(), hold=exact)).job


async def test_a_reservation_counts_what_its_job_has_not_spent_and_settles_at_what_it_did(
    ledger: Ledger, make_job: MakeJob, clock: FakeClock
) -> None:
    job = in_guild(make_job(owner=1))
    hold = BudgetHold(cost=4 * IMAGE, limits=guild_daily(100 * IMAGE), tz=UTC_TZ)
    await ledger.create_job(job, items(4), now=clock.now(), hold=hold)
    usage = await ledger.budget_usage(owner_id=1, guild_id=GUILD, now=clock.now(), hold=hold)
    assert usage[(ScopeKind.GUILD, Period.DAY)] == 4 * IMAGE

    await make(ledger, job.id, [0, 1], clock)  # two made: spent 2, outstanding 2, never counted twice
    usage = await ledger.budget_usage(owner_id=1, guild_id=GUILD, now=clock.now(), hold=hold)
    assert usage[(ScopeKind.GUILD, Period.DAY)] == 4 * IMAGE
    assert usage[(ScopeKind.USER, Period.MONTH)] == 4 * IMAGE

    await ledger.cancel_job(job.id, now=clock.now())  # ends with two made: the reservation settles at 2 images
    settled = await ledger.settle_reservations(now=clock.now())
    assert [(r.job_id, r.spent, r.outstanding) for r in settled] == [(job.id, 2 * IMAGE, 0)]
    usage = await ledger.budget_usage(owner_id=1, guild_id=GUILD, now=clock.now(), hold=hold)
    assert usage[(ScopeKind.GUILD, Period.DAY)] == 2 * IMAGE
    assert await ledger.settle_reservations(now=clock.now()) == []


async def test_the_day_resets_and_a_restart_keeps_every_counter(
    db_path: Path, make_job: MakeJob, clock: FakeClock
) -> None:
    hold = BudgetHold(cost=2 * IMAGE, limits=guild_daily(3 * IMAGE), tz=UTC_TZ)
    async with await Ledger.open(db_path) as first:
        job = in_guild(make_job(owner=1))
        await first.create_job(job, items(2), now=clock.now(), hold=hold)
        await make(first, job.id, [0], clock)
        change = await first.set_budget_cap(ScopeKind.GUILD, GUILD, Period.DAY, micros(5), by=9, now=clock.now())
        assert change.old is None and change.new == micros(5)
    async with await Ledger.open(db_path) as second:
        usage = await second.budget_usage(owner_id=1, guild_id=GUILD, now=clock.now(), hold=hold)
        assert usage[(ScopeKind.GUILD, Period.DAY)] == 2 * IMAGE  # one made, one still reserved
        refused = await second.create_job(in_guild(make_job(owner=2)), items(2), now=clock.now(), hold=hold)
        assert refused.budget is not None and refused.budget.resets_at == clock.now().replace(hour=0) + timedelta(1)
        [cap] = await second.budget_caps()
        assert (cap.scope, cap.scope_id, cap.usd_micros, cap.set_by) == (ScopeKind.GUILD, GUILD, micros(5), 9)
        [audit] = await second.budget_changes()
        assert (audit.old, audit.new, audit.by, audit.at) == (None, micros(5), 9, clock.now())
        # The next day only the open reservation is left of it: the made image was yesterday's.
        clock.advance(timedelta(days=1))
        usage = await second.budget_usage(owner_id=1, guild_id=GUILD, now=clock.now(), hold=hold)
        assert usage[(ScopeKind.GUILD, Period.DAY)] == IMAGE
        assert (await second.create_job(in_guild(make_job(owner=2)), items(2), now=clock.now(), hold=hold)).job
        job_row = await second.get_job(job.id)
        assert job_row is not None and job_row.status is JobStatus.RUNNING


async def test_a_ledger_of_an_older_schema_gains_the_budget_tables_and_keeps_its_jobs(
    db_path: Path, make_job: MakeJob, clock: FakeClock
) -> None:
    async with await Ledger.open(db_path) as ledger:
        old = await ledger.create_job(make_job(owner=1), items(1), now=clock.now())

    await asyncio.to_thread(to_schema_6, db_path)  # as a ledger written before budgets existed
    async with await Ledger.open(db_path) as ledger:
        assert await ledger.schema_version() == await ledger.known_schema_version()
        assert old.job is not None and await ledger.get_job(old.job.id) == old.job
        assert await ledger.budget_caps() == []


async def test_the_caps_count_recorded_costs_when_recorded_and_the_estimate_for_made_items_without_one(
    ledger: Ledger, make_job: MakeJob, clock: FakeClock
) -> None:
    job = in_guild(make_job(owner=1))
    hold = BudgetHold(cost=4 * IMAGE, limits=guild_daily(100 * IMAGE), tz=UTC_TZ)
    await ledger.create_job(job, items(4), now=clock.now(), hold=hold)
    chunk = await ledger.start_chunk(job.id, [0, 1, 2, 3], concurrency=4, now=clock.now())
    outcomes = [
        ItemOutcome(index=0, status=ItemStatus.OK, key="k/0.png", cost_usd=0.0412345),  # Gemini's usage, priced
        ItemOutcome(index=1, status=ItemStatus.OK, key="k/1.png"),  # no recorded cost: the price table's $0.039
        ItemOutcome(index=2, status=ItemStatus.ERROR, error_code="SAFETY", cost_usd=0.0000052),  # input billed
        ItemOutcome(index=3, status=ItemStatus.ERROR, error_code="UPSTREAM"),  # no answer: nothing billed
    ]
    await ledger.record_outcomes(
        chunk.id, outcomes, now=clock.now(), final=ChunkStatus.DONE, runpod_s=10.0, runpod_cost_usd=0.0016
    )
    day = clock.now().replace(hour=0)
    # Each cost rounded to the micro-dollar: 41,235 + 39,000 + 5 + RunPod's 1,600.
    spent = 41_235 + IMAGE + 5 + 1_600

    assert await ledger.budget_spent(guild_id=GUILD, since=day, until=day + timedelta(days=1)) == spent
    assert await ledger.spent(owner_id=1) == spent / 1_000_000  # one definition of spent, in dollars
    [row] = await ledger.spend_rows(since=day, until=day + timedelta(days=1))
    assert (row.images, row.not_made, row.gemini_micros, row.runpod_micros, row.usd_micros) == (
        2,
        1,
        41_235 + IMAGE + 5,
        1_600,
        spent,
    )
    # The reservation counts what its job spent (recorded) and settles at it.
    [reservation] = await ledger.open_reservations()
    assert (reservation.spent, reservation.outstanding) == (spent, 4 * IMAGE - spent)
    # A chunk's RunPod time counts in the day its chunk ended, an item's cost in the day it was recorded.
    assert await ledger.budget_spent(guild_id=GUILD, since=day + timedelta(days=1), until=day + timedelta(2)) == 0


async def test_an_upgraded_ledger_keeps_the_spend_of_images_made_before_costs_were_recorded(
    db_path: Path, make_job: MakeJob, clock: FakeClock
) -> None:
    async with await Ledger.open(db_path) as ledger:
        job = in_guild(make_job(owner=1))
        await ledger.create_job(job, items(2), now=clock.now())
        await make(ledger, job.id, [0, 1], clock)

    await asyncio.to_thread(to_schema_6, db_path)  # as a bot before #25 left it: images, no costs
    async with await Ledger.open(db_path) as ledger:
        day = clock.now().replace(hour=0)
        assert await ledger.budget_spent(guild_id=GUILD, since=day, until=day + timedelta(days=1)) == 2 * IMAGE
