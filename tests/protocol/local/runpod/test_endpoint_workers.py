"""The local endpoint with real worker subprocesses: the unmodified runpod SDK runtime running a tiny test handler.

This is also the pin on the SDK's worker protocol: if a runpod release changes how its runtime takes jobs, reports
progress and results, polls for stops or pings, these tests fail. One endpoint (2 workers) serves the module, so
every test starts by waiting until both workers are ready again.
"""

import asyncio
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path

import pytest
import pytest_asyncio

from bot.runpod.client import RunpodHttpGateway
from bot.runpod.types import RemoteJob, RemoteStatus
from local.runpod import LocalEndpoint
from tests.fakes.runpod import MS_DEADLINES, poll_until, running_endpoint, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

Pair = tuple[LocalEndpoint, RunpodHttpGateway]
RUNPOD_VERSION = version("runpod")  # read at import: metadata lookups touch the disk


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def endpoint() -> AsyncIterator[Pair]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISCORD_TOKEN", "bot-secret-must-not-reach-workers")
        mp.setenv("STORAGE_URL", "file:///from-the-bot-env")
        env = {"GEMINI_BASE_URL": "http://127.0.0.1:9/gemini", "RUNPOD_PING_INTERVAL": "500"}
        async with running_endpoint(
            workers=2, env=env, restart_backoff_s=(0.2, 2.0), take_wait_s=2.0, **MS_DEADLINES
        ) as pair:
            yield pair


@pytest_asyncio.fixture(loop_scope="module")
async def ready(endpoint: Pair) -> Pair:
    await endpoint[0].wait_ready(timeout_s=20)
    return endpoint


async def wait_for_file(path: Path, timeout_s: float = 5.0) -> None:
    await wait_until(lambda: asyncio.to_thread(path.exists), timeout_s)


def running(job: RemoteJob) -> bool:
    return job.status is RemoteStatus.IN_PROGRESS and job.progress is not None


async def test_installed_sdk_is_the_pinned_minor_version() -> None:
    assert RUNPOD_VERSION.startswith("1.12.")


async def test_chunk_reports_progress_then_completes_when_run_by_the_sdk_runtime(ready: Pair) -> None:
    ep, gw = ready
    submitted = await gw.run({"steps": 4, "delay_s": 0.2, "echo": {"k": "v"}})

    final, seen = await poll_until(gw, submitted.id)

    dones = [int(str(j.progress["done"])) for j in seen if j.status is RemoteStatus.IN_PROGRESS and j.progress]
    assert len(set(dones)) >= 2
    assert dones == sorted(dones)
    assert final.status is RemoteStatus.COMPLETED
    assert final.result is not None
    assert final.result["echo"] == {"k": "v"}
    assert final.progress is None
    assert final.delay_ms is not None
    assert final.execution_ms is not None
    assert final.execution_ms >= 700
    assert final.raw["workerId"] == final.result["worker"]
    assert any(w.runpod_version == RUNPOD_VERSION for w in ep.workers())  # the SDK's heartbeat reached us


async def test_two_workers_run_chunks_in_parallel(ready: Pair) -> None:
    _, gw = ready
    a = await gw.run({"steps": 8, "delay_s": 0.1})
    b = await gw.run({"steps": 8, "delay_s": 0.1})

    both_running = False
    async with asyncio.timeout(15):
        while True:
            ja, jb = await gw.status(a.id), await gw.status(b.id)
            both_running |= ja.status is RemoteStatus.IN_PROGRESS and jb.status is RemoteStatus.IN_PROGRESS
            if ja.status.is_final and jb.status.is_final:
                break
            await asyncio.sleep(0.05)

    assert both_running
    assert ja.result is not None
    assert jb.result is not None
    assert ja.result["worker"] != jb.result["worker"]


async def test_cancel_removes_a_queued_chunk_and_stops_a_running_one(ready: Pair, tmp_path: Path) -> None:
    _, gw = ready
    long = {"steps": 300, "delay_s": 0.1, "marker_dir": str(tmp_path)}
    first, second = await gw.run(long), await gw.run(long)
    queued = await gw.run({"steps": 1})
    await poll_until(gw, first.id, running)
    await poll_until(gw, second.id, running)

    assert (await gw.cancel(queued.id)).status is RemoteStatus.CANCELLED
    assert (await gw.cancel(first.id)).status is RemoteStatus.CANCELLED
    after = await gw.run({"steps": 0})
    done, _ = await poll_until(gw, after.id, timeout_s=10)
    await gw.cancel(second.id)

    assert (await gw.status(queued.id)).status is RemoteStatus.CANCELLED
    assert (await gw.status(queued.id)).raw.get("workerId") is None  # never handed to a worker
    assert done.status is RemoteStatus.COMPLETED  # the freed worker took new work long before 30 s
    await wait_for_file(tmp_path / f"{first.id}.stopped")  # the handler saw CancelledError
    assert (await gw.status(first.id)).status is RemoteStatus.CANCELLED


async def test_execution_timeout_gives_timed_out_and_stops_the_handler(ready: Pair, tmp_path: Path) -> None:
    _, gw = ready
    submitted = await gw.run({"steps": 300, "delay_s": 0.1, "marker_dir": str(tmp_path)}, execution_timeout_ms=1000)

    final, _ = await poll_until(gw, submitted.id, timeout_s=10)

    assert final.status is RemoteStatus.TIMED_OUT
    assert final.execution_ms == 1000
    assert final.progress is not None  # RunPod keeps the last progress as output
    await wait_for_file(tmp_path / f"{submitted.id}.stopped")  # the handler saw CancelledError


async def test_handler_errors_are_failed_with_their_message(ready: Pair) -> None:
    _, gw = ready
    returned = await gw.run({"mode": "error"})
    raised = await gw.run({"mode": "raise"})

    returned_final, _ = await poll_until(gw, returned.id)
    raised_final, _ = await poll_until(gw, raised.id)

    assert returned_final.status is RemoteStatus.FAILED
    assert returned_final.error == "BAD_INPUT: asked to fail"
    assert returned_final.result is not None
    assert returned_final.result["failed"] == 1
    assert raised_final.status is RemoteStatus.FAILED
    assert raised_final.error is not None
    assert "boom from the test handler" in raised_final.error


async def test_workers_get_the_sdk_env_and_pass_through_but_not_bot_secrets(ready: Pair) -> None:
    _, gw = ready
    keys = ["STORAGE_URL", "GEMINI_BASE_URL", "DISCORD_TOKEN", "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS", "RUNPOD_POD_ID"]
    submitted = await gw.run({"env_keys": keys})

    final, _ = await poll_until(gw, submitted.id)

    assert final.result is not None
    env = final.result["env"]
    assert isinstance(env, dict)
    assert env["STORAGE_URL"] == "file:///from-the-bot-env"
    assert env["GEMINI_BASE_URL"] == "http://127.0.0.1:9/gemini"
    assert env["DISCORD_TOKEN"] is None
    assert env["RUNPOD_SKIP_AUTO_SYSTEM_CHECKS"] == "true"
    assert env["RUNPOD_POD_ID"] == final.result["worker"]


async def test_killed_worker_mid_chunk_means_the_chunk_runs_again_on_a_fresh_worker(ready: Pair) -> None:
    ep, gw = ready
    restarts = ep.restarts
    submitted = await gw.run({"steps": 10, "delay_s": 0.1})
    await poll_until(gw, submitted.id, running)
    victim = ep.worker_of(submitted.id)
    assert victim is not None

    ep.kill_worker(victim)
    final, _ = await poll_until(gw, submitted.id, timeout_s=20)

    assert final.status is RemoteStatus.COMPLETED
    assert final.retries == 1
    assert final.result is not None
    assert final.result["worker"] != victim
    await wait_until(lambda: ep.restarts > restarts)


async def test_chunk_whose_worker_dies_twice_is_failed_after_one_requeue(ready: Pair) -> None:
    _, gw = ready
    submitted = await gw.run({"mode": "exit"})

    final, _ = await poll_until(gw, submitted.id, timeout_s=20)

    assert final.status is RemoteStatus.FAILED
    assert final.retries == 1
    assert final.error is not None
    assert "exited" in final.error
    health = await gw.health()
    assert health.jobs["retried"] >= 1


async def test_refresh_worker_result_restarts_that_worker(ready: Pair) -> None:
    ep, gw = ready
    restarts = ep.restarts
    submitted = await gw.run({"mode": "refresh"})

    final, _ = await poll_until(gw, submitted.id)

    assert final.status is RemoteStatus.COMPLETED
    assert final.result is not None
    refreshed = final.result["worker"]
    await wait_until(lambda: ep.restarts > restarts)
    assert refreshed not in {w.id for w in ep.workers()}
