"""A batch's snapshot: the counts its progress message shows (cancelled, pausing) and its running cost."""

from datetime import UTC, datetime, timedelta

import pytest

from bot.app.batchplan import snapshot_of
from bot.core.models import JobParams, JobStatus
from bot.core.relax import RelaxPhase, RelaxStatus
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


def test_the_running_cost_prices_each_made_item_at_its_own_size() -> None:
    params = JobParams(model="gemini-3.1-flash-image", image_size="1K")
    job = batch_job(params=params, total=10, ok=5, failed=0, cancelled=0)

    progress = snapshot_of(job, errors={}, retrying={}, now=NOW, made_by_size={"4K": 2, None: 3}).progress

    assert progress.cost_usd == pytest.approx(2 * 0.151 + 3 * 0.067)  # not 5 x the job's 1K price


def test_without_sizes_every_made_item_is_priced_at_the_jobs_size() -> None:
    job = batch_job(params=JobParams(model="gemini-3.1-flash-image", image_size="2K"), ok=3, cancelled=0)

    assert snapshot_of(job, errors={}, retrying={}, now=NOW).progress.cost_usd == pytest.approx(3 * 0.101)


def test_the_running_cost_is_what_was_recorded_plus_the_estimate_of_made_items_recorded_without_one() -> None:
    job = batch_job(params=JobParams(model="gemini-3.1-flash-image", image_size="2K"), ok=4, cancelled=0)

    progress = snapshot_of(job, errors={}, retrying={}, now=NOW, made_by_size={None: 1}, recorded_usd=0.3).progress

    assert progress.cost_usd == pytest.approx(0.3 + 0.101)  # not 4 x the estimate


def test_a_relax_batch_is_priced_at_the_batch_price_and_shows_how_long_gemini_has_held_it() -> None:
    job = batch_job(params=JobParams(model="gemini-2.5-flash-image", relax=True), total=10, ok=4, cancelled=0)
    held = RelaxStatus(
        phase=RelaxPhase.RUNNING,
        parts=1,
        sent=6,
        gemini_done=2,
        gemini_failed=0,
        waiting_since=NOW - timedelta(hours=2),
    )

    progress = snapshot_of(job, errors={}, retrying={}, now=NOW, relax=held).progress

    assert progress.cost_usd == pytest.approx(4 * 0.0195)
    assert (progress.relax, progress.relax_status, progress.relax_waiting_s) == (True, held, 7200.0)
