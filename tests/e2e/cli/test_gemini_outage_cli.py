"""`python -m bot imagine` whose workers cannot reach Gemini: it says it is delayed and exits with status 4 naming
Gemini, instead of sitting silent through every item's retries.

The embedded RunPod endpoint runs real workers, pointed with `GEMINI_API_KEY` + `GEMINI_BASE_URL` at a port nothing
listens on; they inherit the environment, so their own retries are made short (`GEMINI_MAX_ATTEMPTS`,
`GEMINI_BACKOFF_BASE_S`) and the outage shows within seconds.
"""

import time
from pathlib import Path

import pytest

from bot.cli.args import EXIT_UNREACHABLE
from tests.e2e.cli.conftest import base_env, free_port, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_imagine_says_gemini_is_not_answering_then_exits_unreachable_naming_the_setting(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    env = base_env(
        GEMINI_API_KEY="x",
        GEMINI_BASE_URL=f"http://127.0.0.1:{closed}",
        GEMINI_MAX_ATTEMPTS="2",
        GEMINI_BACKOFF_BASE_S="0.05",
        LOCAL_WORKERS="1",
    )
    started = time.monotonic()
    run = run_cli(["imagine", "x", "--give-up-after", "3", "--data", str(tmp_path / "data")], cwd=tmp_path, env=env)
    elapsed = time.monotonic() - started
    assert run.returncode == EXIT_UNREACHABLE, run.stderr
    assert elapsed < 60
    assert "delayed: Gemini not answering since" in run.stderr
    assert "Gemini has not answered the image workers since" in run.stderr
    assert "(Gemini unreachable: ClientConnectorError)" in run.stderr
    assert "Check GEMINI_BASE_URL" in run.stderr and "gave up after 3s" in run.stderr
    assert "run the same command again" in run.stderr
    assert "image workers unreachable" not in run.stderr  # RunPod answered all along
