"""A batch's snapshot: the counts its progress message shows (cancelled, pausing) and its running cost."""

from datetime import UTC, datetime

import pytest

from bot.app.batchplan import snapshot_of
from bot.core.models import JobParams, JobStatus
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
