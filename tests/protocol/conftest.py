"""Fixtures shared by the protocol tests: a real SQLite ledger file, and a dispatcher over the memory store, the
in-memory RunPod and a fake clock (the dispatcher and service tests use these; a closer conftest may override one)."""

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.core.policy import DispatchPolicy
from bot.dispatch import Dispatcher
from bot.ledger import Ledger
from storage.memory import MemoryStore
from tests.fakes.clock import FakeClock
from tests.fakes.gateway import MemoryRunpod


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
async def ledger(db_path: Path) -> AsyncIterator[Ledger]:
    ledger = await Ledger.open(db_path)
    try:
        yield ledger
    finally:
        await ledger.close()


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
