from bot.core.models import JobId, Priority
from bot.core.scheduling import Candidate, queue_positions, schedule_order


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
