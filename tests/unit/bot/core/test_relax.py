"""What a relax batch's progress shows of its open parts (`bot.core.relax`)."""

from datetime import UTC, datetime, timedelta

from bot.core.models import ChunkId, JobId
from bot.core.relax import BatchCounts, RelaxPart, RelaxPhase, phase_of_state, status_of

T0 = datetime(2026, 12, 5, 5, 0, tzinfo=UTC)


def part(
    n: int, phase: RelaxPhase, *, items: int = 10, counts: BatchCounts | None = None, at: int | None = None
) -> RelaxPart:
    return RelaxPart(
        chunk_id=ChunkId(n),
        job_id=JobId("j"),
        phase=phase,
        items=items,
        counts=counts or BatchCounts(),
        created_at=T0,
        batch_created_at=None if at is None else T0 + timedelta(minutes=at),
    )


def test_no_open_part_shows_nothing() -> None:
    assert status_of([]) is None
    assert status_of([part(1, RelaxPhase.DONE)]) is None


def test_the_least_advanced_phase_and_gemini_counts_of_the_parts_it_holds() -> None:
    status = status_of(
        [
            part(1, RelaxPhase.COLLECTING, counts=BatchCounts(requests=10, succeeded=10), at=0),
            part(2, RelaxPhase.RUNNING, counts=BatchCounts(requests=10, succeeded=3, failed=1), at=5),
            part(3, RelaxPhase.DONE, counts=BatchCounts(requests=10, succeeded=10), at=1),
        ]
    )
    assert status is not None
    assert status.phase is RelaxPhase.RUNNING and status.parts == 2 and status.sent == 20
    assert (status.gemini_done, status.gemini_failed) == (3, 1)  # a collecting part's counts are the store's now
    assert status.waiting_since == T0


def test_states_map_to_phases() -> None:
    assert phase_of_state("JOB_STATE_PENDING") is RelaxPhase.SUBMITTED
    assert phase_of_state("JOB_STATE_RUNNING") is RelaxPhase.RUNNING
    assert phase_of_state("JOB_STATE_SUCCEEDED") is RelaxPhase.COLLECTING
    assert phase_of_state("JOB_STATE_SOMETHING_NEW") is RelaxPhase.SUBMITTED
