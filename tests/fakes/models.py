"""Ledger records built in memory, for tests of pure code that reads them."""

from dataclasses import replace
from datetime import UTC, datetime

from bot.core import models

CREATED = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def batch_job(**overrides: object) -> models.Job:
    """Return a running batch job of 4 items (1 made, 1 failed, 1 cancelled), with `overrides` applied."""
    job = models.Job(
        id=models.JobId("j_1"),
        kind=models.JobKind.BATCH,
        owner_id=models.UserId(1),
        guild_id=None,
        group_id=None,
        prompt="make it blue",
        params=models.JobParams(model="gemini-2.5-flash-image"),
        parent_image_id=None,
        status=models.JobStatus.RUNNING,
        priority=models.Priority.BATCH,
        idempotency_key=None,
        created_at=CREATED,
        started_at=None,
        finished_at=None,
        total=4,
        ok=1,
        failed=1,
        cancelled=1,
    )
    return replace(job, **overrides)  # type: ignore[arg-type]
