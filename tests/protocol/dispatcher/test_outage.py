"""The dispatcher's RunPod breaker over the real client and the local RunPod endpoint.

The endpoint (no workers: chunks stay queued, so every RunPod job can be counted) sits behind a TCP forwarder that
is stopped and started again on the same port: the bot meets refused connections while RunPod keeps its jobs, as in
an outage of RunPod's API. A wrong key is the endpoint's own 401. The clock is the test's, so probes and the give-up
times are reached without waiting.
"""

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import aiohttp
import pytest

from bot.app.embedded import DISPATCH_BACKOFF, DISPATCH_REQUEST_TIMEOUT_S
from bot.core.events import ConfigError, Event, JobFailed, ServiceDown, ServiceRestored
from bot.core.item_errors import item_error_message
from bot.core.models import ChunkStatus, ItemStatus, JobId, JobStatus
from bot.core.outage import OutagePolicy
from bot.core.policy import DispatchPolicy
from bot.dispatch import Dispatcher, InvalidRequestError, policy_from_settings
from bot.ledger import Ledger
from bot.runpod.client import RunpodHttpGateway
from local.runpod import LocalEndpoint
from storage.memory import MemoryStore
from tests.fakes.clock import FakeClock, Sleeps
from tests.fakes.gateway import MemoryRunpod
from tests.fakes.tcpproxy import TcpProxy
from tests.protocol.dispatcher.conftest import MakeDispatcher, batch, grid
from worker.contract import ErrorCode

OUTAGE = OutagePolicy(fail_after=timedelta(seconds=600), fail_batch_after=timedelta(seconds=3600))
SERVICE_EVENTS = (ServiceDown, ServiceRestored, ConfigError)


@pytest.fixture
async def endpoint() -> AsyncIterator[LocalEndpoint]:
    async with LocalEndpoint(workers=0) as ep:
        yield ep


@pytest.fixture
async def proxy(endpoint: LocalEndpoint) -> AsyncIterator[TcpProxy]:
    port = urlsplit(endpoint.base_url).port
    assert port is not None
    async with TcpProxy(port) as p:
        yield p


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def gateway_via(
    http: aiohttp.ClientSession,
    endpoint: LocalEndpoint,
    proxy: TcpProxy,
    *,
    key: str | None = None,
    sleep: Sleeps | None = None,
) -> RunpodHttpGateway:
    """The bot's client as the runtime builds it, addressed to the forwarder; retries do not really sleep."""
    return RunpodHttpGateway(
        http,
        endpoint_id=endpoint.endpoint_id,
        api_key=key or endpoint.api_key,
        base_url=f"http://127.0.0.1:{proxy.port}/v2",
        request_timeout_s=DISPATCH_REQUEST_TIMEOUT_S,
        backoff=DISPATCH_BACKOFF,
        sleep=sleep or Sleeps(),
    )


async def runpod_jobs(http: aiohttp.ClientSession, endpoint: LocalEndpoint) -> int:
    """How many jobs the endpoint holds (asked directly, not through the forwarder)."""
    direct = RunpodHttpGateway(
        http, endpoint_id=endpoint.endpoint_id, api_key=endpoint.api_key, base_url=endpoint.base_url
    )
    health = await direct.health()
    return sum(health.jobs.get(k, 0) for k in ("inQueue", "inProgress", "completed", "failed"))


def down_since(d: Dispatcher) -> datetime | None:
    """The dispatcher's outage, read through a call (mypy would keep an assert's narrowing of a property)."""
    return d.runpod_down_since


def service_events(events: list[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, SERVICE_EVENTS)]


async def test_an_outage_is_told_once_nothing_is_sent_meanwhile_and_work_resumes_with_nothing_doubled(
    ledger: Ledger,
    store: MemoryStore,
    clock: FakeClock,
    http: aiohttp.ClientSession,
    endpoint: LocalEndpoint,
    proxy: TcpProxy,
) -> None:
    d = Dispatcher(ledger, gateway_via(http, endpoint, proxy), store, clock=clock, policy=DispatchPolicy(outage=OUTAGE))
    events = d.subscribe()
    first = await d.submit(grid(key="before"))
    await d.run_once()
    assert await runpod_jobs(http, endpoint) == 1 and down_since(d) is None

    await proxy.stop()
    await d.run_once()  # the poll of the chunk in flight meets a refused connection
    down = service_events(events.drain())
    assert len(down) == 1 and isinstance(down[0], ServiceDown) and down[0].since == clock.now()
    assert down_since(d) == clock.now()
    assert "cannot connect" in down[0].reason

    second = await d.submit(grid(key="during"))
    assert second.job is not None
    connections = proxy.connections
    for _ in range(3):
        await d.run_once()  # no probe is due yet: nothing goes to RunPod at all
    assert proxy.connections == connections
    assert not [c for c in await ledger.chunks() if c.job_id == second.job.id]
    clock.advance(1)
    await d.run_once()  # the first probe fails: still one incident, nothing more to tell
    assert service_events(events.drain()) == []
    assert (await ledger.get_job(second.job.id)).status is JobStatus.QUEUED  # type: ignore[union-attr]

    await proxy.start()  # the same port answers again
    clock.advance(1.9)
    await d.run_once()
    assert down_since(d) is not None  # the next probe waits 2 s after the failed one
    clock.advance(0.1)
    await d.run_once()
    restored = service_events(events.drain())
    assert restored == [ServiceRestored(service="runpod", down_for=timedelta(seconds=3))]
    assert down_since(d) is None
    # The chunk in flight was kept (polled again, not resubmitted); the waiting grid went once.
    assert await runpod_jobs(http, endpoint) == 2
    assert first.job is not None
    chunks = await ledger.chunks(statuses=(ChunkStatus.IN_FLIGHT,))
    assert sorted(c.job_id for c in chunks) == sorted([first.job.id, second.job.id])


async def test_unsent_items_fail_as_unavailable_at_the_give_up_time_of_their_kind_and_can_be_retried(
    ledger: Ledger,
    store: MemoryStore,
    clock: FakeClock,
    http: aiohttp.ClientSession,
    endpoint: LocalEndpoint,
    proxy: TcpProxy,
) -> None:
    d = Dispatcher(ledger, gateway_via(http, endpoint, proxy), store, clock=clock, policy=DispatchPolicy(outage=OUTAGE))
    events = d.subscribe()
    accepted = await d.submit(grid(key="accepted"))
    await d.run_once()  # this one reaches RunPod before the outage
    await proxy.stop()
    interactive = await d.submit(grid(key="interactive", owner=2))
    big = await d.submit(batch(5, key="batch", owner=3))
    assert accepted.job and interactive.job and big.job
    await d.run_once()  # the poll opens the breaker
    assert down_since(d) == clock.now()

    async def status(job_id: JobId) -> JobStatus:
        job = await ledger.get_job(job_id)
        assert job is not None
        return job.status

    clock.advance(599.9)
    await d.run_once()
    assert await status(interactive.job.id) is JobStatus.QUEUED
    clock.advance(0.1)  # 600 s of outage
    await d.run_once()
    assert await status(interactive.job.id) is JobStatus.FAILED
    failed = [e for e in events.drain() if isinstance(e, JobFailed)]
    assert [e.job.id for e in failed] == [interactive.job.id]
    assert failed[0].reason == item_error_message(ErrorCode.UNAVAILABLE.value)
    assert failed[0].summary.errors == {"UNAVAILABLE": 4}
    # The batch waits longer; the grid RunPod accepted waits for RunPod's answer.
    assert await status(big.job.id) is JobStatus.QUEUED
    assert await status(accepted.job.id) is JobStatus.RUNNING
    clock.advance(3000)
    await d.run_once()
    assert await status(big.job.id) is JobStatus.FAILED
    assert await status(accepted.job.id) is JobStatus.RUNNING
    assert await runpod_jobs(http, endpoint) == 1  # nothing was sent (or charged) for the failed ones

    # "Retry failed" runs them again once RunPod is back.
    await proxy.start()
    await d.retry_failed(interactive.job.id)
    clock.advance(60)
    await d.run_once()
    assert down_since(d) is None
    assert await runpod_jobs(http, endpoint) == 2
    items = await ledger.items(interactive.job.id)
    assert {i.status for i in items} == {ItemStatus.SUBMITTED}


async def test_a_refused_key_fails_waiting_jobs_at_once_refuses_new_ones_and_a_fixed_key_is_noticed(
    ledger: Ledger,
    store: MemoryStore,
    clock: FakeClock,
    http: aiohttp.ClientSession,
    endpoint: LocalEndpoint,
    proxy: TcpProxy,
) -> None:
    d = Dispatcher(
        ledger,
        gateway_via(http, endpoint, proxy, key="not-the-key"),
        store,
        clock=clock,
        policy=DispatchPolicy(outage=OUTAGE),
    )
    events = d.subscribe()
    result = await d.submit(grid(key="refused"))
    assert result.job is not None
    await d.run_once()  # /run answers 401
    await d.run_once()  # the job's items fail with CONFIG, the job ends
    job = await ledger.get_job(result.job.id)
    assert job is not None and job.status is JobStatus.FAILED
    seen = events.drain()
    configs = service_events(seen)
    assert len(configs) == 1 and isinstance(configs[0], ConfigError)
    assert configs[0].code == "RUNPOD_AUTH" and "401" in configs[0].detail and "RUNPOD_API_KEY" in configs[0].fix
    failed = [e for e in seen if isinstance(e, JobFailed)]
    assert failed[0].reason == item_error_message(ErrorCode.CONFIG.value)
    assert down_since(d) is None  # not an outage: nothing says "delayed"

    with pytest.raises(InvalidRequestError) as refused:
        await d.submit(grid(key="later"))
    assert refused.value.user_message == item_error_message(ErrorCode.CONFIG.value)
    for _ in range(5):  # probes keep failing: the admins were told once
        clock.advance(30)
        await d.run_once()
    assert service_events(events.drain()) == []

    endpoint.api_key = "not-the-key"  # the key is given access in RunPod's console; no restart
    clock.advance(30)
    await d.run_once()
    assert [type(e) for e in service_events(events.drain())] == [ServiceRestored]
    accepted = await d.submit(grid(key="fixed"))
    await d.run_once()
    assert accepted.job is not None and await runpod_jobs(http, endpoint) == 1


async def test_an_unknown_endpoint_id_is_a_configuration_error_naming_the_setting(
    ledger: Ledger,
    store: MemoryStore,
    clock: FakeClock,
    http: aiohttp.ClientSession,
    endpoint: LocalEndpoint,
    proxy: TcpProxy,
) -> None:
    gateway = RunpodHttpGateway(
        http,
        endpoint_id="no-such-endpoint",
        api_key=endpoint.api_key,
        base_url=f"http://127.0.0.1:{proxy.port}/v2",
        backoff=DISPATCH_BACKOFF,
        sleep=Sleeps(),
    )
    d = Dispatcher(ledger, gateway, store, clock=clock)
    events = d.subscribe()
    await d.submit(grid(key="x"))
    await d.run_once()
    configs = service_events(events.drain())
    assert len(configs) == 1 and isinstance(configs[0], ConfigError)
    assert configs[0].code == "RUNPOD_ENDPOINT" and "RUNPOD_ENDPOINT_ID" in configs[0].fix


async def test_gemini_refusing_the_key_fails_the_job_at_once_and_is_told_once_until_an_image_is_made(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, ledger: Ledger
) -> None:
    # Small chunks, so that the batch still has unsent items when its first chunk reports the refusal.
    dispatcher = make_dispatcher(
        policy_from_settings(gemini_concurrency=2, max_running_per_user=3, max_waiting_per_user=3, batch_chunk_s=1)
    )
    events = dispatcher.subscribe()
    big = await dispatcher.submit(batch(6, key="gemini-config"))
    assert big.job is not None
    await dispatcher.run_once()
    first = runpod.active()[0]
    assert len(first.indices) < 6  # some items are still unsent
    await runpod.finish(first.id, errors=dict.fromkeys(first.indices, ErrorCode.CONFIG))
    await dispatcher.run_once()
    job = await ledger.get_job(big.job.id)
    assert job is not None and job.status is JobStatus.FAILED  # the items not sent yet failed with it
    assert {i.error_code for i in await ledger.items(big.job.id)} == {"CONFIG"}
    seen = events.drain()
    configs = service_events(seen)
    assert len(configs) == 1 and isinstance(configs[0], ConfigError) and configs[0].service == "gemini"
    assert "GEMINI_API_KEY" in configs[0].fix
    assert [e.reason for e in seen if isinstance(e, JobFailed)] == [item_error_message("CONFIG")]

    again = await dispatcher.submit(grid(key="gemini-again"))
    await dispatcher.run_once()
    chunk = runpod.active()[0]
    await runpod.finish(chunk.id, errors=dict.fromkeys(chunk.indices, ErrorCode.CONFIG))
    await dispatcher.run_once()
    assert service_events(events.drain()) == []  # the same incident: told once
    fixed = await dispatcher.submit(grid(key="gemini-fixed"))
    await dispatcher.run_once()
    await runpod.finish_all()
    await dispatcher.run_once()
    assert again.job is not None and fixed.job is not None
    assert [type(e) for e in service_events(events.drain())] == [ServiceRestored]


async def test_a_restart_while_runpod_is_unreachable_keeps_every_chunk_after_one_failed_check(
    ledger: Ledger,
    store: MemoryStore,
    clock: FakeClock,
    http: aiohttp.ClientSession,
    endpoint: LocalEndpoint,
    proxy: TcpProxy,
) -> None:
    before = Dispatcher(ledger, gateway_via(http, endpoint, proxy), store, clock=clock)
    for owner in (1, 2, 3):
        await before.submit(grid(key=f"restart-{owner}", owner=owner))
    await before.run_once()
    assert len(await ledger.chunks(statuses=(ChunkStatus.IN_FLIGHT,))) == 3
    await proxy.stop()

    sleeps = Sleeps()  # counts the retries of the requests the restart makes
    gateway = gateway_via(http, endpoint, proxy, sleep=sleeps)
    after = Dispatcher(ledger, gateway, store, clock=clock)
    events = after.subscribe()
    report = await after.resume_after_restart()
    assert report.reattached == 3 and report.reconciled == 0
    assert len(sleeps.delays) == DISPATCH_BACKOFF.max_attempts - 1  # one request's retries, not three
    assert [type(e) for e in service_events(events.drain())] == [ServiceDown]

    await proxy.start()
    clock.advance(1)
    await after.run_once()
    assert len(await ledger.chunks(statuses=(ChunkStatus.IN_FLIGHT,))) == 3
    assert await runpod_jobs(http, endpoint) == 3
