"""Budgets through the services on the in-memory ledger: /imagine and /batch refused at once, gates, the reports."""

import csv
import io
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.app.batches import BatchService
from bot.app.batchplan import BatchError, BatchRequest
from bot.app.budgets import BudgetError, BudgetService
from bot.app.generation import GenerationService
from bot.app.generation_types import GenerationError, Origin
from bot.app.runtime import Runtime
from bot.core.budgets import BudgetConfig, Caps, Period, RoleRule, ScopeKind, micros
from bot.core.models import UserId
from bot.errors import UserFacingError
from bot.ledger import Ledger
from tests.fakes.clock import FakeClock
from tests.fakes.gateway import MemoryRunpod
from tests.protocol.services.conftest import RunToEnd
from tests.protocol.services.test_batches import write_zip
from worker.contract import ErrorCode

IMAGE = micros("0.039")  # gemini-2.5-flash-image, 1K
GUILD = 7
LA = ZoneInfo("America/Los_Angeles")  # loaded outside the event loop (it reads the zone file)


def budgets(ledger: Ledger, clock: FakeClock, **config: object) -> BudgetService:
    return BudgetService(ledger, BudgetConfig(tz=LA, **config), clock=clock)  # type: ignore[arg-type]


def generation(runtime: Runtime, service: BudgetService) -> GenerationService:
    return GenerationService(
        runtime.ledger,
        runtime.dispatcher,
        runtime.backends.store,
        default_model="gemini-2.5-flash-image",
        budgets=service,
    )


def request(owner: int, *, roles: frozenset[int] = frozenset()) -> BatchRequest:
    return BatchRequest(owner_id=owner, guild_id=GUILD, channel_id=70, prompt="make it blue", role_ids=roles)


async def test_a_grid_over_the_users_daily_cap_is_refused_before_anything_is_queued(
    runtime: Runtime, ledger: Ledger, clock: FakeClock, run_to_end: RunToEnd
) -> None:
    service = generation(runtime, budgets(ledger, clock, user=Caps(day=4 * IMAGE + 3 * IMAGE)))
    origin = Origin(user_id=UserId(1), guild_id=GUILD)
    first = await service.submit(await service.imagine("a fox", origin))  # a grid of 4: $0.156 of $0.273
    assert first.result.job is not None
    await run_to_end(first.result.job.id)

    with pytest.raises(GenerationError, match=r"Your daily budget is \$0\.273; \$0\.156 is spent") as refused:
        await service.submit(await service.imagine("a fox", Origin(user_id=UserId(1), guild_id=GUILD)))
    assert "cost $0.156" in refused.value.user_message and "PST" in refused.value.user_message
    assert len(await ledger.list_jobs()) == 1
    # Another user of the guild has their own cap.
    other = await service.submit(await service.imagine("a fox", Origin(user_id=UserId(2), guild_id=GUILD)))
    assert other.result.job is not None


async def test_two_users_batches_together_over_the_guilds_cap_the_second_is_refused_at_plan_and_at_start(
    runtime: Runtime, ledger: Ledger, clock: FakeClock, tmp_path: Path
) -> None:
    service = BatchService(runtime, budgets=budgets(ledger, clock, guild=Caps(day=10 * IMAGE)))
    zip_path = await write_zip(tmp_path / "in.zip", 6)
    alice = await service.plan_from_file(zip_path, request(1), source="in.zip")
    bob = await service.plan_from_file(zip_path, request(2), source="in.zip")  # fits: nothing is reserved yet
    fits = "🧾 $0.39 left of this server's daily cap · $0.156 after this batch"
    assert await service.budget_line(bob, is_admin=False) == fits

    await service.start(alice, group_id=None, is_admin=False)
    with pytest.raises(BatchError, match=r"This server's daily budget is \$0\.39; \$0\.234 is spent or reserved"):
        await service.start(bob, group_id=None, is_admin=False)
    # A plan made over a cap is refused at once; one made before, now over it, says so in its line.
    with pytest.raises(BatchError, match="This server's daily budget"):
        await service.plan_from_file(zip_path, request(3), source="in.zip")
    line = await service.budget_line(bob, is_admin=False)
    assert line is not None and line.startswith("⛔ about $0.234: $0.078 over this server's daily cap ($0.156 left")
    assert len(await ledger.list_jobs()) == 1


async def test_role_gates_refuse_batches_models_and_sizes(
    runtime: Runtime, ledger: Ledger, clock: FakeClock, tmp_path: Path
) -> None:
    rules = {
        1: RoleRule(batch=False),
        2: RoleRule(max_batch_items=3),
        3: RoleRule(allow_4k=False, models=frozenset({"gemini-3-pro-image-preview"})),
    }
    service = BatchService(runtime, budgets=budgets(ledger, clock, roles=rules))
    zip_path = await write_zip(tmp_path / "in.zip", 4)
    with pytest.raises(BatchError, match="/batch"):
        await service.plan_from_file(zip_path, request(1, roles=frozenset({1})), source="in.zip")
    with pytest.raises(BatchError, match="at most 3"):
        await service.plan_from_file(zip_path, request(1, roles=frozenset({2})), source="in.zip")
    # A member of both roles gets the more generous rule: batches, of any size.
    both = await service.plan_from_file(zip_path, request(1, roles=frozenset({1, 2})), source="in.zip")
    assert len(both.items) == 4
    gen = generation(runtime, budgets(ledger, clock, roles=rules))
    with pytest.raises(GenerationError, match=r"gemini-2\.5-flash-image"):
        await gen.submit(await gen.imagine("a fox", Origin(user_id=UserId(1), role_ids=frozenset({3}))))
    pro = "a fox --model gemini-3-pro-image-preview --size 4K"
    with pytest.raises(GenerationError, match="4K"):
        await gen.submit(await gen.imagine(pro, Origin(user_id=UserId(1), role_ids=frozenset({3}))))


async def test_admins_set_caps_over_the_defaults_and_the_changes_are_recorded(ledger: Ledger, clock: FakeClock) -> None:
    service = budgets(ledger, clock, user=Caps(day=micros(1), month=micros(10)))
    with pytest.raises(UserFacingError, match="admins"):
        await service.set_cap(ScopeKind.USER, 5, Period.DAY, Decimal(3), by=9, is_admin=False)
    await service.set_cap(ScopeKind.USER, 5, Period.DAY, Decimal("2.50"), by=9, is_admin=True)
    clock.advance(timedelta(minutes=1))
    await service.set_cap(ScopeKind.USER, 5, Period.DAY, None, by=8, is_admin=True)

    config = await service.config()
    assert config.user_overrides[5] == Caps(day=None, month=micros(10))  # the month keeps the default
    view = await service.view(user_id=5, guild_id=None, role_ids=())
    assert [(c.scope, c.period, c.cap) for c in view.caps] == [(ScopeKind.USER, Period.MONTH, micros(10))]
    latest, first = await service.changes()
    assert (first.old, first.new, first.by) == (None, micros("2.5"), 9)
    assert (latest.old, latest.new, latest.by, latest.at) == (micros("2.5"), None, 8, clock.now())


async def test_the_usage_csv_totals_equal_the_images_in_the_ledger(
    runtime: Runtime, ledger: Ledger, clock: FakeClock, run_to_end: RunToEnd
) -> None:
    service = budgets(ledger, clock)
    gen = generation(runtime, service)
    for user in (1, 1, 2):
        submitted = await gen.submit(await gen.imagine("a fox", Origin(user_id=UserId(user), guild_id=GUILD)))
        assert submitted.result.job is not None
        await run_to_end(submitted.result.job.id)

    since, until = clock.now() - timedelta(days=1), clock.now() + timedelta(days=1)
    rows = list(csv.DictReader(io.StringIO(await service.usage_csv(since=since, until=until))))
    assert [(r["user_id"], r["guild_id"], r["images"], r["usd"]) for r in rows] == [
        ("1", "7", "8", "0.312000"),
        ("2", "7", "4", "0.156000"),
    ]
    made = sum([len(await ledger.images(job_id=job.id)) for job in await ledger.list_jobs()])
    assert sum(int(r["images"]) for r in rows) == made
    assert sum(Decimal(r["usd"]) for r in rows) * 1_000_000 == await ledger.budget_spent(since=since, until=until)
    view = await service.view(user_id=1, guild_id=GUILD, role_ids=())
    assert view.spent_today == view.spent_month == 8 * IMAGE and view.remaining is None


async def test_retry_failed_of_an_ended_batch_over_the_guilds_cap_is_refused_naming_the_cap(
    runtime: Runtime, ledger: Ledger, clock: FakeClock, runpod: MemoryRunpod, run_to_end: RunToEnd, tmp_path: Path
) -> None:
    service = BatchService(runtime, budgets=budgets(ledger, clock, guild=Caps(day=5 * IMAGE)))
    alice = await service.start(
        await service.plan_from_file(await write_zip(tmp_path / "a.zip", 4), request(1), source="a.zip"),
        group_id=None,
        is_admin=False,
    )
    assert alice.job is not None
    await runtime.dispatcher.run_once()
    for chunk in runpod.active():
        await runpod.finish(chunk.id, errors=dict.fromkeys(chunk.indices[:2], ErrorCode.CONFIG))
    assert (await run_to_end(alice.job.id)).failed == 2  # ended: its reservation settles at its 2 images
    bob = await service.start(
        await service.plan_from_file(await write_zip(tmp_path / "b.zip", 2), request(2), source="b.zip"),
        group_id=None,
        is_admin=False,
    )
    assert bob.job is not None
    await run_to_end(bob.job.id)  # the guild has spent 4 of its 5

    with pytest.raises(BudgetError, match=r"This server's daily budget is \$0\.195; \$0\.156 is spent") as refused:
        await service.retry_failed(alice.job.id)

    assert refused.value.refused is not None and refused.value.refused.cost == 2 * IMAGE
    job = await ledger.get_job(alice.job.id)
    assert job is not None and job.status.is_final and job.failed == 2
