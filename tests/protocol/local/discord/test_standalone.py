"""``python -m local.discord`` runs the server alone and prints where to point a bot."""

from __future__ import annotations

import asyncio
import sys

import aiohttp


async def test_standalone_server_prints_its_addresses_and_accepts_the_token_when_started():
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "local.discord",
        "--port",
        "0",
        "--token",
        "tok-123",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        lines: dict[str, str] = {}
        while len(lines) < 4:
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            key, _, value = line.partition(":")
            lines[key.strip()] = value.strip().split()[0]
        assert lines["Bot token"] == "tok-123"
        api = lines["REST base"]
        async with aiohttp.ClientSession(headers={"Authorization": "Bot tok-123"}) as http:
            async with http.get(api + "/gateway/bot") as resp:
                assert (await resp.json())["url"] == lines["Gateway"]
            async with http.get(api + "/users/@me") as resp:
                assert (await resp.json())["bot"] is True
            async with http.get(lines["Playground"]) as resp:
                assert resp.status == 200
                assert "<title>" in await resp.text()
    finally:
        proc.terminate()
        await proc.wait()
