"""Fixtures shared by every layer of tests."""

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from blockbuster import BlockBuster, blockbuster_ctx

from tests.fakes.clock import Sleeps


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_blocking: the test may make blocking calls on the event loop")


@pytest.fixture(autouse=True)
def blockbuster(request: pytest.FixtureRequest) -> Iterator[BlockBuster | None]:
    """Fail any test whose code blocks the event loop (file I/O, sleeps, sockets) outside a thread."""
    if request.node.get_closest_marker("allow_blocking"):
        yield None
        return
    with blockbuster_ctx(excluded_modules=["_pytest", "pytest_aiohttp", "pytest_asyncio"]) as bb:
        yield bb


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for talking to the local servers a test starts."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def sleeps() -> Sleeps:
    """A `sleep` that records its delays instead of waiting."""
    return Sleeps()
