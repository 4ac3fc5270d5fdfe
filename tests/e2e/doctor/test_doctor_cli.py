"""`python -m bot doctor` as an operator runs it: all ✓ on the embedded defaults, a ✗ naming the fix otherwise.

Each run is a subprocess with its own data directory and free ports, against stand-ins on 127.0.0.1; each ends
(exit status 1 on a ✗) well inside the 30 s the issue allows, which the pytest timeout enforces.
"""

import asyncio
import os
import socket
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from local.gemini.server import LocalGemini
from local.runpod import LocalEndpoint

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.timeout(30)


@dataclass
class DoctorRun:
    status: int
    out: str
    err: str

    def lines(self, mark: str) -> list[str]:
        return [line for line in self.out.splitlines() if line.startswith(mark)]


async def doctor(tmp_path: Path, env: Mapping[str, str], *args: str) -> DoctorRun:
    """Run `python -m bot doctor` with only `env` (and a private data directory) as its settings."""
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "DATA_DIR": str(tmp_path / "data"),
        "WEB_PORT": "0",
        "PLAYGROUND_PORT": "0",
        **env,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "doctor",
        *args,
        env=full_env,
        cwd=tmp_path,  # no .env of the repository's
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return DoctorRun(status=proc.returncode or 0, out=out.decode(), err=err.decode())


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that is bound but never listens: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_the_embedded_defaults_pass_every_check(tmp_path: Path) -> None:
    run = await doctor(tmp_path, {})
    assert run.status == 0, run.out + run.err
    assert run.lines("✗") == []
    checked = run.out
    for name in (
        "configuration",
        "ledger",
        "store links",
        "RunPod endpoint",
        "worker contract",
        "worker reads the store",
    ):
        assert f"✓ {name}:" in checked, checked
    assert "✓ Gemini gemini-2.5-flash-image: available" in checked


async def test_a_wrong_runpod_key_is_named(tmp_path: Path) -> None:
    async with LocalEndpoint(workers=0, api_key="the-right-key") as endpoint:
        run = await doctor(
            tmp_path,
            {
                "RUNPOD_ENDPOINT_ID": endpoint.endpoint_id,
                "RUNPOD_API_KEY": "a-wrong-key",
                "RUNPOD_BASE_URL": endpoint.base_url,
                "STORAGE_SHARED_WITH_WORKERS": "true",
            },
        )
    assert run.status == 1, run.out + run.err
    [line] = [line for line in run.lines("✗") if "RunPod" in line]
    assert "refused RUNPOD_API_KEY (HTTP 401)" in line
    assert "fix: set RUNPOD_API_KEY" in run.out
    assert "a-wrong-key" not in run.out + run.err


async def test_a_dead_runpod_address_is_unreachable(tmp_path: Path, closed_port: int) -> None:
    run = await doctor(
        tmp_path,
        {
            "RUNPOD_ENDPOINT_ID": "ep",
            "RUNPOD_API_KEY": "rp-key",
            "RUNPOD_BASE_URL": f"http://127.0.0.1:{closed_port}/v2",
            "STORAGE_SHARED_WITH_WORKERS": "true",
        },
    )
    assert run.status == 1, run.out + run.err
    [line] = run.lines("✗")
    assert line.startswith(f"✗ RunPod endpoint: http://127.0.0.1:{closed_port}/v2/ep unreachable")
    assert "fix: check RUNPOD_BASE_URL" in run.out


async def test_a_file_store_with_a_remote_endpoint_is_refused_naming_storage_url(tmp_path: Path) -> None:
    # The local endpoint addressed by URL stands for a remote one; it has no worker, so the self-test is short.
    async with LocalEndpoint(workers=0) as endpoint:
        run = await doctor(
            tmp_path,
            {
                "RUNPOD_ENDPOINT_ID": endpoint.endpoint_id,
                "RUNPOD_API_KEY": endpoint.api_key,
                "RUNPOD_BASE_URL": endpoint.base_url,
            },
            "--selftest-timeout",
            "2",
        )
    assert run.status == 1, run.out + run.err
    assert run.lines("✗")[0].startswith("✗ configuration: STORAGE_URL: a file store is on this machine's disk")
    assert "fix: set STORAGE_URL=s3://bucket/prefix" in run.out
    assert any(line.startswith("✗ RunPod workers: no worker took the self-test job") for line in run.lines("✗"))


async def test_a_bad_gemini_key_is_named(tmp_path: Path) -> None:
    async with LocalGemini(port=0, api_key="the-right-key") as gemini:
        run = await doctor(tmp_path, {"GEMINI_API_KEY": "a-wrong-key", "GEMINI_BASE_URL": gemini.url})
    assert run.status == 1, run.out + run.err
    # The workers' model check and the bot's own Batch API check (relax mode) both use the key.
    model_line, batch_line = sorted(run.lines("✗"), reverse=True)
    assert model_line.startswith("✗ Gemini gemini-2.5-flash-image: GEMINI_API_KEY refused")
    assert batch_line.startswith("✗ Gemini Batch API (relax mode): Gemini refused the bot's key (HTTP 400)")
    assert "a-wrong-key" not in run.out + run.err


async def test_the_bot_refuses_an_impossible_configuration_before_connecting(tmp_path: Path) -> None:
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "DATA_DIR": str(tmp_path / "data"),
        "DISCORD_TOKEN": "not-a-real-token",  # links would point at the bot's own 127.0.0.1
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        env=full_env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 2, out.decode() + err.decode()
    assert "PUBLIC_BASE_URL: links to stored files would point at the bot's own address" in err.decode()
    assert not await asyncio.to_thread((tmp_path / "data").exists)  # nothing was started, not even the ledger
