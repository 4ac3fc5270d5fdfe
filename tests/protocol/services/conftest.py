"""The services over an in-memory ledger, the memory store and the in-memory RunPod, no Discord.

The in-memory ledger is the real `Ledger` on SQLite's in-memory database: the same SQL, transactions and
migrations as production, with no file and no second implementation that could drift from the first.

A `Runtime` is assembled by hand from those parts (no embedded servers, no link server), and jobs move only when
a test plays the worker (`runpod.finish_all()`) and runs the dispatcher once (`run_once()`), never by sleeping.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import aiohttp
import pytest

from bot.app.embedded import Backends
from bot.app.runtime import Runtime
from bot.core.models import Group, Job, JobId
from bot.dispatch import Dispatcher
from bot.ledger import Ledger
from bot.settings import BotSettings
from storage import LinkSigner
from storage.memory import MemoryStore
from tests.fakes.clock import FakeClock
from tests.fakes.gateway import MemoryRunpod

if TYPE_CHECKING:
    from bot.runpod.client import RunpodHttpGateway


@pytest.fixture
def settings(tmp_path: Path) -> BotSettings:
    return BotSettings(_env_file=None, data_dir=tmp_path / "data", storage_url="memory://")  # type: ignore[call-arg]  # pydantic-settings' init kwarg


@pytest.fixture
async def ledger() -> AsyncIterator[Ledger]:
    ledger = await Ledger.open(":memory:")
    try:
        yield ledger
    finally:
        await ledger.close()


@pytest.fixture
def runtime(
    settings: BotSettings,
    ledger: Ledger,
    dispatcher: Dispatcher,
    runpod: MemoryRunpod,
    store: MemoryStore,
    http: aiohttp.ClientSession,
) -> Runtime:
    backends = Backends(
        gateway=cast("RunpodHttpGateway", runpod),  # the services never call the gateway; the dispatcher does
        store=store,
        http=http,
        store_url="memory://",
    )
    signer = LinkSigner(b"test-secret", "http://127.0.0.1:9")
    return Runtime(settings=settings, backends=backends, ledger=ledger, dispatcher=dispatcher, signer=signer)


RunToEnd = Callable[[JobId], Awaitable[Job]]


@pytest.fixture
def run_to_end(dispatcher: Dispatcher, runpod: MemoryRunpod, ledger: Ledger) -> RunToEnd:
    """Play the worker and run the dispatcher until the job is final; return it."""

    async def run(job_id: JobId) -> Job:
        for _ in range(50):
            await dispatcher.run_once()
            job = await ledger.get_job(job_id)
            assert job is not None
            if job.status.is_final:
                return job
            await runpod.finish_all()
        raise AssertionError(f"job {job_id} did not finish")

    return run


@pytest.fixture
async def group(ledger: Ledger, clock: FakeClock) -> Group:
    """A batch's thread, as the `/batch` cog opens it."""
    return await ledger.ensure_group(name="watercolour", now=clock.now(), guild_id=7, channel_id=70, thread_id=71)
