from datetime import UTC, datetime, timedelta

import pytest

from bot.core.models import Chunk, ChunkId, ChunkStatus, JobId, Priority
from bot.core.scheduling import (
    Candidate,
    calls_held,
    done_of,
    items_left,
    items_left_by_now,
    queue_positions,
    schedule_order,
)


def cand(name: str, priority: Priority, seq: int) -> Candidate:
    return Candidate(job_id=JobId(name), priority=priority, seq=seq)


INT, B = Priority.INTERACTIVE, Priority.BATCH


def test_schedule_order_puts_interactive_first_when_batches_are_older() -> None:
    order = schedule_order([cand("b1", B, 1), cand("g2", INT, 5), cand("g1", INT, 3)], last_batch_seq=None)

    assert order == ["g1", "g2", "b1"]


def test_schedule_order_rotates_batches_when_one_was_served_last() -> None:
    batches = [cand("b1", B, 1), cand("b2", B, 2), cand("b3", B, 3)]

    assert schedule_order(batches, last_batch_seq=None) == ["b1", "b2", "b3"]
    assert schedule_order(batches, last_batch_seq=1) == ["b2", "b3", "b1"]
    assert schedule_order(batches, last_batch_seq=3) == ["b1", "b2", "b3"]  # wraps around


def test_schedule_order_continues_after_gone_batch_when_last_served_finished() -> None:
    batches = [cand("b1", B, 1), cand("b3", B, 3)]

    assert schedule_order(batches, last_batch_seq=2) == ["b3", "b1"]


def test_schedule_order_is_empty_when_no_candidates() -> None:
    assert schedule_order([], last_batch_seq=7) == []


def test_queue_positions_rank_interactive_before_batch_when_not_started() -> None:
    positions = queue_positions([cand("b1", B, 1), cand("g1", INT, 2), cand("b2", B, 3), cand("g2", INT, 4)])

    assert positions == {"g1": 1, "g2": 2, "b1": 3, "b2": 4}


T0 = datetime(2025, 1, 1, tzinfo=UTC)


def make_chunk(*, items: int = 8, concurrency: int = 4, progress: dict[str, object] | None = None) -> Chunk:
    return Chunk(
        id=ChunkId(1),
        job_id=JobId("j"),
        seq=0,
        runpod_id="r",
        indices=tuple(range(items)),
        status=ChunkStatus.IN_FLIGHT,
        concurrency=concurrency,
        attempt=1,
        created_at=T0,
        submitted_at=T0,
        finished_at=None,
        remote_status=None,
        last_progress=progress,
    )


@pytest.mark.parametrize(
    ("progress", "expected"),
    [(None, 0), ({"done": 3}, 3), ({"done": True}, 0), ({"done": "3"}, 0), ({}, 0), ([("done", 3)], 0)],
)
def test_done_of_counts_only_an_integer_done_when_progress_varies(progress: object, expected: int) -> None:
    assert done_of(progress) == expected


def test_items_left_never_goes_below_zero_when_progress_overcounts() -> None:
    assert items_left(make_chunk(items=8, progress={"done": 3})) == 5
    assert items_left(make_chunk(items=8, progress={"done": 12})) == 0


@pytest.mark.parametrize(
    ("progress", "round_s", "elapsed_s", "expected"),
    [
        (None, 10.0, 25.0, 8),  # no report yet: the chunk may still sit in RunPod's queue
        ({"done": 0}, None, 25.0, 8),  # no measured round time
        ({"done": 0}, 10.0, 25.0, 0),  # two rounds of 4 since submission: the report is stale
        ({"done": 0}, 10.0, 5.0, 8),  # not one round yet
        ({"done": 6}, 10.0, 5.0, 2),  # the report knows better than the clock
    ],
)
def test_items_left_by_now_caps_a_stale_report_by_the_rounds_run_when_round_time_is_known(
    progress: dict[str, object] | None, round_s: float | None, elapsed_s: float, expected: int
) -> None:
    chunk = make_chunk(items=8, concurrency=4, progress=progress)

    assert items_left_by_now(chunk, now=T0 + timedelta(seconds=elapsed_s), round_s=round_s) == expected


def test_calls_held_frees_calls_when_fewer_items_than_concurrency_are_left() -> None:
    assert calls_held(make_chunk(items=8, concurrency=4, progress={"done": 2})) == 4
    assert calls_held(make_chunk(items=8, concurrency=4, progress={"done": 6})) == 2
