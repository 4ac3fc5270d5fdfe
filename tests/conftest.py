"""Fixtures shared by every layer of tests."""

from collections.abc import Iterator

import pytest
from blockbuster import BlockBuster, blockbuster_ctx


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
