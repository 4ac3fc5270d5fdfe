"""Gemini's breaker in the dispatcher: fed the items the workers report, playing the worker with `MemoryRunpod`.

The bot never calls Gemini; it learns of an outage from items coming back `UPSTREAM` (the worker's own retries
spent). Three in a row open the breaker: every job is delayed, one item at a time goes as a probe, the items the
outage failed keep their attempts, and the first image closes it. The clock is the test's.
"""

from datetime import timedelta

from bot.core.events import ConfigError, Event, JobFailed, ServiceDown, ServiceRestored
from bot.core.item_errors import item_error_message
from bot.core.models import ItemStatus, JobId, JobStatus
from bot.core.outage import Outage, OutagePolicy
from bot.core.policy import DispatchPolicy
from bot.dispatch import Dispatcher
from bot.ledger import Ledger
from tests.fakes.clock import FakeClock
from tests.fakes.gateway import MemoryRunpod
from tests.protocol.dispatcher.conftest import MakeDispatcher, batch, grid
from worker.contract import ErrorCode

POLICY = DispatchPolicy(
    outage=OutagePolicy(fail_after=timedelta(seconds=600), fail_batch_after=timedelta(seconds=3600))
)
SERVICE_EVENTS = (ServiceDown, ServiceRestored, ConfigError)


def service_events(events: list[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, SERVICE_EVENTS)]


def outage(d: Dispatcher) -> Outage | None:
    """The dispatcher's outage, read through a call (mypy would keep an assert's narrowing of a property)."""
    return d.outage


async def fail_active(runpod: MemoryRunpod) -> int:
    """Finish every RunPod job not final with all its items UPSTREAM, as a worker that cannot reach Gemini does."""
    active = runpod.active()
    for job in active:
        await runpod.finish(job.id, errors=dict.fromkeys(job.indices, ErrorCode.UPSTREAM))
    return len(active)


async def attempts(ledger: Ledger, job_id: JobId) -> list[int]:
    return [i.attempts for i in await ledger.items(job_id)]


async def test_an_outage_is_told_once_probed_one_item_at_a_time_and_work_resumes_with_every_attempt_left(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, ledger: Ledger, clock: FakeClock
) -> None:
    d = make_dispatcher(POLICY)
    events = d.subscribe()
    first = await d.submit(grid(key="before"))
    await d.run_once()
    await fail_active(runpod)
    await d.run_once()
    down = service_events(events.drain())
    assert down == [ServiceDown(service="gemini", since=clock.now(), reason="scripted UPSTREAM")]
    assert outage(d) == Outage(service="gemini", since=clock.now(), reason="scripted UPSTREAM")
    assert first.job is not None
    # The outage failed them, not their own fault: back to waiting with their attempt given back.
    assert await attempts(ledger, first.job.id) == [0, 0, 0, 0]
    assert {i.status for i in await ledger.items(first.job.id)} == {ItemStatus.PENDING}

    second = await d.submit(batch(5, key="during", owner=2))
    assert second.job is not None
    sent = len(runpod.jobs)
    await d.run_once()  # the first probe is not due yet: nothing goes out
    assert len(runpod.jobs) == sent
    clock.advance(1)
    await d.run_once()
    await d.run_once()  # one probe at a time
    [probe] = runpod.active()
    assert probe.indices == [0] and probe.input.job_id == first.job.id  # the first in line, interactive first
    await fail_active(runpod)
    await d.run_once()
    assert service_events(events.drain()) == []  # the same outage: told once
    clock.advance(1.9)
    await d.run_once()
    assert runpod.active() == []  # the next probe waits 2 s after the failed one
    clock.advance(0.1)
    await d.run_once()
    [probe] = runpod.active()
    assert probe.indices == [0]
    assert await attempts(ledger, first.job.id) == [1, 0, 0, 0]  # the probe in flight holds its one attempt

    await runpod.finish(probe.id)  # Gemini answers: an image
    clock.advance(1)
    await d.run_once()  # restored, and in the same iteration whole chunks go again
    assert service_events(events.drain()) == [ServiceRestored(service="gemini", down_for=timedelta(seconds=4))]
    assert outage(d) is None
    assert sorted(len(j.indices) for j in runpod.active()) == [3, 5]
    await runpod.finish_all()
    await d.run_once()
    for job_id in (first.job.id, second.job.id):
        job = await ledger.get_job(job_id)
        assert job is not None and job.status is JobStatus.DONE and job.ok == job.total
        assert await attempts(ledger, job_id) == [1] * job.total  # each made once, on its first counted attempt


async def test_fewer_failures_than_the_threshold_are_the_items_own_and_an_image_resets_the_run(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, ledger: Ledger, clock: FakeClock
) -> None:
    d = make_dispatcher(POLICY)
    events = d.subscribe()
    for owner in (1, 2):
        await d.submit(grid(key=f"run-{owner}", owner=owner))
    await d.run_once()
    one, two = runpod.active()
    await runpod.finish(one.id, errors={0: ErrorCode.UPSTREAM, 1: ErrorCode.UPSTREAM})  # and two images
    await runpod.progress(two.id, done=[], errors={0: ErrorCode.UPSTREAM, 1: ErrorCode.UPSTREAM})
    await d.run_once()
    assert service_events(events.drain()) == []  # two failures, then an answer, then two: never three in a row
    assert outage(d) is None
    await runpod.finish(two.id, errors={2: ErrorCode.UPSTREAM, 3: ErrorCode.UPSTREAM})  # the third and fourth
    await d.run_once()
    assert [type(e) for e in service_events(events.drain())] == [ServiceDown]
    # The two before the breaker opened used their attempt (with the usual backoff); those that opened it did not.
    items = await ledger.items(JobId(two.input.job_id))
    assert [(i.attempts, i.status) for i in items] == [(1, ItemStatus.PENDING)] * 2 + [(0, ItemStatus.PENDING)] * 2

    # Gemini answers the probe: the items still backing off go at once with the rest, not minutes later.
    clock.advance(1)
    await d.run_once()
    [probe] = runpod.active()
    assert (probe.input.job_id, probe.indices) == (two.input.job_id, [2])  # the first item due
    await runpod.finish(probe.id)
    await d.run_once()
    assert [type(e) for e in service_events(events.drain())] == [ServiceRestored]
    sent = sorted((j.input.job_id == one.input.job_id, j.indices) for j in runpod.active())
    assert sent == [(False, [0, 1, 3]), (True, [0, 1])]


async def test_jobs_waiting_for_gemini_fail_as_unavailable_at_the_give_up_time_of_their_kind(
    make_dispatcher: MakeDispatcher, runpod: MemoryRunpod, ledger: Ledger, clock: FakeClock
) -> None:
    d = make_dispatcher(POLICY)
    events = d.subscribe()
    interactive = await d.submit(grid(key="interactive"))
    big = await d.submit(batch(3, key="batch", owner=2))
    assert interactive.job is not None and big.job is not None
    await d.run_once()
    await fail_active(runpod)
    await d.run_once()
    assert outage(d) is not None

    clock.advance(599.9)
    await d.run_once()  # a probe goes out (one of the grid's items) and fails
    await fail_active(runpod)
    await d.run_once()
    assert (await ledger.get_job(interactive.job.id)).status is JobStatus.RUNNING  # type: ignore[union-attr]
    clock.advance(0.1)  # 600 s of outage
    await d.run_once()
    failed = [e for e in events.drain() if isinstance(e, JobFailed)]
    assert [e.job.id for e in failed] == [interactive.job.id]
    assert failed[0].reason == item_error_message(ErrorCode.UNAVAILABLE.value)
    assert failed[0].summary.errors == {"UNAVAILABLE": 4}
    messages = {i.error_message or "" for i in await ledger.items(interactive.job.id)}
    assert len(messages) == 1 and messages.pop().startswith("Gemini unreachable since")
    # The batch waits an hour; meanwhile only probes go out, one item each.
    assert (await ledger.get_job(big.job.id)).status is JobStatus.RUNNING  # type: ignore[union-attr]
    clock.advance(3000)
    await fail_active(runpod)
    await d.run_once()
    assert all(len(j.indices) == 1 for j in list(runpod.jobs.values())[2:])
    job = await ledger.get_job(big.job.id)
    assert job is not None and job.status is JobStatus.FAILED and job.failed == 3
