"""The embedded back ends: the local Gemini server is a supervised subprocess of the bot."""

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from bot.embedded import open_backends
from bot.settings import BotSettings
from tests.fakes.processes import descendants_running
from tests.fakes.runpod import wait_until


async def _gemini_pids(port: int) -> list[int]:
    found = await asyncio.to_thread(descendants_running, os.getpid(), "local.gemini", str(port))
    return [pid for pid, _ in found]


async def _answers(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(f"{url}/stats") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def test_local_gemini_server_is_restarted_on_its_port_when_killed(
    tmp_path: Path, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    # A RunPod endpoint is configured (never called), so only the Gemini server is embedded.
    settings = BotSettings(  # type: ignore[call-arg]  # pydantic-settings' init kwarg
        _env_file=None,
        data_dir=tmp_path,
        storage_url=f"file://{tmp_path / 'store'}",
        runpod_endpoint_id="ep",
        runpod_api_key=SecretStr("rp-key"),
        runpod_api_base="http://127.0.0.1:9/v2",
    )
    caplog.set_level(logging.INFO, logger="local.gemini.process")
    async with open_backends(settings) as backends:
        url = backends.gemini_url
        assert url is not None
        port = int(url.rsplit(":", 1)[1])
        [first] = await _gemini_pids(port)

        os.kill(first, signal.SIGKILL)
        killed_at = time.monotonic()
        # the first restart waits 0.5 s, then the server needs ~1 s to boot
        await wait_until(lambda: _answers(http, url), timeout_s=15)
        back_after_s = time.monotonic() - killed_at

        [second] = await _gemini_pids(port)
        assert second != first
        # the supervisor logs once its own check of the new process answered
        await wait_until(lambda: any("restarted on" in r.getMessage() for r in caplog.records), timeout_s=5)
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any(f"pid {first}) exited with code -9" in m for m in warnings), warnings
        assert any(f"restarted on {url} (pid {second}" in m for m in warnings), warnings
    logging.getLogger(__name__).info("local Gemini server answered again %.2f s after SIGKILL", back_after_s)
