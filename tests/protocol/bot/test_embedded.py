"""The embedded back ends: the local Gemini server is a supervised subprocess of the bot."""

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from bot.app.embedded import open_backends
from bot.settings import BotSettings
from tests.fakes.processes import descendants_running
from tests.fakes.runpod import wait_until

ROOT = Path(__file__).resolve().parents[3]

# Imports every module of the product, then opens the back ends on settings for the real services (pointed at
# 127.0.0.1, never called), and prints which stand-in modules got loaded.
REAL_SERVICES_PROBE = textwrap.dedent(
    """
    import asyncio, importlib, pkgutil, sys

    for package in ("bot", "worker", "storage"):
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}."):
            importlib.import_module(info.name)

    from bot.app.embedded import open_backends
    from bot.settings import BotSettings

    async def main():
        async with open_backends(BotSettings(_env_file=None)) as backends:
            assert backends.endpoint is None and backends.gemini_server is None

    asyncio.run(main())
    print(sorted(m for m in sys.modules if m == "local" or m.startswith("local.")))
    print("bot.app.embedded" in sys.modules, "worker.handler" in sys.modules)
    """
)


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


def test_real_services_load_no_stand_in_when_configured(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "DISCORD_TOKEN": "not-a-real-token",
        "RUNPOD_ENDPOINT_ID": "ep",
        "RUNPOD_API_KEY": "rp-key",
        "RUNPOD_BASE_URL": "http://127.0.0.1:9/v2",
        "GEMINI_API_KEY": "gemini-key",
        "DATA_DIR": str(tmp_path),
        "STORAGE_URL": f"file://{tmp_path / 'store'}",
    }
    run = subprocess.run(
        [sys.executable, "-c", REAL_SERVICES_PROBE], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["[]", "True True"]
