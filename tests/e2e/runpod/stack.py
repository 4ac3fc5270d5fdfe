"""The local stack the RunPod end-to-end tests drive: the local Gemini in a subprocess, and the local RunPod
endpoint whose real `python -m worker` subprocesses call it and write to a store, as in production."""

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from local.runpod import LocalEndpoint
from tests.fakes.runpod import MS_DEADLINES, wait_until

GEMINI_KEY = "local-gemini-key"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def local_gemini(*, latency_s: float, draw_px: int) -> AsyncIterator[str]:
    """Run `python -m local.gemini` answering after `latency_s` with `draw_px` images; yield its URL once it answers."""
    port = await asyncio.to_thread(_free_port)
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LOCAL_GEMINI_LATENCY": str(latency_s), "LOCAL_GEMINI_DRAW_PX": str(draw_px)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "local.gemini", "--port", str(port), env=env)
    try:
        async with aiohttp.ClientSession() as http:

            async def up() -> bool:
                try:
                    async with http.get(f"{url}/stats") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(up, timeout_s=20)
        yield url
    finally:
        proc.terminate()
        await proc.wait()


@asynccontextmanager
async def worker_endpoint(
    *, store_url: str, gemini_url: str, env: Mapping[str, str] | None = None, **options: Any
) -> AsyncIterator[LocalEndpoint]:
    """Run a local RunPod endpoint of two real workers on `store_url` and `gemini_url`; yield it once ready.

    `options` go to `LocalEndpoint` (rate limits, queue size, ...).
    """
    worker_env = {"STORAGE_URL": store_url, "GEMINI_API_KEY": GEMINI_KEY, "GEMINI_BASE_URL": gemini_url, **(env or {})}
    async with LocalEndpoint(
        workers=2,
        env=worker_env,
        worker_command=(sys.executable, "-m", "worker"),
        stop_grace_s=2.0,
        **{**MS_DEADLINES, **options},
    ) as endpoint:
        await endpoint.wait_ready(timeout_s=30)
        yield endpoint


async def gemini_stats(http: aiohttp.ClientSession, gemini_url: str) -> dict[str, int]:
    """Return the local Gemini's counters (`requests`, `images`, ...)."""
    async with http.get(f"{gemini_url}/stats") as resp:
        return dict(await resp.json())
