"""`/usage`'s report on a SQLite ledger file: the CSV's totals against the ledger's own rows of recorded costs."""

import asyncio
import csv
import io
import sqlite3
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.app.budgets import BudgetService
from bot.core.budgets import BudgetConfig
from bot.core.models import (
    ChunkStatus,
    ItemOutcome,
    ItemStatus,
    JobId,
    JobKind,
    JobParams,
    NewItem,
    NewJob,
    Priority,
    UserId,
)
from bot.ledger import Ledger, new_id
from bot.ledger._rows import db_time
from tests.fakes.clock import FakeClock

UTC_TZ = ZoneInfo("UTC")


def job(owner: int, guild: int | None) -> NewJob:
    return NewJob(
        id=JobId(new_id("j")),
        kind=JobKind.BATCH,
        owner_id=UserId(owner),
        guild_id=guild,
        prompt="a cat",
        params=JobParams(model="gemini-2.5-flash-image", n=1),
        priority=Priority.BATCH,
    )


async def record(ledger: Ledger, new: NewJob, costs: list[float | None], runpod: float, clock: FakeClock) -> None:
    """Run `new` with one item per cost (None: made, nothing recorded; negative: blocked, its input billed)."""
    await ledger.create_job(new, [NewItem() for _ in costs], now=clock.now())
    chunk = await ledger.start_chunk(new.id, list(range(len(costs))), concurrency=2, now=clock.now())
    outcomes = [
        ItemOutcome(index=i, status=ItemStatus.ERROR, error_code="SAFETY", cost_usd=-cost)
        if cost is not None and cost < 0
        else ItemOutcome(index=i, status=ItemStatus.OK, key=f"k/{new.id}/{i}.png", cost_usd=cost)
        for i, cost in enumerate(costs)
    ]
    await ledger.record_outcomes(
        chunk.id, outcomes, now=clock.now(), final=ChunkStatus.DONE, runpod_s=runpod, runpod_cost_usd=runpod * 0.00016
    )


def ledger_costs(path: Path, since: str, until: str) -> list[float]:
    """Return the ledger's own rows of items' `cost_usd` and chunks' `runpod_cost_usd` recorded in [since, until)."""
    with sqlite3.connect(path) as db:
        items = db.execute(
            "SELECT cost_usd FROM items WHERE cost_usd IS NOT NULL AND spent_at >= ? AND spent_at < ?", (since, until)
        ).fetchall()
        chunks = db.execute(
            "SELECT runpod_cost_usd FROM chunks WHERE runpod_cost_usd IS NOT NULL AND finished_at >= ?"
            " AND finished_at < ?",
            (since, until),
        ).fetchall()
    return [float(r[0]) for r in items + chunks]


async def test_the_usage_csv_sums_to_the_ledgers_recorded_costs_in_the_period(db_path: Path) -> None:
    clock = FakeClock()
    async with await Ledger.open(db_path) as ledger:
        service = BudgetService(ledger, BudgetConfig(tz=UTC_TZ), clock=clock)
        yesterday = clock.now()
        await record(ledger, job(1, 100), [0.0412345, 0.0398761], 3.0, clock)  # outside the period
        clock.advance(timedelta(days=1))
        since = clock.now()
        await record(ledger, job(1, 100), [0.0412346, -0.0000052, 0.1013377], 7.25, clock)
        await record(ledger, job(2, 100), [0.0391111, -0.0000031], 2.5, clock)
        await record(ledger, job(1, 200), [0.0670049], 1.125, clock)
        await record(ledger, job(3, None), [0.2400001, 0.2399999], 4.0, clock)  # a DM, or the CLI
        clock.advance(timedelta(hours=1))
        until = clock.now()

        report = await service.usage_csv(since=since, until=until)

    rows = list(csv.DictReader(io.StringIO(report)))
    assert report.splitlines()[0] == "user_id,guild_id,images,not_made,gemini_usd,runpod_usd,usd"
    assert [(r["user_id"], r["guild_id"], r["images"], r["not_made"]) for r in rows] == [
        ("3", "", "2", "0"),
        ("1", "100", "2", "1"),
        ("2", "100", "1", "1"),
        ("1", "200", "1", "0"),
    ]
    for r in rows:
        assert Decimal(r["usd"]) == Decimal(r["gemini_usd"]) + Decimal(r["runpod_usd"])
    window = (db_time(since), db_time(until))
    costs = await asyncio.to_thread(ledger_costs, db_path, *window)
    assert len(costs) == 12 and yesterday < since
    usd = sum(Decimal(r["usd"]) for r in rows)
    # To the micro-dollar: the sum of the ledger's costs, each counted in whole micro-dollars (none is a half here).
    assert usd * 1_000_000 == sum(round(cost * 1_000_000) for cost in costs)
    assert abs(usd - Decimal(str(sum(costs)))) <= Decimal("0.0000005") * len(costs)
