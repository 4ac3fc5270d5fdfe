from collections.abc import Callable

import pytest

from bot.core.models import JobId, JobKind, JobParams, NewItem, NewJob, Priority, UserId
from bot.ledger import new_id
from tests.fakes.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


MakeJob = Callable[..., NewJob]


@pytest.fixture
def make_job() -> MakeJob:
    def make(
        *,
        kind: JobKind = JobKind.GRID,
        owner: int = 1,
        key: str | None = None,
        seed: int | None = None,
        prompt: str = "a cat",
    ) -> NewJob:
        return NewJob(
            id=JobId(new_id("j")),
            kind=kind,
            owner_id=UserId(owner),
            prompt=prompt,
            params=JobParams(model="gemini-2.5-flash-image", seed=seed, n=4),
            priority=Priority.for_kind(kind),
            idempotency_key=key,
        )

    return make


def items(n: int) -> list[NewItem]:
    return [NewItem() for _ in range(n)]
