"""The local endpoint's RunPod rules, with the test playing the worker over HTTP exactly as runpod 1.12's runtime does.

No subprocesses here (workers=0, an "external" worker): fast and deterministic. The real SDK runtime is exercised in
test_endpoint_workers.py.
"""

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.runpod.client import RunpodHttpGateway
from bot.runpod.errors import RunpodAuthError
from bot.runpod.types import RemoteStatus
from local.runpod import LocalEndpoint
from tests.fakes.runpod import MS_DEADLINES, poll_until, running_endpoint, wait_until


class SdkLikeWorker:
    """Speaks the worker protocol the way runpod 1.12 does (URLs, query strings, form-labelled JSON bodies)."""

    def __init__(self, http: aiohttp.ClientSession, endpoint: LocalEndpoint, worker_id: str = "ext-1") -> None:
        self.http = http
        self.root = f"{endpoint.base_url}/{endpoint.endpoint_id}"
        self.id = worker_id

    async def take(self, batch_size: int = 1) -> Any:
        if batch_size > 1:
            url = f"{self.root}/job-take-batch/{self.id}?gpu=none&batch_size={batch_size}&job_in_progress=0"
        else:
            url = f"{self.root}/job-take/{self.id}?gpu=none&job_in_progress=0"
        async with self.http.get(url) as resp:
            if resp.status == 204:
                return None
            assert resp.status == 200
            assert resp.content_type == "application/json"
            return await resp.json()

    async def done(self, job_id: str, body: dict[str, Any]) -> int:
        url = f"{self.root}/job-done/{self.id}/{job_id}?gpu=none&isStream=false"
        headers = {"charset": "utf-8", "Content-Type": "application/x-www-form-urlencoded"}
        async with self.http.post(url, data=json.dumps(body), headers=headers) as resp:
            await resp.text()
            return resp.status

    async def stream(self, job_id: str, output: Any) -> None:
        url = f"{self.root}/job-stream/{self.id}/{job_id}?gpu=none&isStream=true"
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        async with self.http.post(url, data=json.dumps({"output": output}), headers=headers) as resp:
            assert resp.status == 200

    async def stop_signals(self) -> list[str]:
        async with self.http.get(f"{self.root}/job-stop/{self.id}?gpu=none") as resp:
            if resp.status == 204:
                return []
            return list((await resp.json())["jobsToStop"])

    async def ping(self, **params: str) -> int:
        async with self.http.get(f"{self.root}/ping/{self.id}", params={"gpu": "none", **params}) as resp:
            return resp.status


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[LocalEndpoint, RunpodHttpGateway]]:
    async with running_endpoint(workers=0, take_wait_s=0.3, stop_wait_s=0.3, retention_s=60, **MS_DEADLINES) as pair:
        yield pair


@pytest.fixture
async def worker(endpoint: tuple[LocalEndpoint, RunpodHttpGateway]) -> AsyncIterator[SdkLikeWorker]:
    async with aiohttp.ClientSession() as http:
        yield SdkLikeWorker(http, endpoint[0])


async def test_job_goes_from_queue_through_progress_to_completed_when_worker_reports(
    endpoint: tuple[LocalEndpoint, RunpodHttpGateway], worker: SdkLikeWorker
) -> None:
    ep, gw = endpoint
    submitted = await gw.run({"n": 1})
    assert (await gw.status(submitted.id)).status is RemoteStatus.IN_QUEUE

    job = await worker.take()
    assert job == {"id": submitted.id, "input": {"n": 1}}
    assert ep.worker_of(submitted.id) == "ext-1"
    await worker.done(submitted.id, {"status": "IN_PROGRESS", "output": {"type": "progress", "done": 1, "total": 2}})
    running = await gw.status(submitted.id)
    await worker.done(submitted.id, {"output": {"type": "result", "ok": 2, "failed": 0, "results": []}})
    final = await gw.status(submitted.id)

    assert running.status is RemoteStatus.IN_PROGRESS
    assert running.progress == {"type": "progress", "done": 1, "total": 2}
    assert running.delay_ms is not None
    assert final.status is RemoteStatus.COMPLETED
    assert final.result == {"type": "result", "ok": 2, "failed": 0, "results": []}
    assert final.execution_ms is not None


async def test_progress_arriving_after_the_result_is_ignored_when_job_is_final(
    endpoint: tuple[LocalEndpoint, RunpodHttpGateway], worker: SdkLikeWorker
) -> None:
    _, gw = endpoint
    submitted = await gw.run({})
    await worker.take()
    await worker.done(submitted.id, {"output": {"type": "result", "ok": 1}})
    await worker.done(submitted.id, {"status": "IN_PROGRESS", "output": {"type": "progress", "done": 0}})

    final = await gw.status(submitted.id)

    assert final.status is RemoteStatus.COMPLETED
    assert final.result == {"type": "result", "ok": 1}


async def test_error_result_is_failed_with_its_output_when_worker_returns_error(
    endpoint: tuple[LocalEndpoint, RunpodHttpGateway], worker: SdkLikeWorker
) -> None:
    _, gw = endpoint
    submitted = await gw.run({})
    await worker.take()
    await worker.done(submitted.id, {"output": {"type": "result", "ok": 0, "failed": 3}, "error": "UPSTREAM: all 3"})

    final = await gw.status(submitted.id)

    assert final.status is RemoteStatus.FAILED
    assert final.error == "UPSTREAM: all 3"
    assert final.result == {"type": "result", "ok": 0, "failed": 3}


async def test_completed_without_output_is_completed_without_manifest_when_result_post_was_empty(
    endpoint: tuple[LocalEndpoint, RunpodHttpGateway], worker: SdkLikeWorker
) -> None:
    _, gw = endpoint
    submitted = await gw.run({})
    await worker.take()
    await worker.done(submitted.id, {})

    final = await gw.status(submitted.id)

    assert final.status is RemoteStatus.COMPLETED
    assert final.result is None


async def test_batch_take_hands_out_several_jobs_when_worker_asks_for_a_batch(
    endpoint: tuple[LocalEndpoint, RunpodHttpGateway], worker: SdkLikeWorker
) -> None:
    _, gw = endpoint
    ids = [(await gw.run({"i": i})).id for i in range(3)]

    first = await worker.take(batch_size=2)
    second = await worker.take(batch_size=2)

    assert [j["id"] for j in first] == ids[:2]
    assert [j["id"] for j in second] == ids[2:]


async def test_jobs_are_spread_over_idle_workers_when_one_asks_for_a_whole_batch(
    endpoint: tuple[LocalEndpoint, RunpodHttpGateway],
) -> None:
    _, gw = endpoint
    got: dict[str, list[str]] = {"ext-1": [], "ext-2": []}

    async def keep_taking(worker: SdkLikeWorker) -> None:
        while True:  # the SDK asks again as soon as an answer arrives
            for job in await worker.take(batch_size=4) or []:
                got[worker.id].append(job["id"])

    async with aiohttp.ClientSession() as http:
        ep = endpoint[0]
        pollers = [asyncio.create_task(keep_taking(SdkLikeWorker(http, ep, name))) for name in got]
        await wait_until(lambda: sum(w.taking for w in ep.workers()) == 2)
        queued_together = [gw.run({"i": i}) for i in range(4)]
        ids = [s.id for s in await asyncio.gather(*queued_together)]
        one_by_one = [(await gw.run({"i": i})).id for i in range(4, 8)]
        await wait_until(lambda: sum(map(len, got.values())) == 8)
        for poller in pollers:
            poller.cancel()
        await asyncio.gather(*pollers, return_exceptions=True)

    assert sorted(got["ext-1"] + got["ext-2"]) == sorted(ids + one_by_one)
    assert (len(got["ext-1"]), len(got["ext-2"])) == (4, 4)


async def test_low_priority_jobs_wait_behind_normal_ones(
    endpoint: tuple[LocalEndpoint, RunpodHttpGateway], worker: SdkLikeWorker
) -> None:
    _, gw = endpoint
    low = await gw.run({"p": "low"}, low_priority=True)
    normal = await gw.run({"p": "normal"})

    assert (await worker.take())["id"] == normal.id
    assert (await worker.take())["id"] == low.id


async def test_take_is_held_open_until_a_job_arrives_when_queue_is_empty(
    endpoint: tuple[LocalEndpoint, RunpodHttpGateway], worker: SdkLikeWorker
) -> None:
    _, gw = endpoint
    waiting = asyncio.create_task(worker.take())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    submitted = await gw.run({})

    job = await asyncio.wait_for(waiting, 1.0)

    assert job["id"] == submitted.id


async def test_take_answers_204_when_nothing_arrives_within_the_long_poll(worker: SdkLikeWorker) -> None:
    started = time.monotonic()

    assert await worker.take() is None
    assert time.monotonic() - started >= 0.25


async def test_cancel_removes_a_queued_job_so_no_worker_gets_it(
    endpoint: tuple[LocalEndpoint, RunpodHttpGateway], worker: SdkLikeWorker
) -> None:
    _, gw = endpoint
    submitted = await gw.run({})

    cancelled = await gw.cancel(submitted.id)

    assert cancelled.status is RemoteStatus.CANCELLED
    assert (await gw.status(submitted.id)).status is RemoteStatus.CANCELLED
    assert await worker.take() is None
    assert await worker.stop_signals() == []


async def test_cancel_of_a_running_job_tells_its_worker_to_stop(
    endpoint: tuple[LocalEndpoint, RunpodHttpGateway], worker: SdkLikeWorker
) -> None:
    _, gw = endpoint
    submitted = await gw.run({})
    await worker.take()
    await worker.done(submitted.id, {"status": "IN_PROGRESS", "output": {"type": "progress", "done": 1}})
    waiting = asyncio.create_task(worker.stop_signals())
    await asyncio.sleep(0.05)

    cancelled = await gw.cancel(submitted.id)

    assert await asyncio.wait_for(waiting, 1.0) == [submitted.id]
    assert await worker.done(submitted.id, {"output": {"type": "result"}}) == 200  # late result ignored
    final = await gw.status(submitted.id)
    assert final.status is RemoteStatus.CANCELLED
    assert final.result is None
    assert final.progress == {"type": "progress", "done": 1}
    # The time it ran is billed: /status reports it, /cancel answers only the id and status, as RunPod does.
    assert final.execution_ms is not None and final.execution_ms > 0
    assert cancelled.execution_ms is None


async def test_execution_timeout_gives_timed_out_and_a_stop_signal(
    endpoint: tuple[LocalEndpoint, RunpodHttpGateway], worker: SdkLikeWorker
) -> None:
    _, gw = endpoint
    submitted = await gw.run({}, execution_timeout_ms=300)
    await worker.take()

    final, _ = await poll_until(gw, submitted.id, timeout_s=3)

    assert final.status is RemoteStatus.TIMED_OUT
    assert final.execution_ms == 300
    assert await worker.stop_signals() == [submitted.id]


async def test_ttl_forgets_a_job_still_in_the_queue(
    endpoint: tuple[LocalEndpoint, RunpodHttpGateway], worker: SdkLikeWorker
) -> None:
    _, gw = endpoint
    submitted = await gw.run({}, ttl_ms=200)

    final, _ = await poll_until(gw, submitted.id, timeout_s=3)

    assert final.status is RemoteStatus.NOT_FOUND
    assert await worker.take() is None


async def test_ttl_forgets_a_running_job_and_stops_it(
    endpoint: tuple[LocalEndpoint, RunpodHttpGateway], worker: SdkLikeWorker
) -> None:
    _, gw = endpoint
    submitted = await gw.run({}, ttl_ms=300)
    await worker.take()

    final, _ = await poll_until(gw, submitted.id, timeout_s=3)

    assert final.status is RemoteStatus.NOT_FOUND
    assert await worker.stop_signals() == [submitted.id]


async def test_status_is_404_once_retention_is_over() -> None:
    async with running_endpoint(workers=0, retention_s=0.3, take_wait_s=0.2) as (ep, gw), aiohttp.ClientSession() as h:
        worker = SdkLikeWorker(h, ep)
        submitted = await gw.run({})
        await worker.take()
        await worker.done(submitted.id, {"output": {"type": "result", "ok": 1}})
        assert (await gw.status(submitted.id)).status is RemoteStatus.COMPLETED

        final, seen = await poll_until(gw, submitted.id, lambda j: j.status is RemoteStatus.NOT_FOUND, timeout_s=3)

        assert final.status is RemoteStatus.NOT_FOUND
        assert seen[0].status is RemoteStatus.COMPLETED


async def test_retry_requeues_a_failed_job_under_the_same_id(
    endpoint: tuple[LocalEndpoint, RunpodHttpGateway], worker: SdkLikeWorker
) -> None:
    ep, gw = endpoint
    submitted = await gw.run({"x": 1})
    await worker.take()
    await worker.done(submitted.id, {"error": "UPSTREAM: flaky"})
    async with gw._http.post(
        f"{ep.base_url}/{ep.endpoint_id}/retry/{submitted.id}", headers={"Authorization": f"Bearer {ep.api_key}"}
    ) as resp:
        assert resp.status == 200

    again = await worker.take()
    await worker.done(submitted.id, {"output": {"type": "result", "ok": 1}})

    assert again == {"id": submitted.id, "input": {"x": 1}}
    final = await gw.status(submitted.id)
    assert final.status is RemoteStatus.COMPLETED
    assert final.retries == 1


async def test_purge_removes_queued_jobs_only(
    endpoint: tuple[LocalEndpoint, RunpodHttpGateway], worker: SdkLikeWorker
) -> None:
    _, gw = endpoint
    running = await gw.run({})
    await worker.take()
    queued = [await gw.run({}) for _ in range(3)]

    assert await gw.purge_queue() == 3
    assert (await gw.status(queued[0].id)).status is RemoteStatus.NOT_FOUND
    assert (await gw.status(running.id)).status is RemoteStatus.IN_PROGRESS


async def test_health_counts_jobs_and_workers(
    endpoint: tuple[LocalEndpoint, RunpodHttpGateway], worker: SdkLikeWorker
) -> None:
    _, gw = endpoint
    done = await gw.run({})
    await worker.take()
    await worker.done(done.id, {"output": {"type": "result"}})
    await gw.run({})
    await gw.run({})
    await worker.take()

    health = await gw.health()

    assert health.jobs["completed"] == 1
    assert health.jobs["inQueue"] == 1
    assert health.jobs["inProgress"] == 1
    assert health.workers["running"] == 1


async def test_stream_chunks_are_drained_by_the_client(
    endpoint: tuple[LocalEndpoint, RunpodHttpGateway], worker: SdkLikeWorker
) -> None:
    ep, gw = endpoint
    submitted = await gw.run({})
    await worker.take()
    await worker.stream(submitted.id, {"i": 0})
    await worker.stream(submitted.id, {"i": 1})
    url = f"{ep.base_url}/{ep.endpoint_id}/stream/{submitted.id}"
    headers = {"Authorization": f"Bearer {ep.api_key}"}

    async with gw._http.get(url, headers=headers) as resp:
        first = await resp.json()
    async with gw._http.get(url, headers=headers) as resp:
        second = await resp.json()

    assert first == {"status": "IN_PROGRESS", "stream": [{"output": {"i": 0}}, {"output": {"i": 1}}]}
    assert second["stream"] == []


async def test_runsync_waits_for_the_result(
    endpoint: tuple[LocalEndpoint, RunpodHttpGateway], worker: SdkLikeWorker
) -> None:
    ep, gw = endpoint

    async def work() -> None:
        job = await worker.take()
        await worker.done(job["id"], {"output": {"type": "result", "sync": True}})

    working = asyncio.create_task(work())
    async with gw._http.post(
        f"{ep.base_url}/{ep.endpoint_id}/runsync",
        json={"input": {}},
        headers={"Authorization": f"Bearer {ep.api_key}"},
    ) as resp:
        body = await resp.json()
    await working

    assert body["status"] == "COMPLETED"
    assert body["output"] == {"type": "result", "sync": True}


async def test_client_api_refuses_a_wrong_key(endpoint: tuple[LocalEndpoint, RunpodHttpGateway]) -> None:
    ep, gw = endpoint
    wrong = RunpodHttpGateway(gw._http, endpoint_id=ep.endpoint_id, api_key="nope", base_url=ep.base_url)

    with pytest.raises(RunpodAuthError):
        await wrong.run({})


async def test_run_is_rejected_when_input_is_missing(endpoint: tuple[LocalEndpoint, RunpodHttpGateway]) -> None:
    ep, gw = endpoint
    async with gw._http.post(
        f"{ep.base_url}/{ep.endpoint_id}/run", json={"prompt": "x"}, headers={"Authorization": f"Bearer {ep.api_key}"}
    ) as resp:
        assert resp.status == 400


async def test_ping_is_recorded_and_an_unhealthy_report_logged(
    endpoint: tuple[LocalEndpoint, RunpodHttpGateway], worker: SdkLikeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    ep, _ = endpoint

    assert await worker.ping(runpod_version="1.12.0") == 200
    assert await worker.ping(status="unhealthy", check="memory", reason="too little") == 200

    info = next(w for w in ep.workers() if w.id == "ext-1")
    assert info.runpod_version == "1.12.0"
    assert info.last_ping_at is not None
    assert "failed its fitness check memory: too little" in caplog.text


async def test_a_worker_that_keeps_exiting_is_restarted_with_backoff_and_jobs_wait() -> None:
    crashing = (sys.executable, "-c", "raise SystemExit(2)")
    async with running_endpoint(workers=1, worker_command=crashing, restart_backoff_s=(0.05, 0.2)) as (ep, gw):
        submitted = await gw.run({})

        await wait_until(lambda: ep.restarts >= 3, timeout_s=10)

        assert (await gw.status(submitted.id)).status is RemoteStatus.IN_QUEUE
        health = await gw.health()
        assert health.workers["idle"] == 0
        assert health.workers["running"] == 0
