"""A batch's snapshot: the counts its progress message shows, for a cancelled and for a pausing batch."""

from datetime import UTC, datetime

from bot.app.batchplan import snapshot_of
from bot.core.models import JobStatus
from tests.fakes.models import batch_job

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_batch_cancelled_at_5_of_40_keeps_its_total_and_counts_the_rest_as_cancelled() -> None:
    job = batch_job(status=JobStatus.CANCELLED, total=40, ok=5, failed=0, cancelled=35, finished_at=NOW)

    progress = snapshot_of(job, errors={}, retrying={}, now=NOW).progress

    assert (progress.total, progress.finished, progress.cancelled, progress.remaining) == (40, 5, 35, 0)


def test_a_paused_batch_with_chunks_out_is_pausing_and_then_paused() -> None:
    job = batch_job(status=JobStatus.PAUSED, total=40, ok=5, failed=0, cancelled=0)

    assert snapshot_of(job, errors={}, retrying={}, now=NOW, chunks_out=1).progress.state == "pausing…"
    assert snapshot_of(job, errors={}, retrying={}, now=NOW).progress.state == "paused"
