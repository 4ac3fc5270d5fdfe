"""Money caps in the dispatcher: a job refused at submit, a running batch paused at its cap, reservations settled."""

from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bot.core.budgets import BudgetHold, Limit, Period, ScopeKind, micros
from bot.core.events import JobPaused
from bot.core.models import JobId, JobStatus
from bot.core.policy import DispatchPolicy
from bot.dispatch import Dispatcher, SubmitStatus
from bot.ledger import Ledger
from bot.ledger.budgets import Reservation
from bot.ledger.errors import BudgetRefusedError
from storage.memory import MemoryStore
from tests.fakes.clock import FakeClock
from tests.fakes.gateway import MemoryRunpod
from tests.protocol.dispatcher.conftest import MakeDispatcher, batch
from worker.contract import ErrorCode, stop_key

IMAGE = micros("0.039")  # the model of `batch`, 1K
GUILD = 7
UTC_TZ = ZoneInfo("UTC")  # loaded here, not inside the event loop (it reads the zone file)


def hold(cost_images: int, cap_images: int) -> BudgetHold:
    limits = (Limit(scope=ScopeKind.GUILD, period=Period.DAY, cap=cap_images * IMAGE),)
    return BudgetHold(cost=cost_images * IMAGE, limits=limits, tz=UTC_TZ)


async def test_a_second_users_batch_over_the_guilds_cap_is_refused_naming_the_cap(
    make_dispatcher: MakeDispatcher,
) -> None:
    dispatcher = make_dispatcher()
    first = await dispatcher.submit(replace(batch(6, owner=1), guild_id=GUILD, budget=hold(6, 10)))
    second = await dispatcher.submit(replace(batch(6, owner=2), guild_id=GUILD, budget=hold(6, 10)))

    assert first.status is SubmitStatus.QUEUED
    assert second.status is SubmitStatus.REFUSED and second.job is None
    assert second.budget is not None and second.budget.scope is ScopeKind.GUILD
    assert "This server's daily budget is $0.39" in second.message and "$0.234 is spent or reserved" in second.message


async def test_a_running_batch_pauses_at_the_cap_when_it_costs_more_than_its_estimate(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, ledger: Ledger, store: MemoryStore
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(gemini_concurrency=2, max_chunk_concurrency=2))
    events = dispatcher.subscribe()
    # Its estimate (2 images) fit under the cap of 3; it holds 10, so the third image takes the cap.
    result = await dispatcher.submit(replace(batch(10, owner=1), guild_id=GUILD, budget=hold(2, 3)))
    assert result.job is not None
    job_id = result.job.id
    for _ in range(4):
        await dispatcher.run_once()
        for chunk in runpod.active():
            await runpod.finish(chunk.id)
    await dispatcher.run_once()

    job = await ledger.get_job(job_id)
    assert job is not None and job.status is JobStatus.PAUSED
    spent = await ledger.budget_spent(
        guild_id=GUILD, since=job.created_at.replace(hour=0), until=job.created_at.replace(hour=23)
    )
    # Never past the cap: the fake workers make every image they are sent, so this is the chunk sizing.
    assert spent == 3 * IMAGE  # each chunk held only what fitted beside the images in flight
    [paused] = [e for e in events.drain() if isinstance(e, JobPaused)]
    assert paused.budget is not None and paused.budget.cap == 3 * IMAGE
    assert await store.exists(stop_key(job_id))


async def test_a_job_within_its_estimate_runs_to_the_end_and_its_reservation_settles(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, ledger: Ledger
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(gemini_concurrency=4, max_chunk_concurrency=4))
    result = await dispatcher.submit(replace(batch(4, owner=1), guild_id=GUILD, budget=hold(4, 4)))
    assert result.job is not None
    for _ in range(3):
        await dispatcher.run_once()
        for chunk in runpod.active():
            await runpod.finish(chunk.id)
    await dispatcher.run_once()

    job = await ledger.get_job(result.job.id)
    assert job is not None and job.status is JobStatus.DONE and job.ok == 4
    assert await ledger.open_reservations() == []


async def ended_with_two_failed(dispatcher: Dispatcher, runpod: MemoryRunpod, ledger: Ledger) -> JobId:
    """Run a guild batch of 4 (estimate 4 images, the guild's daily cap 5) to its end: 2 made, 2 failed for good."""
    result = await dispatcher.submit(replace(batch(4, owner=1), guild_id=GUILD, budget=hold(4, 5)))
    assert result.job is not None
    await dispatcher.run_once()
    [chunk] = runpod.active()
    await runpod.finish(chunk.id, errors={2: ErrorCode.CONFIG, 3: ErrorCode.CONFIG})
    for _ in range(2):
        await dispatcher.run_once()
    assert await ledger.open_reservations() == []  # it ended: its reservation settled at its 2 images
    return result.job.id


async def test_retry_failed_of_an_ended_batch_reserves_its_items_again(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, ledger: Ledger
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(gemini_concurrency=4, max_chunk_concurrency=4))
    job_id = await ended_with_two_failed(dispatcher, runpod, ledger)

    job = await dispatcher.retry_failed(job_id)  # 2 spent + 2 retried fit the cap of 5

    assert job.status is JobStatus.RUNNING
    [reservation] = await ledger.open_reservations()
    assert (reservation.job_id, reservation.spent, reservation.outstanding) == (job_id, 2 * IMAGE, 2 * IMAGE)
    # The retried items hold their place under the cap: another user's 2 images no longer fit beside them.
    second = await dispatcher.submit(replace(batch(2, owner=2), guild_id=GUILD, budget=hold(2, 5)))
    assert second.status is SubmitStatus.REFUSED


async def test_retry_failed_of_an_ended_batch_is_refused_when_its_items_no_longer_fit(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, ledger: Ledger
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(gemini_concurrency=4, max_chunk_concurrency=4))
    job_id = await ended_with_two_failed(dispatcher, runpod, ledger)
    other = await dispatcher.submit(replace(batch(2, owner=2), guild_id=GUILD, budget=hold(2, 5)))
    assert other.job is not None
    await dispatcher.run_once()
    for chunk in runpod.active():
        await runpod.finish(chunk.id)
    await dispatcher.run_once()  # the guild has spent 4 of its 5

    with pytest.raises(BudgetRefusedError) as refused:
        await dispatcher.retry_failed(job_id)

    assert refused.value.refused.cost == 2 * IMAGE and refused.value.refused.spent == 4 * IMAGE
    assert "This server's daily budget is $0.195; $0.156 is spent or reserved" in refused.value.user_message
    job = await ledger.get_job(job_id)
    assert job is not None and job.status.is_final and job.failed == 2  # nothing changed
    assert await ledger.open_reservations() == []


async def test_the_budget_pass_runs_when_something_was_recorded_or_started_not_every_round(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, ledger: Ledger, clock: FakeClock
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(gemini_concurrency=2, max_chunk_concurrency=2))
    passes = 0
    settle = ledger.settle_reservations

    async def counted(*, now: datetime) -> list[Reservation]:
        nonlocal passes
        passes += 1
        return await settle(now=now)

    ledger.settle_reservations = counted  # type: ignore[method-assign]  # each budget pass settles first
    result = await dispatcher.submit(replace(batch(4, owner=1), guild_id=GUILD, budget=hold(4, 10)))
    assert result.job is not None

    await dispatcher.run_once()  # a job was submitted: the pass runs
    for _ in range(3):
        await dispatcher.run_once()  # its chunk is out, nothing comes back: nothing to look at again
    assert passes == 1
    clock.advance(DispatchPolicy().budget_pass_every)
    await dispatcher.run_once()  # at least every few seconds all the same
    assert passes == 2
    for chunk in runpod.active():
        await runpod.finish(chunk.id)
    await dispatcher.run_once()  # outcomes were recorded: the pass runs
    assert passes == 3


class AdminCaps:
    """The caps in force now, as an admin changes them while jobs run (`BudgetService.limits_now`'s part)."""

    def __init__(self, cap_images: int) -> None:
        self.cap_images = cap_images
        self.asked: list[tuple[int, frozenset[int], bool]] = []

    async def limits_now(
        self, *, owner_id: int, guild_id: int | None, role_ids: frozenset[int], is_admin: bool
    ) -> tuple[tuple[Limit, ...], ZoneInfo]:
        self.asked.append((owner_id, role_ids, is_admin))
        return (Limit(scope=ScopeKind.GUILD, period=Period.DAY, cap=self.cap_images * IMAGE),), UTC_TZ


async def test_a_cap_lowered_while_a_batch_runs_pauses_it_at_the_new_cap(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, ledger: Ledger
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(gemini_concurrency=2, max_chunk_concurrency=2))
    caps = AdminCaps(cap_images=100)
    dispatcher.use_caps(caps)
    admitted = replace(hold(40, 100), role_ids=frozenset({55}))
    result = await dispatcher.submit(replace(batch(40, owner=1), guild_id=GUILD, budget=admitted))
    assert result.job is not None
    await dispatcher.run_once()
    for chunk in runpod.active():
        await runpod.finish(chunk.id)
    await dispatcher.run_once()  # the finished chunk's outcomes are recorded
    running = await ledger.get_job(result.job.id)
    assert running is not None and 0 < running.ok < 40 and running.status is JobStatus.RUNNING
    in_flight = await ledger.items_in_flight(running.id)
    caps.cap_images = running.ok  # an admin lowers the guild's cap to what is spent already
    for _ in range(2):
        await dispatcher.run_once()
        for chunk in runpod.active():
            await runpod.finish(chunk.id)

    job = await ledger.get_job(result.job.id)
    assert job is not None and job.status is JobStatus.PAUSED
    assert job.ok <= running.ok + in_flight < 40  # only what was out already was made: nothing more was sent
    refused = await dispatcher.budget_refusal(job)
    assert refused is not None and refused.cap == running.ok * IMAGE
    assert (1, frozenset({55}), False) in caps.asked  # asked with the roles the owner had when it was admitted
