"""The SQLite ledger against a real file: migrations, idempotency, state changes, persistence."""

import asyncio
import dataclasses
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from bot.core.admission import Admission, Caps
from bot.core.models import (
    ChunkStatus,
    ItemInputs,
    ItemOutcome,
    ItemStatus,
    JobId,
    JobKind,
    JobStatus,
    NewItem,
    UserId,
)
from bot.ledger import Ledger, LedgerMigrationError, UnknownJobError
from tests.fakes.clock import FakeClock
from tests.protocol.ledger.conftest import MakeJob, items


async def test_open_migrates_to_latest_when_file_is_new(ledger: Ledger, db_path: Path) -> None:
    assert await ledger.schema_version() == await ledger.known_schema_version() >= 7
    await ledger.close()

    def inspect() -> tuple[str, list[str]]:
        with sqlite3.connect(db_path) as db:
            mode = db.execute("PRAGMA journal_mode").fetchone()[0]
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return mode, tables

    mode, tables = await asyncio.to_thread(inspect)
    assert mode == "wal"
    assert {"groups", "jobs", "items", "chunks", "images", "user_preferences", "relax_parts"} <= set(tables)


async def test_open_keeps_data_when_reopened(db_path: Path, make_job: MakeJob, clock: FakeClock) -> None:
    async with await Ledger.open(db_path) as first:
        created = await first.create_job(make_job(key="k1"), items(4), now=clock.now())
    async with await Ledger.open(db_path) as second:
        assert await second.schema_version() == await second.known_schema_version()
        assert created.job is not None
        again = await second.get_job(created.job.id)

    assert again == created.job


async def test_open_refuses_when_schema_is_newer(db_path: Path) -> None:
    async with await Ledger.open(db_path):
        pass

    def bump() -> None:
        with sqlite3.connect(db_path) as db:
            db.execute("PRAGMA user_version = 99")

    await asyncio.to_thread(bump)
    with pytest.raises(LedgerMigrationError, match="newer"):
        await Ledger.open(db_path)


async def test_create_job_returns_existing_when_key_is_reused(
    ledger: Ledger, make_job: MakeJob, clock: FakeClock
) -> None:
    first = await ledger.create_job(make_job(key="interaction-1"), items(4), now=clock.now())
    second = await ledger.create_job(make_job(key="interaction-1"), items(4), now=clock.now())

    assert first.created and not second.created
    assert second.job == first.job
    assert len(await ledger.list_jobs()) == 1
    assert first.job is not None
    assert len(await ledger.items(first.job.id)) == 4


async def test_create_job_writes_its_notes_with_it_and_a_reused_key_keeps_the_first(
    ledger: Ledger, make_job: MakeJob, clock: FakeClock
) -> None:
    job = dataclasses.replace(make_job(key="plan-1"), notes={"batch_plan": {"items": 3}, "skipped": [["a.txt", "x"]]})
    first = await ledger.create_job(job, items(3), now=clock.now())
    again = dataclasses.replace(make_job(key="plan-1"), notes={"batch_plan": {"items": 99}})
    second = await ledger.create_job(again, items(3), now=clock.now())

    assert first.job is not None and second.job == first.job
    assert await ledger.note(first.job.id, "batch_plan") == {"items": 3}
    assert await ledger.note(first.job.id, "skipped") == [["a.txt", "x"]]


async def test_create_job_assigns_seeds_and_keys_when_items_are_written(
    ledger: Ledger, make_job: MakeJob, clock: FakeClock
) -> None:
    new = make_job(seed=100)
    inputs = ItemInputs(ref_keys=("inputs/ab.png",), source_name="a.png")
    await ledger.create_job(
        new, [NewItem(), NewItem(prompt="override", inputs=inputs), NewItem(seed=7)], now=clock.now()
    )

    got = await ledger.items(new.id)
    assert [i.seed for i in got] == [100, 101, 7]
    assert [i.output_key for i in got] == [f"outputs/{new.id}/0000{n}.png" for n in range(3)]
    assert got[1].prompt == "override"
    assert got[1].inputs == inputs
    assert all(i.status is ItemStatus.PENDING and i.attempts == 0 for i in got)


@pytest.mark.parametrize("page", [1, 3, 7, 500])
async def test_iter_items_yields_every_item_in_order_whatever_the_page_size(
    ledger: Ledger, make_job: MakeJob, clock: FakeClock, page: int
) -> None:
    new, other = make_job(), make_job()
    await ledger.create_job(new, items(7), now=clock.now())
    await ledger.create_job(other, items(2), now=clock.now())

    got = [item async for item in ledger.iter_items(new.id, page=page)]

    assert got == await ledger.items(new.id)
    assert [i.index for i in got] == list(range(7))


async def test_create_job_applies_caps_when_admit_is_given(ledger: Ledger, make_job: MakeJob, clock: FakeClock) -> None:
    caps = Caps(max_running=1, max_waiting=1)
    results = [await ledger.create_job(make_job(), items(1), now=clock.now(), admit=caps.admit) for _ in range(3)]

    assert [r.admission for r in results] == [Admission.QUEUED, Admission.WAITING, Admission.REFUSED]
    assert results[2].job is None
    assert [j.status for j in await ledger.list_jobs()] == [JobStatus.QUEUED, JobStatus.WAITING]
    load = await ledger.user_load(UserId(1))
    assert (load.running, load.waiting) == (1, 1)
    assert (await ledger.user_load(UserId(2))).running == 0


async def test_promote_waiting_starts_oldest_when_slot_frees(
    ledger: Ledger, make_job: MakeJob, clock: FakeClock
) -> None:
    caps = Caps(max_running=1, max_waiting=5)
    first = await ledger.create_job(make_job(), items(1), now=clock.now(), admit=caps.admit)
    waiting = [await ledger.create_job(make_job(), items(1), now=clock.now(), admit=caps.admit) for _ in range(2)]
    assert first.job is not None
    assert await ledger.promote_waiting(UserId(1), caps.promotable) == []
    assert await ledger.users_with_waiting_jobs() == [UserId(1)]

    await ledger.cancel_job(first.job.id, now=clock.now())
    promoted = await ledger.promote_waiting(UserId(1), caps.promotable)

    assert waiting[0].job is not None
    assert [j.id for j in promoted] == [waiting[0].job.id]
    assert promoted[0].status is JobStatus.QUEUED


async def test_chunk_lifecycle_records_images_when_items_succeed(
    ledger: Ledger, make_job: MakeJob, clock: FakeClock
) -> None:
    new = make_job()
    await ledger.create_job(new, items(4), now=clock.now())
    chunk = await ledger.start_chunk(new.id, [0, 1, 2, 3], concurrency=4, now=clock.now())

    assert chunk.status is ChunkStatus.SUBMITTING and chunk.seq == 0 and chunk.attempt == 1
    assert await ledger.in_flight_concurrency() == 4
    job = await ledger.get_job(new.id)
    assert job is not None and job.status is JobStatus.RUNNING and job.started_at == clock.now()

    chunk = await ledger.mark_chunk_submitted(chunk.id, "rp-1", now=clock.now())
    assert chunk.status is ChunkStatus.IN_FLIGHT and chunk.runpod_id == "rp-1"

    oks = [
        ItemOutcome(index=i, status=ItemStatus.OK, key=f"outputs/{new.id}/0000{i}.png", width=8, height=8)
        for i in (0, 1)
    ]
    recorded = await ledger.record_outcomes(chunk.id, oks, now=clock.now(), progress={"type": "progress", "done": 2})
    again = await ledger.record_outcomes(chunk.id, oks, now=clock.now())  # the same progress seen twice

    assert [img.index for img in recorded.new_images] == [0, 1]
    assert again.new_images == ()
    assert recorded.job.ok == 2
    assert (await ledger.get_chunk(chunk.id)).last_progress == {"type": "progress", "done": 2}  # type: ignore[union-attr]

    final = [
        ItemOutcome(index=2, status=ItemStatus.ERROR, error_code="SAFETY", error_message="blocked"),
        ItemOutcome(
            index=3, status=ItemStatus.PENDING, error_code="RATE_LIMITED", error_message="429", retry_at=clock.now()
        ),
    ]
    done = await ledger.record_outcomes(
        chunk.id, final, now=clock.now(), final=ChunkStatus.DONE, remote_status="COMPLETED"
    )

    assert done.newly_failed == 1 and done.rate_limited
    assert (done.job.ok, done.job.failed, done.job.remaining) == (2, 1, 1)
    assert await ledger.in_flight_concurrency() == 0
    assert await ledger.error_counts(new.id) == {"SAFETY": 1}
    assert [i.index for i in await ledger.images(job_id=new.id)] == [0, 1]
    assert await ledger.finish_job_if_complete(new.id, now=clock.now()) is None  # item 3 still to do


async def test_schedulable_skips_items_when_backing_off(ledger: Ledger, make_job: MakeJob, clock: FakeClock) -> None:
    new = make_job(kind=JobKind.BATCH)
    await ledger.create_job(new, items(3), now=clock.now())
    chunk = await ledger.start_chunk(new.id, [0, 1, 2], concurrency=3, now=clock.now())
    later = clock.now() + timedelta(seconds=30)
    await ledger.record_outcomes(
        chunk.id,
        [ItemOutcome(index=i, status=ItemStatus.PENDING, error_code="UPSTREAM", retry_at=later) for i in (0, 1, 2)],
        now=clock.now(),
        final=ChunkStatus.DONE,
    )

    assert await ledger.schedulable(now=clock.now()) == []
    ready = await ledger.schedulable(now=later)
    assert [(s.job.id, s.ready) for s in ready] == [(new.id, 3)]
    assert [i.index for i in await ledger.ready_items(new.id, now=later, limit=2)] == [0, 1]


async def test_abandon_chunk_returns_items_uncounted_when_run_failed(
    ledger: Ledger, make_job: MakeJob, clock: FakeClock
) -> None:
    new = make_job()
    await ledger.create_job(new, items(2), now=clock.now())
    chunk = await ledger.start_chunk(new.id, [0, 1], concurrency=2, now=clock.now())

    await ledger.abandon_chunk(chunk.id, retry_at=clock.now(), now=clock.now())

    assert [(i.status, i.attempts) for i in await ledger.items(new.id)] == [(ItemStatus.PENDING, 0)] * 2
    assert (await ledger.get_chunk(chunk.id)).status is ChunkStatus.LOST  # type: ignore[union-attr]


async def test_finish_job_marks_failed_when_nothing_was_made(
    ledger: Ledger, make_job: MakeJob, clock: FakeClock
) -> None:
    new = make_job()
    await ledger.create_job(new, items(1), now=clock.now())
    chunk = await ledger.start_chunk(new.id, [0], concurrency=1, now=clock.now())
    await ledger.record_outcomes(
        chunk.id, [ItemOutcome(index=0, status=ItemStatus.ERROR, error_code="SAFETY")], now=clock.now()
    )

    job = await ledger.finish_job_if_complete(new.id, now=clock.now())

    assert job is not None and job.status is JobStatus.FAILED
    assert await ledger.finish_job_if_complete(new.id, now=clock.now()) is None


async def test_cancel_job_cancels_unfinished_items_when_running(
    ledger: Ledger, make_job: MakeJob, clock: FakeClock
) -> None:
    new = make_job(kind=JobKind.BATCH)
    await ledger.create_job(new, items(5), now=clock.now())
    chunk = await ledger.start_chunk(new.id, [0, 1], concurrency=2, now=clock.now())
    await ledger.mark_chunk_submitted(chunk.id, "rp-9", now=clock.now())
    await ledger.record_outcomes(chunk.id, [ItemOutcome(index=0, status=ItemStatus.OK, key="k/0.png")], now=clock.now())

    cancellation = await ledger.cancel_job(new.id, now=clock.now())

    assert cancellation is not None
    assert [c.runpod_id for c in cancellation.chunks] == ["rp-9"]
    assert cancellation.job.status is JobStatus.CANCELLED
    assert (cancellation.job.ok, cancellation.job.cancelled) == (1, 4)
    assert await ledger.cancel_job(new.id, now=clock.now()) is None
    with pytest.raises(UnknownJobError):
        await ledger.cancel_job(JobId("j_missing"), now=clock.now())


async def test_set_job_status_changes_only_when_expected(ledger: Ledger, make_job: MakeJob, clock: FakeClock) -> None:
    new = make_job(kind=JobKind.BATCH)
    await ledger.create_job(new, items(1), now=clock.now())

    paused, changed = await ledger.set_job_status(new.id, JobStatus.PAUSED, expect=[JobStatus.QUEUED])
    same, unchanged = await ledger.set_job_status(new.id, JobStatus.PAUSED, expect=[JobStatus.QUEUED])

    assert changed and paused.status is JobStatus.PAUSED
    assert not unchanged and same.status is JobStatus.PAUSED
    assert await ledger.schedulable(now=clock.now()) == []


async def test_retry_failed_requeues_retryable_failures_when_job_finished(
    ledger: Ledger, make_job: MakeJob, clock: FakeClock
) -> None:
    new = make_job(kind=JobKind.BATCH)
    await ledger.create_job(new, items(3), now=clock.now())
    chunk = await ledger.start_chunk(new.id, [0, 1, 2], concurrency=3, now=clock.now())
    await ledger.record_outcomes(
        chunk.id,
        [
            ItemOutcome(index=0, status=ItemStatus.OK, key="k/0.png"),
            ItemOutcome(index=1, status=ItemStatus.ERROR, error_code="UPSTREAM"),
            ItemOutcome(index=2, status=ItemStatus.ERROR, error_code="SAFETY"),
        ],
        now=clock.now(),
        final=ChunkStatus.DONE,
    )
    assert (await ledger.finish_job_if_complete(new.id, now=clock.now())) is not None

    job = await ledger.retry_failed(new.id, now=clock.now())

    assert job.status is JobStatus.RUNNING and job.finished_at is None
    assert [i.status for i in await ledger.items(new.id)] == [ItemStatus.OK, ItemStatus.PENDING, ItemStatus.ERROR]


async def test_ensure_group_returns_same_group_when_thread_repeats(ledger: Ledger, clock: FakeClock) -> None:
    first = await ledger.ensure_group(name="cats", guild_id=1, channel_id=2, thread_id=3, now=clock.now())
    again = await ledger.ensure_group(name="other", guild_id=1, channel_id=2, thread_id=3, now=clock.now())
    channel = await ledger.ensure_group(name="#general", guild_id=1, channel_id=2, now=clock.now())
    loose = await ledger.ensure_group(name="cli", now=clock.now())

    assert again == first
    assert channel.id != first.id and channel.thread_id is None
    assert loose.name == "cli"
    assert await ledger.get_group(first.id) == first


async def test_ensure_group_keeps_the_first_owner_when_the_group_is_ensured_again(
    ledger: Ledger, clock: FakeClock
) -> None:
    first = await ledger.ensure_group(name="cats", guild_id=1, channel_id=2, thread_id=3, now=clock.now(), owner_id=7)
    again = await ledger.ensure_group(name="cats", guild_id=1, channel_id=2, thread_id=3, now=clock.now(), owner_id=8)

    assert first.owner_id == again.owner_id == 7
    assert (await ledger.ensure_group(name="#general", guild_id=1, channel_id=2, now=clock.now())).owner_id is None


async def test_images_can_be_favourited_when_recorded(ledger: Ledger, make_job: MakeJob, clock: FakeClock) -> None:
    group = await ledger.ensure_group(name="g", thread_id=5, now=clock.now())
    new = make_job()
    new = dataclasses.replace(new, group_id=group.id)
    await ledger.create_job(new, items(1), now=clock.now())
    chunk = await ledger.start_chunk(new.id, [0], concurrency=1, now=clock.now())
    recorded = await ledger.record_outcomes(
        chunk.id, [ItemOutcome(index=0, status=ItemStatus.OK, key="k/0.png", width=2, height=3)], now=clock.now()
    )
    image = recorded.new_images[0]

    fav = await ledger.set_favourite(image.id, is_favourite=True)
    shown = await ledger.set_image_message(image.id, 777)

    assert fav is not None and fav.is_favourite
    assert shown is not None and shown.message_id == 777
    assert await ledger.image_at(new.id, 0) == shown
    assert await ledger.images(group_id=group.id) == [shown]
    assert (image.width, image.height, image.group_id) == (2, 3, group.id)


async def test_preferences_round_trip_when_set(ledger: Ledger, clock: FakeClock) -> None:
    assert await ledger.get_preferences(UserId(9)) == {}

    await ledger.set_preferences(UserId(9), {"aspect_ratio": "16:9"}, now=clock.now())
    await ledger.set_preferences(UserId(9), {"aspect_ratio": "1:1", "model": "m"}, now=clock.now())

    assert await ledger.get_preferences(UserId(9)) == {"aspect_ratio": "1:1", "model": "m"}


async def test_made_by_size_counts_made_items_by_their_own_size(
    ledger: Ledger, make_job: MakeJob, clock: FakeClock
) -> None:
    new = make_job(kind=JobKind.BATCH)
    sizes = ["4K", None, "4K", "512"]
    own = [NewItem(prompt=None, inputs=ItemInputs(image_size=size)) for size in sizes]
    await ledger.create_job(new, own, now=clock.now())
    chunk = await ledger.start_chunk(new.id, [0, 1, 2, 3], concurrency=4, now=clock.now())
    outcomes = [
        ItemOutcome(index=i, status=ItemStatus.OK, key=f"outputs/{new.id}/{i}.png", width=8, height=8)
        for i in (0, 1, 2)
    ] + [ItemOutcome(index=3, status=ItemStatus.ERROR, error_code="SAFETY", error_message="blocked")]
    await ledger.record_outcomes(chunk.id, outcomes, now=clock.now())

    assert await ledger.made_by_size(new.id) == {"4K": 2, None: 1}  # the failed 512 is not charged
