"""RunpodHttpGateway against scripted RunPod answers (a real aiohttp server on 127.0.0.1)."""

import logging

import aiohttp
import pytest
from pytest_aiohttp import AiohttpServer

from bot.runpod.client import Backoff, RunpodHttpGateway, parse_status_body
from bot.runpod.errors import (
    RunpodAuthError,
    RunpodProtocolError,
    RunpodRejectedError,
    RunpodUnavailableError,
)
from bot.runpod.types import RemoteStatus
from tests.fakes.clock import Sleeps
from tests.fakes.runpod import Answer, FakeRunpod

KEY = "rp_secret_key_123"
MANIFEST = {"schema": 1, "type": "result", "ok": 1, "failed": 0, "results": [{"index": 0, "status": "ok"}]}
PROGRESS = {"type": "progress", "done": 1, "total": 4, "results": []}


@pytest.fixture
async def fake(aiohttp_server: AiohttpServer) -> FakeRunpod:
    fake = FakeRunpod("ep")
    server = await aiohttp_server(fake.app())
    fake.base_url = str(server.make_url("/v2"))
    return fake


@pytest.fixture
def gateway(fake: FakeRunpod, http: aiohttp.ClientSession, sleeps: Sleeps) -> RunpodHttpGateway:
    return RunpodHttpGateway(
        http,
        endpoint_id="ep",
        api_key=KEY,
        base_url=fake.base_url,
        backoff=Backoff(max_attempts=4, base_delay_s=0.5, cap_s=4.0),
        sleep=sleeps,
        rand=lambda: 0.5,
        request_timeout_s=5,
    )


async def test_run_sends_input_policy_and_bearer_key_when_submitting(
    fake: FakeRunpod, gateway: RunpodHttpGateway
) -> None:
    job = await gateway.run({"schema": 1, "items": []}, execution_timeout_ms=300_000, ttl_ms=7_200_000)

    assert job.id == "job-1"
    assert job.status is RemoteStatus.IN_QUEUE
    sent = fake.requests[0]
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.json == {"input": {"schema": 1, "items": []}, "policy": {"executionTimeout": 300_000, "ttl": 7_200_000}}


async def test_run_sends_low_priority_and_no_policy_keys_when_unset(
    fake: FakeRunpod, gateway: RunpodHttpGateway
) -> None:
    await gateway.run({"a": 1})
    await gateway.run({"a": 2}, low_priority=True)

    assert fake.requests[0].json == {"input": {"a": 1}}
    assert fake.requests[1].json == {"input": {"a": 2}, "policy": {"lowPriority": True}}


async def test_status_retries_when_429_then_200(fake: FakeRunpod, gateway: RunpodHttpGateway, sleeps: Sleeps) -> None:
    fake.script("status", [429, (200, {"id": "j1", "status": "IN_QUEUE"})])

    job = await gateway.status("j1")

    assert job.status is RemoteStatus.IN_QUEUE
    assert fake.ops() == ["status", "status"]
    assert sleeps.delays == [0.375]  # base 0.5 s, jitter factor 0.75 at rand=0.5


async def test_retry_after_header_is_honoured_up_to_the_cap_when_429(
    fake: FakeRunpod, gateway: RunpodHttpGateway, sleeps: Sleeps
) -> None:
    fake.script(
        "status",
        [
            Answer(429, {"error": "slow down"}, headers={"Retry-After": "2"}),
            Answer(429, None, headers={"Retry-After": "60"}),
            (200, {"id": "j1", "status": "IN_PROGRESS"}),
        ],
    )

    await gateway.status("j1")

    assert sleeps.delays == [2.0, 4.0]


async def test_backoff_grows_and_gives_up_as_unavailable_when_500_persists(
    fake: FakeRunpod, gateway: RunpodHttpGateway, sleeps: Sleeps
) -> None:
    fake.script("status", [500, 502, 503, 500])

    with pytest.raises(RunpodUnavailableError) as info:
        await gateway.status("j1")

    assert info.value.status_code == 500
    assert info.value.transient
    assert len(fake.requests) == 4
    assert sleeps.delays == [0.375, 0.75, 1.5]


async def test_run_is_retried_when_5xx_answered(fake: FakeRunpod, gateway: RunpodHttpGateway) -> None:
    fake.script("run", [503, (200, {"id": "r1", "status": "IN_QUEUE"})])

    job = await gateway.run({"x": 1})

    assert job.id == "r1"
    assert fake.ops() == ["run", "run"]


async def test_run_is_not_retried_when_the_connection_drops_after_sending(
    fake: FakeRunpod, gateway: RunpodHttpGateway
) -> None:
    fake.script("run", [Answer(disconnect=True)])

    with pytest.raises(RunpodUnavailableError) as info:
        await gateway.run({"x": 1})

    assert info.value.maybe_submitted
    assert fake.ops() == ["run"]


async def test_status_is_retried_when_the_connection_drops(fake: FakeRunpod, gateway: RunpodHttpGateway) -> None:
    fake.script("status", [Answer(disconnect=True), (200, {"id": "j1", "status": "IN_PROGRESS"})])

    job = await gateway.status("j1")

    assert job.status is RemoteStatus.IN_PROGRESS
    assert fake.ops() == ["status", "status"]


async def test_connection_refused_is_retried_then_unavailable_when_nothing_listens(
    http: aiohttp.ClientSession, sleeps: Sleeps, unused_tcp_port: int
) -> None:
    gateway = RunpodHttpGateway(
        http,
        endpoint_id="ep",
        api_key=KEY,
        base_url=f"http://127.0.0.1:{unused_tcp_port}/v2",
        backoff=Backoff(max_attempts=3),
        sleep=sleeps,
    )

    with pytest.raises(RunpodUnavailableError) as info:
        await gateway.run({"x": 1})

    assert not info.value.maybe_submitted  # never connected, so no job can exist
    assert len(sleeps.delays) == 2


async def test_completed_without_manifest_is_representable_when_output_is_missing(
    fake: FakeRunpod, gateway: RunpodHttpGateway
) -> None:
    fake.script("status", [(200, {"id": "j1", "status": "COMPLETED", "delayTime": 12, "executionTime": 345})])

    job = await gateway.status("j1")

    assert job.status is RemoteStatus.COMPLETED
    assert job.result is None
    assert job.progress is None
    assert (job.delay_ms, job.execution_ms) == (12, 345)


async def test_completed_with_stale_progress_output_is_not_a_manifest_when_type_is_progress(
    fake: FakeRunpod, gateway: RunpodHttpGateway
) -> None:
    fake.script("status", [(200, {"id": "j1", "status": "COMPLETED", "output": PROGRESS})])

    job = await gateway.status("j1")

    assert job.result is None
    assert job.progress is None


async def test_completed_manifest_is_the_result_when_type_is_result(
    fake: FakeRunpod, gateway: RunpodHttpGateway
) -> None:
    fake.script("status", [(200, {"id": "j1", "status": "COMPLETED", "output": MANIFEST})])

    job = await gateway.status("j1")

    assert job.result == MANIFEST
    assert job.progress is None


async def test_in_progress_output_is_progress_when_running(fake: FakeRunpod, gateway: RunpodHttpGateway) -> None:
    fake.script("status", [(200, {"id": "j1", "status": "IN_PROGRESS", "delayTime": 5, "output": PROGRESS})])

    job = await gateway.status("j1")

    assert job.status is RemoteStatus.IN_PROGRESS
    assert job.progress == PROGRESS
    assert job.result is None


async def test_status_404_is_not_found_when_runpod_forgot_the_job(
    fake: FakeRunpod, gateway: RunpodHttpGateway, sleeps: Sleeps
) -> None:
    fake.script("status", [(404, {"error": "request does not exist"})])

    job = await gateway.status("gone")

    assert job.id == "gone"
    assert job.status is RemoteStatus.NOT_FOUND
    assert job.status.is_final
    assert sleeps.delays == []


async def test_cancel_answers_cancelled_or_not_found(fake: FakeRunpod, gateway: RunpodHttpGateway) -> None:
    fake.script("cancel", [(200, {"id": "j1", "status": "CANCELLED"}), 404])

    assert (await gateway.cancel("j1")).status is RemoteStatus.CANCELLED
    assert (await gateway.cancel("j2")).status is RemoteStatus.NOT_FOUND
    assert [r.path for r in fake.requests] == ["/v2/ep/cancel/j1", "/v2/ep/cancel/j2"]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"id": "j", "status": "FAILED", "error": "BAD_INPUT: no items"}, RemoteStatus.FAILED, "BAD_INPUT: no items"),
        ({"id": "j", "status": "FAILED", "error": {"code": 1}}, RemoteStatus.FAILED, '{"code": 1}'),
        ({"id": "j", "status": "TIMED_OUT", "output": PROGRESS}, RemoteStatus.TIMED_OUT, None),
        ({"id": "j", "status": "CANCELLED"}, RemoteStatus.CANCELLED, None),
        ({"id": "j", "status": "RUNNING"}, RemoteStatus.IN_PROGRESS, None),
    ],
)
async def test_every_final_status_is_typed_when_answered(
    fake: FakeRunpod, gateway: RunpodHttpGateway, body: dict[str, object], status: RemoteStatus, error: str | None
) -> None:
    fake.script("status", [(200, body)])

    job = await gateway.status("j")

    assert job.status is status
    assert job.error == error
    assert job.result is None


async def test_failed_job_keeps_its_manifest_when_the_worker_sent_one() -> None:
    job = parse_status_body({"id": "j", "status": "FAILED", "error": "UPSTREAM: all failed", "output": MANIFEST})

    assert job.result == MANIFEST
    assert job.error == "UPSTREAM: all failed"


async def test_timed_out_output_is_stale_progress_when_present() -> None:
    job = parse_status_body({"id": "j", "status": "TIMED_OUT", "output": PROGRESS, "executionTime": 2000})

    assert job.progress == PROGRESS
    assert job.result is None


@pytest.mark.parametrize(
    "body",
    [["not", "an", "object"], {"status": "COMPLETED"}, {"id": "j"}, {"id": "j", "status": "EXPLODED"}, "text"],
)
async def test_protocol_error_when_answer_is_malformed(
    fake: FakeRunpod, gateway: RunpodHttpGateway, body: object
) -> None:
    fake.script("run", [(200, body)])

    with pytest.raises(RunpodProtocolError):
        await gateway.run({"x": 1})


async def test_auth_error_without_retry_when_key_refused(
    fake: FakeRunpod, gateway: RunpodHttpGateway, sleeps: Sleeps
) -> None:
    fake.script("run", [401])

    with pytest.raises(RunpodAuthError) as info:
        await gateway.run({"x": 1})

    assert not info.value.transient
    assert sleeps.delays == []


async def test_rejected_when_4xx_answered(fake: FakeRunpod, gateway: RunpodHttpGateway) -> None:
    fake.script("run", [(400, {"error": "input too large"})])

    with pytest.raises(RunpodRejectedError, match="input too large") as info:
        await gateway.run({"x": 1})

    assert info.value.status_code == 400


async def test_health_and_purge_are_parsed(fake: FakeRunpod, gateway: RunpodHttpGateway) -> None:
    fake.script(
        "health", [(200, {"jobs": {"inQueue": 3, "inProgress": 1}, "workers": {"idle": 1, "running": 1, "x": "?"}})]
    )
    fake.script("purge-queue", [(200, {"removed": 3, "status": "completed"})])

    health = await gateway.health()

    assert health.jobs == {"inQueue": 3, "inProgress": 1}
    assert health.workers == {"idle": 1, "running": 1}
    assert await gateway.purge_queue() == 3


async def test_health_once_makes_one_attempt_when_the_breaker_probes_a_failing_endpoint(
    fake: FakeRunpod, gateway: RunpodHttpGateway, sleeps: Sleeps
) -> None:
    fake.script("health", [503, 503])

    with pytest.raises(RunpodUnavailableError):
        await gateway.health(once=True)

    assert len(fake.requests) == 1  # the breaker's own backoff paces probes: no retries (and no warnings) within
    assert sleeps.delays == []


async def test_api_key_never_appears_in_logs_or_repr(
    fake: FakeRunpod, gateway: RunpodHttpGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.script("status", [500, 500, 500, 500])
    fake.script("run", [401])

    with pytest.raises(RunpodUnavailableError) as unavailable:
        await gateway.status("j1")
    with pytest.raises(RunpodAuthError) as refused:
        await gateway.run({"x": 1})

    assert KEY not in caplog.text
    assert KEY not in repr(gateway)
    assert KEY not in str(unavailable.value)
    assert KEY not in str(refused.value)


async def test_job_ids_that_would_change_the_path_are_refused(gateway: RunpodHttpGateway) -> None:
    with pytest.raises(ValueError, match="job id"):
        await gateway.status("../health")
