from collections.abc import Callable

import pytest

from bot.core.models import JobKind, JobParams, JobRequest, NewItem, UserId
from bot.core.policy import DispatchPolicy
from bot.dispatch import Dispatcher
from bot.ledger import Ledger
from storage.memory import MemoryStore
from tests.fakes.clock import FakeClock
from tests.fakes.gateway import MemoryRunpod

MODEL = "gemini-2.5-flash-image"


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def runpod(store: MemoryStore) -> MemoryRunpod:
    return MemoryRunpod(store)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


MakeDispatcher = Callable[..., Dispatcher]


@pytest.fixture
def make_dispatcher(ledger: Ledger, runpod: MemoryRunpod, store: MemoryStore, clock: FakeClock) -> MakeDispatcher:
    def make(policy: DispatchPolicy | None = None, *, on: Ledger | None = None) -> Dispatcher:
        return Dispatcher(on or ledger, runpod, store, policy=policy or DispatchPolicy(), clock=clock)

    return make


@pytest.fixture
def dispatcher(make_dispatcher: MakeDispatcher) -> Dispatcher:
    return make_dispatcher()


def grid(
    *, owner: int = 1, key: str | None = None, prompt: str = "a cat in a hat", is_admin: bool = False
) -> JobRequest:
    return JobRequest(
        kind=JobKind.GRID,
        owner_id=UserId(owner),
        prompt=prompt,
        params=JobParams(model=MODEL, aspect_ratio="1:1", n=4),
        idempotency_key=key,
        is_admin=is_admin,
    )


def batch(n: int, *, owner: int = 1, key: str | None = None) -> JobRequest:
    return JobRequest(
        kind=JobKind.BATCH,
        owner_id=UserId(owner),
        prompt="make it watercolour",
        params=JobParams(model=MODEL, seed=1000),
        items=tuple(NewItem() for _ in range(n)),
        idempotency_key=key,
    )
