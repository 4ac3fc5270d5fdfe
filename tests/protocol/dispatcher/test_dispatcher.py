"""The dispatcher over a real SQLite ledger, an in-memory RunPod and a memory store, driven by run_once()."""

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.core.admission import CapPolicy, Caps
from bot.core.chunking import ChunkPolicy
from bot.core.events import ImageReady, JobCancelled, JobFailed, JobFinished, Progress, Queued, Started
from bot.core.models import ChunkStatus, ItemStatus, JobId, JobStatus, UserId
from bot.core.policy import DispatchPolicy
from bot.core.retry import RetryPolicy
from bot.dispatch import Dispatcher, InvalidRequestError, SubmitStatus
from bot.ledger import NOTE_HOLD_FROM, Ledger
from bot.runpod.errors import RunpodUnavailableError
from storage.memory import MemoryStore
from tests.fakes.clock import FakeClock
from tests.fakes.gateway import MemoryRunpod
from tests.protocol.dispatcher.conftest import MakeDispatcher, batch, grid
from worker.contract import ErrorCode

RETRY = RetryPolicy(max_attempts=3, base_delay=timedelta(seconds=10), cap=timedelta(minutes=1))


async def job_id_of(result_job: object) -> JobId:
    assert result_job is not None
    return result_job.id  # type: ignore[attr-defined, no-any-return]  # Job | None narrowed by the assert


async def test_grid_runs_as_one_chunk_and_finishes_when_worker_completes(
    dispatcher: Dispatcher, runpod: MemoryRunpod, ledger: Ledger
) -> None:
    events = dispatcher.subscribe()
    result = await dispatcher.submit(grid(key="i-1"))
    assert result.status is SubmitStatus.QUEUED and result.position == 1 and result.message.startswith("Job queued")
    assert result.job is not None
    job_id = result.job.id

    await dispatcher.run_once()

    [remote] = runpod.active()
    assert remote.indices == [0, 1, 2, 3] and remote.input.concurrency == 4
    assert [i.output_key for i in remote.input.items] == [f"outputs/{job_id}/{n:05d}.png" for n in range(4)]
    assert len({i.seed for i in remote.input.items}) == 4
    assert remote.execution_timeout_ms == 120_000 and remote.ttl_ms is not None
    assert not remote.low_priority

    await runpod.finish(remote.id)
    await dispatcher.run_once()

    got = events.drain()
    assert [type(e) for e in got] == [Queued, Started, *[ImageReady] * 4, Progress, JobFinished]
    finished = got[-1]
    assert isinstance(finished, JobFinished) and finished.summary.ok == 4
    assert [img.index for img in await ledger.images(job_id=job_id)] == [0, 1, 2, 3]
    job = await ledger.get_job(job_id)
    assert job is not None and job.status is JobStatus.DONE


async def test_submit_returns_existing_job_when_interaction_is_redelivered(
    dispatcher: Dispatcher, runpod: MemoryRunpod, ledger: Ledger
) -> None:
    first = await dispatcher.submit(grid(key="interaction-7"))
    second = await dispatcher.submit(grid(key="interaction-7"))
    await dispatcher.run_once()

    assert second.status is SubmitStatus.DUPLICATE
    assert first.job is not None and second.job is not None and second.job.id == first.job.id
    assert len(await ledger.list_jobs()) == 1
    assert len(runpod.jobs) == 1


async def test_submit_refuses_when_request_is_invalid(dispatcher: Dispatcher, ledger: Ledger) -> None:
    with pytest.raises(InvalidRequestError, match="Image 1"):
        await dispatcher.submit(grid(prompt=""))
    assert await ledger.list_jobs() == []


async def test_caps_make_jobs_wait_or_refuse_when_user_is_over_them(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(caps=CapPolicy(user=Caps(max_running=1, max_waiting=1))))

    running = await dispatcher.submit(grid())
    waiting = await dispatcher.submit(grid())
    refused = await dispatcher.submit(grid())
    admin = await dispatcher.submit(grid(is_admin=True))
    other_user = await dispatcher.submit(grid(owner=2))

    assert [r.status for r in (running, waiting, refused)] == [
        SubmitStatus.QUEUED,
        SubmitStatus.WAITING,
        SubmitStatus.REFUSED,
    ]
    assert refused.job is None and "jobs waiting" in refused.message
    assert admin.status is SubmitStatus.WAITING  # admins have no cap, but jobs of one user start in order
    assert other_user.status is SubmitStatus.QUEUED

    await dispatcher.run_once()
    assert running.job is not None and waiting.job is not None
    assert runpod.submitted_job_ids() == [running.job.id, other_user.job.id if other_user.job else ""]

    await runpod.finish_all()
    await dispatcher.run_once()  # the first job finishes; the waiting one starts

    assert runpod.submitted_job_ids()[2:] == [waiting.job.id]


async def test_cancel_stops_chunks_and_items_when_owner_cancels(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, ledger: Ledger
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(gemini_concurrency=10, max_chunk_concurrency=5))
    result = await dispatcher.submit(batch(100))
    job_id = await job_id_of(result.job)
    await dispatcher.run_once()
    on_runpod = [j.id for j in runpod.active()]
    assert len(on_runpod) == 2
    events = dispatcher.subscribe()

    denied = await dispatcher.cancel(job_id, UserId(99))
    done = await dispatcher.cancel(job_id, UserId(1))
    again = await dispatcher.cancel(job_id, UserId(1))
    await dispatcher.run_once()

    assert not denied.cancelled and done.cancelled and not again.cancelled
    assert runpod.cancelled == on_runpod
    assert len(runpod.jobs) == 2  # nothing new submitted
    assert {i.status for i in await ledger.items(job_id)} == {ItemStatus.CANCELLED}
    assert [type(e) for e in events.drain()] == [JobCancelled]
    assert (await dispatcher.cancel(JobId("j_nope"), UserId(1))).job is None


async def test_cancel_answers_as_for_a_missing_job_when_the_job_is_someone_elses(
    make_dispatcher: MakeDispatcher,
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy())
    job_id = await job_id_of((await dispatcher.submit(grid())).job)

    someone_elses = await dispatcher.cancel(job_id, UserId(99))
    missing = await dispatcher.cancel(JobId("j_0000000000000000"), UserId(99))

    assert someone_elses == missing  # the same answer: a guessed id tells nothing
    assert (await dispatcher.cancel(job_id, UserId(1))).cancelled  # untouched by the refused attempt


async def test_pause_holds_new_chunks_when_batch_is_paused(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, ledger: Ledger
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(gemini_concurrency=5, max_chunk_concurrency=5))
    job_id = await job_id_of((await dispatcher.submit(batch(60))).job)
    await dispatcher.run_once()
    [first] = runpod.active()

    paused = await dispatcher.pause(job_id)
    await runpod.finish(first.id)
    await dispatcher.run_once()

    assert paused.status is JobStatus.PAUSED
    assert len(runpod.jobs) == 1  # the running chunk finished and was recorded; no new chunk
    job = await ledger.get_job(job_id)
    assert job is not None and job.ok == len(first.indices) and job.status is JobStatus.PAUSED

    resumed = await dispatcher.resume(job_id)
    await dispatcher.run_once()

    assert resumed.status is JobStatus.RUNNING
    assert len(runpod.jobs) == 2


async def test_pause_and_resume_during_a_trial_keep_its_hold_until_the_rest_is_started(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, ledger: Ledger
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(gemini_concurrency=2, max_chunk_concurrency=2))
    job_id = await job_id_of((await dispatcher.submit(replace(batch(40), notes={NOTE_HOLD_FROM: 4}))).job)
    await dispatcher.run_once()
    [first] = runpod.active()
    await dispatcher.pause(job_id)
    await runpod.finish(first.id)
    await dispatcher.run_once()

    await dispatcher.resume(job_id)  # Resume, not "Start the rest": the trial goes on, the rest stays held
    for _ in range(5):
        await dispatcher.run_once()
        for chunk in runpod.active():
            await runpod.finish(chunk.id)
    await dispatcher.run_once()

    sent = sorted(i for chunk in runpod.jobs.values() for i in chunk.indices)
    trial = await ledger.get_job(job_id)
    assert sent == [0, 1, 2, 3]  # only the trial's items went out
    assert trial is not None and trial.ok == 4 and trial.status is JobStatus.PAUSED  # the trial is over: it paused
    assert await ledger.note(job_id, NOTE_HOLD_FROM) == 4

    await dispatcher.resume(job_id, release_hold=True)  # "Start the rest"
    await dispatcher.run_once()

    assert await ledger.note(job_id, NOTE_HOLD_FROM) is None
    assert min(i for chunk in runpod.active() for i in chunk.indices) == 4


async def test_safety_block_is_final_when_item_is_blocked(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, ledger: Ledger, clock: FakeClock
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(retry=RETRY))
    job_id = await job_id_of((await dispatcher.submit(grid())).job)
    events = dispatcher.subscribe()
    await dispatcher.run_once()
    await runpod.finish(runpod.active()[0].id, errors={1: ErrorCode.SAFETY})
    await dispatcher.run_once()
    clock.advance(timedelta(hours=1))
    await dispatcher.run_once()

    assert len(runpod.jobs) == 1
    item = await ledger.get_item(job_id, 1)
    assert item is not None and item.status is ItemStatus.ERROR and item.error_code == "SAFETY"
    finished = [e for e in events.drain() if isinstance(e, JobFinished)]
    assert finished[0].summary.errors == {"SAFETY": 1} and finished[0].summary.ok == 3


async def test_job_fails_with_reason_when_every_item_is_blocked(dispatcher: Dispatcher, runpod: MemoryRunpod) -> None:
    await dispatcher.submit(grid())
    events = dispatcher.subscribe()
    await dispatcher.run_once()
    await runpod.finish(runpod.active()[0].id, errors=dict.fromkeys(range(4), ErrorCode.SAFETY))
    await dispatcher.run_once()

    [failed] = [e for e in events.drain() if isinstance(e, JobFailed)]
    assert failed.reason == "Blocked by Gemini's safety filters." and failed.summary.failed == 4


async def test_only_failed_retryable_items_are_retried_when_backoff_elapses(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, ledger: Ledger, clock: FakeClock
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(retry=RETRY))
    job_id = await job_id_of((await dispatcher.submit(grid())).job)
    await dispatcher.run_once()
    await runpod.finish(runpod.active()[0].id, errors={2: ErrorCode.UPSTREAM, 3: ErrorCode.BAD_INPUT})
    await dispatcher.run_once()

    item = await ledger.get_item(job_id, 2)
    assert item is not None and item.status is ItemStatus.PENDING and item.retry_at == clock.now() + RETRY.base_delay
    clock.advance(timedelta(seconds=9))
    await dispatcher.run_once()
    assert len(runpod.jobs) == 1  # still backing off

    clock.advance(timedelta(seconds=1))
    await dispatcher.run_once()
    [retry] = runpod.active()
    assert retry.indices == [2]
    assert retry.input.items[0].seed == (await ledger.get_item(job_id, 2)).seed  # type: ignore[union-attr]

    await runpod.finish(retry.id)
    await dispatcher.run_once()
    job = await ledger.get_job(job_id)
    assert job is not None and (job.ok, job.failed, job.status) == (3, 1, JobStatus.DONE)


async def test_progress_is_published_and_items_counted_as_retrying_when_every_item_of_a_chunk_fails_upstream(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, ledger: Ledger, clock: FakeClock
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(retry=RETRY))
    job_id = await job_id_of((await dispatcher.submit(batch(2))).job)
    await dispatcher.run_once()
    events = dispatcher.subscribe()
    # The worker's retries are spent and every item comes back UPSTREAM, none made or failed (two, fewer than make
    # Gemini down: test_outage.py has what a longer run does)
    await runpod.finish(runpod.active()[0].id, errors=dict.fromkeys(range(2), ErrorCode.UPSTREAM))
    await dispatcher.run_once()

    assert [(e.done, e.failed, e.total) for e in events.drain() if isinstance(e, Progress)] == [(0, 0, 2)]
    assert await ledger.retrying_counts(job_id) == {"UPSTREAM": 2}

    clock.advance(RETRY.base_delay)
    await dispatcher.run_once()
    assert await ledger.retrying_counts(job_id) == {"UPSTREAM": 2}  # tried again, not made yet
    await runpod.finish(runpod.active()[0].id)
    await dispatcher.run_once()
    assert await ledger.retrying_counts(job_id) == {}


async def test_items_back_off_when_the_worker_returns_them_for_a_storage_outage(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, ledger: Ledger, clock: FakeClock
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(retry=RETRY))
    job_id = await job_id_of((await dispatcher.submit(grid())).job)
    await dispatcher.run_once()
    await runpod.finish(runpod.active()[0].id, errors={2: ErrorCode.STORAGE, 3: ErrorCode.STORAGE})
    await dispatcher.run_once()

    for index in (2, 3):
        item = await ledger.get_item(job_id, index)
        assert item is not None and (item.status, item.error_code) == (ItemStatus.PENDING, "STORAGE")
        assert item.retry_at == clock.now() + RETRY.base_delay
    await dispatcher.run_once()
    assert len(runpod.jobs) == 1  # not re-submitted at once

    clock.advance(RETRY.base_delay)
    await dispatcher.run_once()
    [retry] = runpod.active()
    assert retry.indices == [2, 3]


async def test_item_fails_for_good_when_attempts_run_out(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, ledger: Ledger, clock: FakeClock
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(retry=RETRY))
    job_id = await job_id_of((await dispatcher.submit(grid())).job)
    for _ in range(RETRY.max_attempts):
        await dispatcher.run_once()
        for remote in runpod.active():
            await runpod.finish(remote.id, errors={0: ErrorCode.NO_IMAGE})
        await dispatcher.run_once()
        clock.advance(RETRY.cap)

    item = await ledger.get_item(job_id, 0)
    assert item is not None and (item.status, item.attempts) == (ItemStatus.ERROR, RETRY.max_attempts)
    assert len(runpod.jobs) == RETRY.max_attempts


@pytest.mark.parametrize("ending", ["no_manifest", "failed", "timed_out", "not_found"])
async def test_lost_chunk_is_reconciled_from_storage_when_it_ends_without_manifest(
    ending: str, make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, ledger: Ledger, clock: FakeClock
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(retry=RETRY))
    job_id = await job_id_of((await dispatcher.submit(grid())).job)
    await dispatcher.run_once()
    [remote] = runpod.active()
    if ending == "no_manifest":
        await runpod.finish(remote.id, skip=(2, 3), manifest=False)
    elif ending == "failed":
        await runpod.fail(remote.id, made=(0, 1))
    elif ending == "timed_out":
        await runpod.time_out(remote.id, made=(0, 1))
    else:
        await runpod.forget(remote.id, made=(0, 1))
    events = dispatcher.subscribe()

    await dispatcher.run_once()

    assert [e.index for e in events.drain() if isinstance(e, ImageReady)] == [0, 1]
    images = await ledger.images(job_id=job_id)
    assert [(i.index, i.width, i.height) for i in images] == [(0, 64, 48), (1, 64, 48)]
    [chunk] = await ledger.chunks(job_id=job_id)
    assert chunk.status is ChunkStatus.LOST
    clock.advance(RETRY.base_delay)
    await dispatcher.run_once()
    assert runpod.active()[0].indices == [2, 3]  # only the missing ones, nothing regenerated


async def test_chunk_failure_is_final_when_worker_reports_bad_input(
    dispatcher: Dispatcher, runpod: MemoryRunpod, ledger: Ledger
) -> None:
    job_id = await job_id_of((await dispatcher.submit(grid())).job)
    await dispatcher.run_once()
    await runpod.fail(runpod.active()[0].id, "BAD_INPUT: reference image unreadable")
    await dispatcher.run_once()

    items = await ledger.items(job_id)
    assert {(i.status, i.error_code) for i in items} == {(ItemStatus.ERROR, "BAD_INPUT")}
    job = await ledger.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED


async def test_progress_records_images_early_when_worker_reports_them(
    dispatcher: Dispatcher, runpod: MemoryRunpod, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = await job_id_of((await dispatcher.submit(grid())).job)
    await dispatcher.run_once()
    [remote] = runpod.active()
    events = dispatcher.subscribe()
    writes = 0
    record_outcomes = ledger.record_outcomes

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal writes
        writes += 1
        return await record_outcomes(*args, **kwargs)

    monkeypatch.setattr(ledger, "record_outcomes", counted)

    await runpod.progress(remote.id, [0, 3])
    await dispatcher.run_once()
    await dispatcher.run_once()  # the same report twice changes nothing, and is not written again

    assert writes == 1
    got = events.drain()
    assert [e.index for e in got if isinstance(e, ImageReady)] == [0, 3]
    assert [(e.done, e.total) for e in got if isinstance(e, Progress)] == [(2, 4)]
    [chunk] = await ledger.chunks(statuses=(ChunkStatus.IN_FLIGHT,))
    assert chunk.last_progress == {"type": "progress", "done": 2, "total": 4}  # the counts, not every result

    await runpod.progress(remote.id, [1])  # the report lists 0 and 3 again: only 1 is new
    await dispatcher.run_once()
    assert [e.index for e in events.drain() if isinstance(e, ImageReady)] == [1]
    await runpod.finish(remote.id)
    await dispatcher.run_once()
    assert len(await ledger.images(job_id=job_id)) == 4


async def test_submission_is_retried_when_runpod_is_unavailable(
    dispatcher: Dispatcher, runpod: MemoryRunpod, ledger: Ledger, clock: FakeClock
) -> None:
    job_id = await job_id_of((await dispatcher.submit(grid())).job)
    runpod.run_errors.append(RunpodUnavailableError("503"))

    await dispatcher.run_once()
    assert runpod.jobs == {}
    assert {(i.status, i.attempts) for i in await ledger.items(job_id)} == {(ItemStatus.PENDING, 0)}
    assert await ledger.in_flight_concurrency() == 0

    clock.advance(timedelta(seconds=5))
    await dispatcher.run_once()
    assert len(runpod.active()) == 1


async def test_custom_chunk_policy_sets_runpod_limits_when_submitting(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod
) -> None:
    chunks = ChunkPolicy(item_latency_s=10, margin=1, startup_s=0, min_execution_s=1, queue_allowance_s=60)
    dispatcher = make_dispatcher(DispatchPolicy(gemini_concurrency=5, max_chunk_concurrency=5, chunks=chunks))
    await dispatcher.submit(batch(25))

    await dispatcher.run_once()

    [remote] = runpod.active()
    assert (len(remote.indices), remote.input.concurrency) == (25, 5)
    assert (remote.execution_timeout_ms, remote.ttl_ms) == (50_000, 110_000)


async def test_batch_chunks_grow_to_the_target_time_when_chunks_report_short_rounds(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(gemini_concurrency=8, max_chunk_concurrency=8))
    await dispatcher.submit(batch(4000))
    sizes: list[int] = []
    for _ in range(12):
        await dispatcher.run_once()
        [remote] = runpod.active()
        sizes.append(len(remote.indices))
        rounds = -(-len(remote.indices) // remote.input.concurrency)
        await runpod.finish(remote.id, execution_ms=500 * rounds)  # 0.5 s a round, like the benchmark's server

    # 3 rounds while the round time is the 20 s assumed at first, then longer chunks as 0.5 s rounds are
    # reported, up to the most a worker takes; never a part-filled round.
    assert sizes[0] == 24
    assert sizes == sorted(sizes) and sizes[-1] == 256
    assert all(size % 8 == 0 for size in sizes)


async def test_resume_after_restart_reattaches_and_resubmits_only_missing_when_crashed(
    db_path: Path,
    ledger: Ledger,
    runpod: MemoryRunpod,
    store: MemoryStore,
    clock: FakeClock,
    make_dispatcher: MakeDispatcher,
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(gemini_concurrency=10, max_chunk_concurrency=5))
    job_id = await job_id_of((await dispatcher.submit(batch(60))).job)
    await dispatcher.run_once()
    in_flight = runpod.active()
    assert len(in_flight) == 2
    # The process dies after recording a third chunk but before RunPod's answer: say the /run reached RunPod and
    # the worker made two of its items before we lost track of it.
    stranded = await ledger.start_chunk(job_id, [40, 41, 42], concurrency=3, now=clock.now())
    for index in (40, 41):
        await store.put(f"outputs/{job_id}/{index:05d}.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 16)
    await ledger.close()

    async with await Ledger.open(db_path) as reopened:
        restarted = make_dispatcher(DispatchPolicy(gemini_concurrency=10, max_chunk_concurrency=5), on=reopened)
        report = await restarted.resume_after_restart()

        assert (report.reattached, report.reconciled, report.recovered_items, report.requeued_items) == (2, 1, 2, 1)
        recovered = await reopened.get_chunk(stranded.id)
        assert recovered is not None and recovered.status is ChunkStatus.LOST
        await restarted.run_once()
        assert len(runpod.jobs) == 2  # the budget is still held by the two re-attached chunks

        for remote in in_flight:
            await runpod.finish(remote.id)
        for _ in range(10):
            await restarted.run_once()
            await runpod.finish_all()

        job = await reopened.get_job(job_id)
        assert job is not None and job.status is JobStatus.DONE and job.ok == 60
        submitted = [i for remote in runpod.jobs.values() for i in remote.indices]
        assert sorted(submitted) == [i for i in range(60) if i not in (40, 41)]  # nothing made twice
        img = await reopened.image_at(job_id, 40)
        assert img is not None and (img.width, img.height) == (None, None)  # header had no IHDR


async def test_resume_after_restart_requeues_at_once_when_runpod_forgot_chunks_in_flight(
    db_path: Path,
    ledger: Ledger,
    runpod: MemoryRunpod,
    clock: FakeClock,
    make_dispatcher: MakeDispatcher,
) -> None:
    policy = DispatchPolicy(gemini_concurrency=10, max_chunk_concurrency=5, retry=RETRY)
    dispatcher = make_dispatcher(policy)
    job_id = await job_id_of((await dispatcher.submit(batch(60))).job)
    await dispatcher.run_once()
    first, second = runpod.active()
    # The embedded endpoint died with the process: RunPod answers 404 for both chunks; one item was made.
    await runpod.forget(first.id, made=[first.indices[0]])
    await runpod.forget(second.id)
    await ledger.close()

    async with await Ledger.open(db_path) as reopened:
        restarted = make_dispatcher(policy, on=reopened)
        report = await restarted.resume_after_restart()

        assert (report.reattached, report.reconciled, report.recovered_items) == (0, 2, 1)
        await restarted.run_once()  # no backoff: the missing items go again in this very iteration
        resubmitted = [j for j in runpod.active() if j.id not in (first.id, second.id)]
        again = {i for j in resubmitted for i in j.indices}
        lost = set(first.indices + second.indices) - {first.indices[0]}
        assert lost <= again
        assert first.indices[0] not in again
        for _ in range(10):
            await runpod.finish_all()
            await restarted.run_once()
        job = await reopened.get_job(job_id)
        assert job is not None and job.status is JobStatus.DONE and job.ok == 60


async def test_resume_after_restart_fails_nothing_when_attempts_were_used_up_by_the_crash(
    db_path: Path,
    ledger: Ledger,
    runpod: MemoryRunpod,
    clock: FakeClock,
    make_dispatcher: MakeDispatcher,
) -> None:
    # One attempt per item: a crash must not spend it (the items did nothing wrong).
    policy = DispatchPolicy(gemini_concurrency=10, max_chunk_concurrency=5, retry=RetryPolicy(max_attempts=1))
    dispatcher = make_dispatcher(policy)
    job_id = await job_id_of((await dispatcher.submit(batch(20))).job)
    await dispatcher.run_once()
    for remote in runpod.active():
        await runpod.forget(remote.id)
    await ledger.close()

    async with await Ledger.open(db_path) as reopened:
        restarted = make_dispatcher(policy, on=reopened)
        await restarted.resume_after_restart()
        for _ in range(10):
            await restarted.run_once()
            await runpod.finish_all()
        await restarted.run_once()
        job = await reopened.get_job(job_id)
        assert job is not None and (job.status, job.ok, job.failed) == (JobStatus.DONE, 20, 0)


@pytest.mark.parametrize(
    ("reported", "elapsed_s", "size"),
    [
        pytest.param(True, 1.5, 76, id="stale-progress-capped-by-the-rounds-since-submission"),
        pytest.param(True, 0.7, 84, id="fresh-progress-believed"),
        pytest.param(False, 1.5, 88, id="no-report-yet-counts-every-item"),
    ],
)
async def test_next_chunk_is_sized_to_what_is_left_by_now_when_a_running_chunk_reported_late(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, clock: FakeClock, reported: bool, elapsed_s: float, size: int
) -> None:
    dispatcher = make_dispatcher(DispatchPolicy(gemini_concurrency=16, max_chunk_concurrency=8))
    await dispatcher.submit(batch(200))
    await dispatcher.run_once()
    a, b = runpod.active()
    assert [(len(j.indices), j.input.concurrency) for j in (a, b)] == [(24, 8), (24, 8)]
    if reported:
        await runpod.progress(a.id, a.indices[:8])  # one round made; the report is not refreshed after this
        await dispatcher.run_once()
    clock.advance(timedelta(seconds=elapsed_s))
    await runpod.finish(b.id, execution_ms=1500)  # 3 rounds of 0.5 s: the round time is now measured

    await dispatcher.run_once()

    # 152 ready, plus what `a` has left: 16 by its report, none by the 3 rounds of 0.5 s it can have run in
    # 1.5 s, all 24 while it has not reported (it may still be queued). The new chunk's share of the window is
    # 8/16 of that: 76, 84 or 88.
    [_, c] = runpod.active()
    assert (len(c.indices), c.input.concurrency) == (size, 8)
