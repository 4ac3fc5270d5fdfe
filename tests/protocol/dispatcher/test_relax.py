"""Relax batches through the dispatcher: parts prepared, created once on Gemini, watched, collected; restarts at
every phase, cancel, pause, expiry and retry. A real SQLite ledger; RunPod and Gemini are the fakes of
`tests.fakes.relax`, moved by the test."""

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.core.budgets import BudgetHold, Limit, Period, ScopeKind, micros
from bot.core.events import JobPaused
from bot.core.models import ChunkStatus, ItemStatus, JobId, JobStatus, UserId
from bot.core.policy import DispatchPolicy
from bot.core.relax import RelaxPhase, RelaxPolicy
from bot.dispatch import Dispatcher
from bot.gemini.types import GeminiBatchError, GeminiProblem
from bot.ledger import Ledger
from bot.runpod.errors import RunpodUnavailableError
from storage.memory import MemoryStore
from tests.fakes.clock import FakeClock
from tests.fakes.relax import MemoryBatches, RelaxRunpod
from tests.protocol.dispatcher.conftest import batch
from worker.contract import ErrorCode, RelaxCollectInput, TokenUsage, relax_display_name

POLL = timedelta(seconds=30)
UTC_TZ = ZoneInfo("UTC")  # loaded here, not inside the event loop (it reads the zone file)


@pytest.fixture
def runpod(store: MemoryStore) -> RelaxRunpod:
    return RelaxRunpod(store)


@pytest.fixture
def gemini() -> MemoryBatches:
    return MemoryBatches()


def relax_policy(*, part_items: int = 500, parts_per_job: int = 4) -> DispatchPolicy:
    return DispatchPolicy(relax=RelaxPolicy(poll=POLL, part_items=part_items, parts_per_job=parts_per_job))


@pytest.fixture
def make(
    ledger: Ledger, runpod: RelaxRunpod, store: MemoryStore, clock: FakeClock, gemini: MemoryBatches
) -> Callable[..., Dispatcher]:
    def make_dispatcher(policy: DispatchPolicy | None = None) -> Dispatcher:
        return Dispatcher(ledger, runpod, store, policy=policy or relax_policy(), clock=clock, batches=gemini)

    return make_dispatcher


async def submit_relax(dispatcher: Dispatcher, n: int) -> JobId:
    request = batch(n)
    request = replace(request, params=replace(request.params, relax=True))
    result = await dispatcher.submit(request)
    assert result.job is not None
    return result.job.id


async def advance_to_collect(
    dispatcher: Dispatcher, runpod: RelaxRunpod, gemini: MemoryBatches, clock: FakeClock, job_id: JobId
) -> str:
    """Run a one-part job up to its collect job; return the collect job's id."""
    await dispatcher.run_once()
    [prep] = runpod.open_relax("relax_prepare")
    runpod.prepare(prep.id)
    await dispatcher.run_once()
    [part] = await dispatcher.ledger.relax_parts(job_id=job_id)
    assert part.batch_name is not None
    gemini.succeed(part.batch_name, requests=part.items)
    clock.advance(POLL)
    await dispatcher.run_once()
    [collect] = runpod.open_relax("relax_collect")
    return collect.id


async def play_to_the_end(
    dispatcher: Dispatcher, runpod: RelaxRunpod, gemini: MemoryBatches, clock: FakeClock, *, requests: int
) -> int:
    """Play the worker and Gemini for a few rounds: answer every prepare, succeed every batch still held, answer
    every collect; return how many collect jobs were answered."""
    collected = 0
    for _ in range(6):
        await dispatcher.run_once()
        for prep in runpod.open_relax("relax_prepare"):
            runpod.prepare(prep.id)
        for batch_job in gemini.batches.values():
            if batch_job.info.state in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING"):
                gemini.succeed(batch_job.info.name, requests=requests)
        for collect in runpod.open_relax("relax_collect"):
            await runpod.collect(collect.id)
            collected += 1
        clock.advance(POLL)
    return collected


async def test_a_relax_batch_is_prepared_created_once_watched_and_collected(
    make, runpod: RelaxRunpod, gemini: MemoryBatches, ledger: Ledger, clock: FakeClock
) -> None:
    dispatcher = make()
    job_id = await submit_relax(dispatcher, 10)

    await dispatcher.run_once()
    assert runpod.active() == []  # no fast chunk
    [prep] = runpod.open_relax("relax_prepare")
    assert [i.index for i in prep.input.items] == list(range(10))
    [part] = await ledger.relax_parts(job_id=job_id)
    assert part.phase is RelaxPhase.PREPARING
    status = await dispatcher.relax_status(job_id)
    assert status is not None and status.phase is RelaxPhase.PREPARING and status.sent == 10

    file_name = runpod.prepare(prep.id)
    await dispatcher.run_once()
    display = relax_display_name(job_id, part.chunk_id)
    assert gemini.created == {display: 1}
    created = gemini.by_display_name(display)
    assert created.file_name == file_name and created.model == "gemini-2.5-flash-image"
    [part] = await ledger.relax_parts(job_id=job_id)
    assert part.phase is RelaxPhase.SUBMITTED and part.batch_name == created.info.name

    gemini.run(created.info.name, requests=10, succeeded=4)
    await dispatcher.run_once()  # within the poll interval: Gemini is not asked
    assert gemini.calls["get"] == 0
    clock.advance(POLL)
    await dispatcher.run_once()
    status = await dispatcher.relax_status(job_id)
    assert status is not None and status.phase is RelaxPhase.RUNNING and status.gemini_done == 4

    result_file = gemini.succeed(created.info.name, requests=10)
    clock.advance(POLL)
    await dispatcher.run_once()
    [collect] = runpod.open_relax("relax_collect")
    assert isinstance(collect.input, RelaxCollectInput) and collect.input.result_file == result_file
    assert [(i.index, i.output_key) for i in collect.input.items] == [
        (n, f"outputs/{job_id}/{n:05d}.png") for n in range(10)
    ]

    await runpod.collect(collect.id, errors={3: ErrorCode.SAFETY})
    await dispatcher.run_once()
    await dispatcher.drain_relax()
    job = await ledger.get_job(job_id)
    assert job is not None and job.status is JobStatus.DONE and (job.ok, job.failed) == (9, 1)
    assert await dispatcher.relax_status(job_id) is None
    assert set(gemini.deleted_files) == {file_name, result_file}
    assert gemini.deleted_batches == [created.info.name]  # its record too, so listings stay short
    chunk = await ledger.get_chunk(part.chunk_id)
    assert chunk is not None and chunk.status is ChunkStatus.DONE


async def test_parts_respect_the_part_size_and_the_open_part_limits(make, runpod: RelaxRunpod, ledger: Ledger) -> None:
    dispatcher = make(relax_policy(part_items=5, parts_per_job=2))
    job_id = await submit_relax(dispatcher, 12)
    await dispatcher.run_once()
    preps = runpod.open_relax("relax_prepare")
    assert [[i.index for i in p.input.items] for p in preps] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    # A part that left items out (they did not fit its file) gives them back; the part closes with nothing to do.
    runpod.prepare(preps[0].id, left_out=[0, 1, 2, 3, 4])
    await dispatcher.run_once()
    parts = await ledger.relax_parts(job_id=job_id)
    assert [p.phase for p in parts][:1] == [RelaxPhase.DONE]
    [third] = [p for p in runpod.open_relax("relax_prepare") if p.id != preps[1].id]
    assert [i.index for i in third.input.items] == [0, 1, 2, 3, 4]  # the returned items first, by index
    item = await ledger.get_item(job_id, 0)
    assert item is not None and item.status is ItemStatus.SUBMITTED and item.attempts == 1  # the attempt given back


async def test_items_the_worker_refuses_fail_and_the_rest_go_on(
    make, runpod: RelaxRunpod, gemini: MemoryBatches, ledger: Ledger
) -> None:
    dispatcher = make()
    job_id = await submit_relax(dispatcher, 3)
    await dispatcher.run_once()
    [prep] = runpod.open_relax("relax_prepare")
    runpod.prepare(prep.id, errors={1: ErrorCode.TOO_LARGE})
    await dispatcher.run_once()
    item = await ledger.get_item(job_id, 1)
    assert item is not None and item.status is ItemStatus.ERROR and item.error_code == "TOO_LARGE"
    assert sum(gemini.created.values()) == 1


@pytest.mark.parametrize("phase", ["preparing", "created-not-recorded", "submitted", "running", "collecting"])
async def test_a_restart_in_any_phase_finishes_without_a_second_batch_or_image(
    phase: str, make, runpod: RelaxRunpod, gemini: MemoryBatches, ledger: Ledger, clock: FakeClock
) -> None:
    first = make()
    job_id = await submit_relax(first, 6)
    await first.run_once()
    [prep] = runpod.open_relax("relax_prepare")
    [part] = await ledger.relax_parts(job_id=job_id)
    display = relax_display_name(job_id, part.chunk_id)
    if phase == "preparing":
        runpod.forget_relax(prep.id)  # the embedded RunPod died with the bot
    else:
        file_name = runpod.prepare(prep.id)
        if phase == "created-not-recorded":
            # The bot created the batch and died before writing its name down.
            await gemini.create(model="gemini-2.5-flash-image", file_name=file_name, display_name=display)
        else:
            await first.run_once()
            name = gemini.by_display_name(display).info.name
            if phase in ("running", "collecting"):
                gemini.run(name, requests=6, succeeded=2)
                clock.advance(POLL)
                await first.run_once()
            if phase == "collecting":
                gemini.succeed(name, requests=6)
                clock.advance(POLL)
                await first.run_once()
                [collect] = runpod.open_relax("relax_collect")
                # The worker wrote two outputs before the bot died, and RunPod forgot the job.
                await runpod.store.put(collect.input.items[0].output_key, b"\x89PNG", content_type="image/png")
                runpod.made[collect.input.items[0].output_key] += 1
                runpod.forget_relax(collect.id)

    second = make()  # a new process on the same ledger
    await second.resume_after_restart()
    await play_to_the_end(second, runpod, gemini, clock, requests=6)
    job = await ledger.get_job(job_id)
    assert job is not None and job.status is JobStatus.DONE and job.ok == 6
    assert gemini.created == {display: 1}
    assert set(runpod.made.values()) == {1}  # no image written twice


async def test_cancel_while_gemini_runs_cancels_the_batch_and_collects_nothing(
    make, runpod: RelaxRunpod, gemini: MemoryBatches, ledger: Ledger, clock: FakeClock
) -> None:
    dispatcher = make()
    job_id = await submit_relax(dispatcher, 5)
    await dispatcher.run_once()
    [prep] = runpod.open_relax("relax_prepare")
    runpod.prepare(prep.id)
    await dispatcher.run_once()
    [part] = await ledger.relax_parts(job_id=job_id)
    assert part.batch_name is not None
    gemini.run(part.batch_name, requests=5, succeeded=3)

    cancelled = await dispatcher.cancel(job_id, UserId(1))
    assert cancelled.cancelled
    await dispatcher.run_once()
    assert gemini.batches[part.batch_name].cancelled
    [part] = await ledger.relax_parts(job_id=job_id)
    assert part.phase is RelaxPhase.DONE
    clock.advance(POLL)
    await dispatcher.run_once()
    assert runpod.open_relax("relax_collect") == [] and runpod.made == {}
    job = await ledger.get_job(job_id)
    assert job is not None and job.status is JobStatus.CANCELLED and job.ok == 0 and job.cancelled == 5


async def test_an_expired_batch_fails_its_items_and_retry_failed_runs_them_in_a_new_batch(
    make, runpod: RelaxRunpod, gemini: MemoryBatches, ledger: Ledger, clock: FakeClock
) -> None:
    dispatcher = make()
    job_id = await submit_relax(dispatcher, 4)
    await dispatcher.run_once()
    [prep] = runpod.open_relax("relax_prepare")
    runpod.prepare(prep.id)
    await dispatcher.run_once()
    [part] = await ledger.relax_parts(job_id=job_id)
    assert part.batch_name is not None
    gemini.end(part.batch_name, "JOB_STATE_EXPIRED")
    clock.advance(POLL)
    await dispatcher.run_once()
    job = await ledger.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED and job.failed == 4
    assert await ledger.error_counts(job_id) == {"EXPIRED": 4}

    await dispatcher.retry_failed(job_id)
    assert await play_to_the_end(dispatcher, runpod, gemini, clock, requests=4) == 1  # one collect: the new part
    job = await ledger.get_job(job_id)
    assert job is not None and job.status is JobStatus.DONE and job.ok == 4
    assert len(gemini.created) == 2  # a second part, its own batch


async def test_pause_sends_no_new_part_but_the_batch_gemini_holds_is_collected(
    make, runpod: RelaxRunpod, gemini: MemoryBatches, ledger: Ledger, clock: FakeClock
) -> None:
    dispatcher = make(relax_policy(part_items=3, parts_per_job=1))
    job_id = await submit_relax(dispatcher, 6)
    await dispatcher.run_once()
    [prep] = runpod.open_relax("relax_prepare")
    runpod.prepare(prep.id)
    await dispatcher.run_once()
    await dispatcher.pause(job_id)
    [part] = await ledger.relax_parts(job_id=job_id)
    assert part.batch_name is not None
    gemini.succeed(part.batch_name, requests=3)
    clock.advance(POLL)
    await dispatcher.run_once()
    [collect] = runpod.open_relax("relax_collect")
    await runpod.collect(collect.id)
    await dispatcher.run_once()
    await dispatcher.run_once()
    assert runpod.open_relax("relax_prepare") == []  # paused: the second part waits
    job = await ledger.get_job(job_id)
    assert job is not None and job.status is JobStatus.PAUSED and job.ok == 3
    await dispatcher.resume(job_id)
    await dispatcher.run_once()
    [second] = runpod.open_relax("relax_prepare")
    assert [i.index for i in second.input.items] == [3, 4, 5]


async def test_gemini_unreachable_is_asked_again_and_a_refused_key_fails_the_part(
    make, runpod: RelaxRunpod, gemini: MemoryBatches, ledger: Ledger, clock: FakeClock
) -> None:
    dispatcher = make()
    job_id = await submit_relax(dispatcher, 2)
    await dispatcher.run_once()
    [prep] = runpod.open_relax("relax_prepare")
    gemini.fail_next.append(GeminiBatchError(GeminiProblem.UNREACHABLE, "list: ClientConnectorError"))
    runpod.prepare(prep.id)
    await dispatcher.run_once()
    assert gemini.created == {}
    [part] = await ledger.relax_parts(job_id=job_id)
    assert part.phase is RelaxPhase.PREPARING and part.input_file is not None
    status = await dispatcher.relax_status(job_id)
    assert status is not None and status.trouble_since is not None  # the progress message says so
    await dispatcher.run_once()  # asked again
    assert sum(gemini.created.values()) == 1
    status = await dispatcher.relax_status(job_id)
    assert status is not None and status.trouble_since is None

    other = await submit_relax(dispatcher, 2)
    await dispatcher.run_once()
    [prep2] = runpod.open_relax("relax_prepare")
    gemini.fail_next.extend([GeminiBatchError(GeminiProblem.REFUSED, "list: 403 PERMISSION_DENIED", status=403)])
    runpod.prepare(prep2.id)
    await dispatcher.run_once()
    assert await ledger.error_counts(other) == {"CONFIG": 2}


async def test_fast_batches_never_go_through_relax(make, runpod: RelaxRunpod, gemini: MemoryBatches) -> None:
    dispatcher = make()
    result = await dispatcher.submit(batch(3))
    assert result.job is not None
    await dispatcher.run_once()
    assert len(runpod.active()) == 1 and runpod.relax == {} and gemini.calls == {}


async def test_a_part_whose_prepare_runpod_refused_waits_in_the_ledger_and_goes_once_runpod_answers(
    make: Callable[..., Dispatcher], runpod: RelaxRunpod, ledger: Ledger, clock: FakeClock
) -> None:
    dispatcher = make()
    job_id = await submit_relax(dispatcher, 3)
    runpod.run_errors.append(RunpodUnavailableError("connection refused"))
    await dispatcher.run_once()  # no exception out of the round: the part waits
    [part] = await ledger.relax_parts(job_id=job_id)
    assert part.phase is RelaxPhase.PREPARING and part.runpod_id is None
    assert runpod.open_relax("relax_prepare") == []
    for _ in range(3):  # RunPod's breaker probes /health on its backoff, and closes
        clock.advance(2)
        await dispatcher.run_once()
    [prep] = runpod.open_relax("relax_prepare")
    assert [i.index for i in prep.input.items] == [0, 1, 2]


async def test_a_relax_items_usage_is_recorded_at_the_batch_price_with_its_runpod_jobs_time(
    make: Callable[..., Dispatcher], runpod: RelaxRunpod, gemini: MemoryBatches, clock: FakeClock, ledger: Ledger
) -> None:
    dispatcher = make(replace(relax_policy(), runpod_price_per_s=0.001))
    job_id = await submit_relax(dispatcher, 2)
    await dispatcher.run_once()
    [prep] = runpod.open_relax("relax_prepare")
    runpod.prepare(prep.id, execution_ms=2_000)
    await dispatcher.run_once()
    [part] = await ledger.relax_parts(job_id=job_id)
    assert part.batch_name is not None
    gemini.succeed(part.batch_name, requests=part.items)
    clock.advance(POLL)
    await dispatcher.run_once()
    [collect] = runpod.open_relax("relax_collect")
    usage = TokenUsage(prompt_tokens=10, output_tokens=1290, image_output_tokens=1290)
    await runpod.collect(collect.id, usage=usage, execution_ms=3_000)
    await dispatcher.run_once()

    items = await ledger.items(job_id)
    assert [i.status for i in items] == [ItemStatus.OK, ItemStatus.OK]
    half = (10 * 0.30 + 1290 * 30) / 1e6 / 2  # gemini-2.5-flash-image through the Batch API: half of each price
    assert [i.cost_usd for i in items] == [pytest.approx(half)] * 2
    assert await ledger.job_cost(job_id) == pytest.approx(2 * half + 5 * 0.001)  # prepare's 2 s and collect's 3 s


async def test_a_failed_prepare_jobs_runpod_time_is_recorded_too(
    make: Callable[..., Dispatcher], runpod: RelaxRunpod, ledger: Ledger
) -> None:
    dispatcher = make(replace(relax_policy(), runpod_price_per_s=0.001))
    job_id = await submit_relax(dispatcher, 2)
    await dispatcher.run_once()
    [prep] = runpod.open_relax("relax_prepare")
    runpod.fail(prep.id, execution_ms=1_500)

    await dispatcher.run_once()

    assert await ledger.job_cost(job_id) == pytest.approx(1.5 * 0.001)


async def test_a_relax_part_holds_only_what_the_money_cap_leaves_and_the_job_then_pauses(
    make, runpod: RelaxRunpod, gemini: MemoryBatches, ledger: Ledger, clock: FakeClock
) -> None:
    half = micros("0.0195")  # the model's batch price of a 1K image
    limits = (Limit(scope=ScopeKind.GUILD, period=Period.DAY, cap=3 * half),)
    dispatcher = make()
    events = dispatcher.subscribe()
    request = replace(batch(10), guild_id=7, budget=BudgetHold(cost=2 * half, limits=limits, tz=UTC_TZ))
    result = await dispatcher.submit(replace(request, params=replace(request.params, relax=True)))
    assert result.job is not None

    await dispatcher.run_once()
    [prep] = runpod.open_relax("relax_prepare")
    assert len(prep.input.items) == 3  # not the part's 500, nor the job's 10: a part cannot be paused at Gemini
    await play_to_the_end(dispatcher, runpod, gemini, clock, requests=3)

    job = await ledger.get_job(result.job.id)
    assert job is not None and job.status is JobStatus.PAUSED and job.ok == 3
    assert len(await ledger.relax_parts(job_id=result.job.id)) == 1
    [paused] = [e for e in events.drain() if isinstance(e, JobPaused)]
    assert paused.budget is not None and paused.budget.cap == 3 * half
