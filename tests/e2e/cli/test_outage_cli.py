"""`python -m bot imagine` against a RunPod endpoint that cannot be reached, or that refuses the key: it says so and
exits with its own status instead of waiting forever.

The CLI is configured as for the real services (an endpoint id and key, an S3 store on moto's server, a Gemini key
it never uses), so nothing embedded stands in for RunPod.
"""

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli.args import EXIT_MISCONFIGURED, EXIT_UNREACHABLE, build_parser
from tests.e2e.cli.conftest import ROOT, base_env, free_port, run_cli
from tests.fakes.s3 import MotoS3, moto_s3

__all__ = ["moto_s3"]  # the session fixture, used here

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture
def remote_env(moto_s3: MotoS3) -> Iterator[dict[str, str]]:
    """Settings for real services: RunPod at a URL, a bucket on moto, a Gemini key (unused: no worker runs here)."""
    bucket = f"outage-{uuid.uuid4().hex[:12]}"
    moto_s3.client().create_bucket(Bucket=bucket)
    yield base_env(
        RUNPOD_ENDPOINT_ID="peel-test",
        RUNPOD_API_KEY="the-key",
        STORAGE_URL=moto_s3.store_url(bucket, "peel"),
        GEMINI_API_KEY="unused-by-the-bot",
        **moto_s3.env(),
    )


@pytest.fixture
def endpoint_port(tmp_path: Path) -> Iterator[int]:
    """A local RunPod endpoint (no workers) on a free port whose key is `the-right-key`."""
    port = free_port()
    log = (tmp_path / "runpod.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.runpod", "--port", str(port), "--workers", "0", "--endpoint-id", "peel-test"],
        cwd=ROOT,
        env=base_env(LOCAL_RUNPOD_API_KEY="the-right-key"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        deadline = time.monotonic() + 20
        while b"local RunPod endpoint:" not in (tmp_path / "runpod.log").read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, "the local RunPod endpoint did not start"
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_cli_gives_up_sooner_than_the_bot_by_default() -> None:
    args = build_parser().parse_args(["imagine", "x"])
    assert args.give_up_after == 30.0  # well under the 60 s an operator should wait for an answer


def test_imagine_says_it_is_delayed_then_exits_unreachable_when_runpod_cannot_be_reached(
    tmp_path: Path, remote_env: dict[str, str]
) -> None:
    closed = free_port()  # nothing listens there
    env = {**remote_env, "RUNPOD_BASE_URL": f"http://127.0.0.1:{closed}/v2"}
    started = time.monotonic()
    run = run_cli(["imagine", "x", "--give-up-after", "3", "--data", str(tmp_path / "data")], cwd=tmp_path, env=env)
    elapsed = time.monotonic() - started
    assert run.returncode == EXIT_UNREACHABLE, run.stderr
    assert elapsed < 60
    assert "delayed: image workers unreachable since" in run.stderr
    assert "have been unreachable since" in run.stderr and "gave up after 3s" in run.stderr
    assert "run the same command again" in run.stderr


def test_imagine_exits_misconfigured_at_once_naming_the_fix_when_runpod_refuses_the_key(
    tmp_path: Path, remote_env: dict[str, str], endpoint_port: int
) -> None:
    env = {**remote_env, "RUNPOD_BASE_URL": f"http://127.0.0.1:{endpoint_port}/v2"}
    run = run_cli(["imagine", "x", "--data", str(tmp_path / "data")], cwd=tmp_path, env=env, timeout_s=60)
    assert run.returncode == EXIT_MISCONFIGURED, run.stderr
    assert "RunPod refused RUNPOD_API_KEY (HTTP 401)" in run.stderr
    assert "Fix: set RUNPOD_API_KEY to a key with access to the endpoint peel-test" in run.stderr
    assert "delayed" not in run.stderr
