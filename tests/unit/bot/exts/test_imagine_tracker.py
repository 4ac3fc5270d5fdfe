"""The tracker's honest progress: a job's expected time comes from the jobs of its model and size timed before it."""

from datetime import UTC, datetime
from typing import Any

import pytest

from bot.core.events import JobFinished, JobSummary, Progress, Started
from bot.core.models import Job, JobId, JobKind, JobParams, JobStatus, Priority, UserId
from bot.exts.imagine._tracker import JobTracker, Tracked

MODEL = "gemini-2.5-flash-image"


def job(job_id: str, *, size: str | None = None) -> Job:
    return Job(
        id=JobId(job_id),
        kind=JobKind.GRID,
        owner_id=UserId(1),
        guild_id=None,
        group_id=None,
        prompt="a fox",
        params=JobParams(model=MODEL, image_size=size, n=4),
        parent_image_id=None,
        status=JobStatus.RUNNING,
        priority=Priority.INTERACTIVE,
        idempotency_key=None,
        created_at=datetime.now(UTC),
        started_at=None,
        finished_at=None,
        total=4,
        ok=0,
        failed=0,
        cancelled=0,
    )


def tracked(job_id: str) -> Tracked:  # no message yet: edits go nowhere, the states are read directly
    return Tracked(
        job_id=JobId(job_id),
        channel_id=1,
        message_id=None,
        owner_id=1,
        display="a fox",
        label="",
        interaction=None,
        token_at=0.0,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0


@pytest.fixture
async def tracker() -> Any:
    async def nothing(*_args: object) -> None:
        return None

    t = JobTracker(object(), finish=nothing, fail=nothing, interval_s=0.0, token_max_age_s=0.0, expected_s=12.0)  # type: ignore[arg-type]
    yield t
    await t.close()


async def test_a_job_expects_the_default_until_one_of_its_model_and_size_was_timed(tracker: JobTracker) -> None:
    clock = Clock()
    tracker.now = lambda: clock.now  # type: ignore[method-assign]
    first = tracked("j_1")
    await tracker.track(first)
    await tracker.handle(Started(job=job("j_1")))
    clock.now += 3
    await tracker.handle(Progress(job=job("j_1"), done=1, failed=0, total=4))
    assert tracker.state_of(first) == "generating… 1/4 ready · 3s of about 12s"
    clock.now += 2
    await tracker.handle(JobFinished(job=job("j_1"), summary=JobSummary(total=4, ok=4, failed=0, cancelled=0)))

    second, other_size = tracked("j_2"), tracked("j_3")
    for t, j in ((second, job("j_2")), (other_size, job("j_3", size="2K"))):
        await tracker.track(t)
        await tracker.handle(Started(job=j))
    clock.now += 1
    assert tracker.state_of(second) == "generating… 0/4 ready · 1s of about 5s"  # the first took 5 s
    assert tracker.state_of(other_size) == "generating… 0/4 ready · 1s of about 12s"  # 2K: not timed yet
    clock.now += 6
    assert tracker.state_of(second) == "generating… 0/4 ready · 7s, longer than the usual 5s"
