"""`python -m local.runpod` as a standalone process."""

import asyncio
import shlex
import signal
import sys

import aiohttp

from bot.runpod.client import RunpodHttpGateway
from bot.runpod.types import RemoteStatus
from tests.fakes.runpod import HANDLERS_COMMAND, poll_until


async def test_standalone_endpoint_runs_a_job_and_exits_cleanly_when_terminated(unused_tcp_port: int) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "local.runpod",
        "--port",
        str(unused_tcp_port),
        "--workers",
        "1",
        "--api-key",
        "standalone-key",
        "--worker-command",
        shlex.join(HANDLERS_COMMAND),
        "--log-level",
        "WARNING",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert f"base_url=http://127.0.0.1:{unused_tcp_port}/v2" in line
        assert "endpoint_id=local" in line
        async with aiohttp.ClientSession() as http:
            gateway = RunpodHttpGateway(
                http, endpoint_id="local", api_key="standalone-key", base_url=f"http://127.0.0.1:{unused_tcp_port}/v2"
            )
            submitted = await gateway.run({"steps": 1, "echo": "hi"})
            final, _ = await poll_until(gateway, submitted.id, timeout_s=20)
        assert final.status is RemoteStatus.COMPLETED
        assert final.result is not None
        assert final.result["echo"] == "hi"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
