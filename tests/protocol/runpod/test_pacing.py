"""The bot paces itself under RunPod's rate limits: a burst of cancels or polls meets no 429 from the strict endpoint.

The local endpoint enforces the limits (tightened here, in proportion: a 10 s window becomes 0.5 s) and counts what
it refused; the same burst without pacing is refused, so the tests can fail.
"""

import asyncio
from typing import Any

import aiohttp
import pytest

from bot.runpod.client import Backoff, RunpodHttpGateway
from bot.runpod.errors import RunpodUnavailableError
from bot.runpod.pacing import RoutePacer
from bot.runpod.types import RemoteStatus
from bot.runpod.wire import RUNPOD_ROUTE_LIMITS, RouteLimit
from local.runpod import LocalEndpoint
from tests.fakes.runpod import running_endpoint

# RunPod's /cancel allows 100 per 10 s and 20 at once; /status 2000 per 10 s and 400 at once. Same shape, smaller.
TIGHT = {
    **RUNPOD_ROUTE_LIMITS,
    "cancel": RouteLimit(10, 0.5, 2),
    "status": RouteLimit(20, 0.5, 4),
}


def gateway(http: aiohttp.ClientSession, ep: LocalEndpoint, pacer: RoutePacer) -> RunpodHttpGateway:
    return RunpodHttpGateway(
        http,
        endpoint_id=ep.endpoint_id,
        api_key=ep.api_key,
        base_url=ep.base_url,
        backoff=Backoff(max_attempts=1),  # a 429 would surface, not be retried away
        pacer=pacer,
    )


async def submit(ep: LocalEndpoint, n: int) -> list[str]:
    async with aiohttp.ClientSession() as http:
        gw = gateway(http, ep, RoutePacer())
        return [(await gw.run({"n": i})).id for i in range(n)]


async def burst(pacer: RoutePacer, op: str, n: int = 60) -> tuple[list[Any], int]:
    async with running_endpoint(workers=0, route_limits=TIGHT) as (ep, _), aiohttp.ClientSession() as http:
        ids = await submit(ep, n)
        gw = gateway(http, ep, pacer)
        call = gw.cancel if op == "cancel" else gw.status
        answers = await asyncio.gather(*(call(job_id) for job_id in ids), return_exceptions=True)
        return answers, ep.refused(op)


async def test_a_burst_of_cancels_is_paced_under_the_cancel_limit_and_every_job_is_cancelled() -> None:
    answers, refused = await burst(RoutePacer(TIGHT, headroom=1.0), "cancel")

    assert refused == 0
    assert [getattr(a, "status", a) for a in answers] == [RemoteStatus.CANCELLED] * 60


async def test_a_burst_of_polls_is_paced_under_the_status_limit() -> None:
    answers, refused = await burst(RoutePacer(TIGHT, headroom=1.0), "status")

    assert refused == 0
    assert all(getattr(a, "status", None) is RemoteStatus.IN_QUEUE for a in answers)


@pytest.mark.parametrize("op", ["cancel", "status"])
async def test_the_same_burst_unpaced_is_refused_with_429(op: str) -> None:
    answers, refused = await burst(RoutePacer({}), op)

    assert refused > 0
    assert any(isinstance(a, RunpodUnavailableError) and a.status_code == 429 for a in answers)


def test_the_default_pacer_keeps_a_tenth_below_each_documented_limit() -> None:
    families = RoutePacer()._families

    assert {name: f.allowed for name, f in families.items()} == {
        "run": 900,
        "runsync": 1800,
        "status": 1800,
        "cancel": 90,
        "purge-queue": 1,
    }
