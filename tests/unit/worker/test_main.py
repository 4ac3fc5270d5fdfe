"""`python -m worker`'s pieces that run inside the runpod SDK: the concurrency modifier and its warm-up."""

import asyncio
import gc

import pytest

from worker.__main__ import make_concurrency_modifier
from worker.gemini import GeminiImageGenerator


@pytest.fixture(autouse=True)
def freezes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record `gc.freeze` calls instead of freezing the test process."""
    calls: list[str] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    return calls


async def test_modifier_starts_the_warm_up_once_in_the_sdk_loop_and_returns_the_job_limit() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def warm_up() -> None:
        loops.append(asyncio.get_running_loop())

    modifier = make_concurrency_modifier(4, warm_up=warm_up)
    assert [modifier(1), modifier(4), modifier(4)] == [4, 4, 4]
    await asyncio.sleep(0)

    assert loops == [asyncio.get_running_loop()]  # once, in the loop the jobs will run in


async def test_what_the_warm_up_built_is_frozen_out_of_the_collector_after_it(freezes: list[str]) -> None:
    async def warm_up() -> None:
        assert freezes == []

    make_concurrency_modifier(1, warm_up=warm_up)(1)
    for _ in range(3):
        await asyncio.sleep(0)

    assert freezes == ["freeze"]


async def test_failed_warm_up_is_logged_and_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    async def warm_up() -> None:
        raise OSError("no route to Gemini")

    modifier = make_concurrency_modifier(2, warm_up=warm_up)
    assert modifier(1) == 2
    for _ in range(3):
        await asyncio.sleep(0)

    assert "warm-up failed" in caplog.text
    assert modifier(2) == 2


def test_modifier_without_warm_up_needs_no_event_loop() -> None:
    assert make_concurrency_modifier(3)(1) == 3


async def test_gemini_warm_up_calls_nothing_when_run() -> None:
    # Nothing listens on port 9 (discard) of loopback: a call would fail to connect.
    generator = GeminiImageGenerator(api_key="k", base_url="http://127.0.0.1:9")
    try:
        await generator.warm_up()
    finally:
        await generator.aclose()


def test_on_stop_runs_in_the_sdk_loop_when_its_run_ends() -> None:
    seen: list[tuple[asyncio.AbstractEventLoop, bool]] = []
    loops: list[asyncio.AbstractEventLoop] = []

    async def on_stop() -> None:
        await asyncio.sleep(0)  # it may await: the loop still runs
        loop = asyncio.get_running_loop()
        seen.append((loop, loop.is_running()))

    async def sdk_run() -> None:  # the SDK's `asyncio.run(self.run())`: takes jobs, then returns on SIGTERM
        loops.append(asyncio.get_running_loop())
        modifier = make_concurrency_modifier(2, on_stop=on_stop)
        assert [modifier(1), modifier(2)] == [2, 2]
        await asyncio.sleep(0)
        assert seen == []  # not before the run ends

    asyncio.run(sdk_run())

    assert seen == [(loops[0], True)]


def test_failed_on_stop_is_logged_and_the_run_still_ends(caplog: pytest.LogCaptureFixture) -> None:
    async def on_stop() -> None:
        raise OSError("session already gone")

    async def sdk_run() -> None:
        make_concurrency_modifier(1, on_stop=on_stop)(1)
        await asyncio.sleep(0)

    asyncio.run(sdk_run())

    assert "closing the worker's clients failed" in caplog.text
