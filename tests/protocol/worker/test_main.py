"""`python -m worker --test_input …` as RunPod's convention has it: one job against the local Gemini server."""

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from local.gemini.server import LocalGemini

ROOT = Path(__file__).resolve().parents[3]
TEST_INPUT = ROOT / "worker" / "test_input.json"
KEY = "local-key-never-logged"


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


async def run_worker(cwd: Path, **env: str) -> Ran:
    # Nothing from this process's own worker settings leaks in; the worker reads only what the test passes.
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "STORAGE_", "WORKER_", "RUNPOD_", "LOCAL_"))
    }
    test_input = await asyncio.to_thread(TEST_INPUT.read_text)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        "--test_input",
        test_input,
        cwd=cwd,
        env={**base, "PYTHONPATH": str(ROOT), "RUNPOD_LOG_LEVEL": "INFO", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=45)
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


async def test_test_input_runs_one_job_and_prints_its_manifest_when_gemini_is_up(tmp_path: Path) -> None:
    store = tmp_path / "store"
    async with LocalGemini(port=0, draw_px=64) as gemini:
        ran = await run_worker(tmp_path, STORAGE_URL=f"file://{store}", GEMINI_API_KEY=KEY, GEMINI_BASE_URL=gemini.url)

        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "Job result: {'output': {'schema': 1, 'type': 'result', 'ok': 3, 'failed': 0" in ran.stdout
        assert gemini.stats.requests == 3
    outputs = sorted(await asyncio.to_thread(os.listdir, store / "outputs" / "j_local_test"))
    assert outputs == [f"0000{i}.{kind}" for i in range(3) for kind in ("png", "thumb.webp")]
    assert KEY not in ran.stdout + ran.stderr
    assert "Unclosed" not in ran.stdout + ran.stderr  # the Gemini session is closed before the SDK exits


async def test_worker_exits_non_zero_with_one_clear_line_when_gemini_api_key_is_missing(tmp_path: Path) -> None:
    ran = await run_worker(tmp_path, STORAGE_URL=f"file://{tmp_path / 'store'}")

    assert ran.returncode == 2
    assert "Traceback" not in ran.stdout + ran.stderr
    errors = [line for line in ran.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1
    assert "worker cannot start: GEMINI_API_KEY: Field required" in errors[0]


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"GEMINI_API_KEY": "k", "STORAGE_URL": "ftp://nowhere"}, "STORAGE_URL: unsupported store URL scheme"),
        ({"GEMINI_API_KEY": "k", "WORKER_MAX_CONCURRENT_JOBS": "0"}, "WORKER_MAX_CONCURRENT_JOBS: "),
    ],
)
async def test_worker_exits_non_zero_naming_the_setting_when_it_is_invalid(
    tmp_path: Path, env: dict[str, str], needle: str
) -> None:
    ran = await run_worker(tmp_path, **env)

    assert ran.returncode == 2
    assert needle in ran.stderr
    assert "Traceback" not in ran.stderr
