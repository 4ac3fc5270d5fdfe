"""`python -m bot` stopped with SIGTERM (`docker stop`) mid-run and started again on the same data loses nothing.

The bot runs on the embedded defaults (playground, local RunPod with worker subprocesses) with its workers pointed
at a standalone local Gemini server, which counts every image asked for across both processes.
"""

import asyncio
import re
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from local.discord.remote import RemoteDriver
from tests.e2e.cli.conftest import GeminiServer, start_cli

if TYPE_CHECKING:
    import subprocess

pytestmark = [pytest.mark.e2e]

JOBS = 3  # the per-user running cap: all of them are admitted at once
IMAGES = 4 * JOBS
CONCURRENCY = 4  # Gemini calls at once: the jobs' images are made a few at a time
DOCKER_STOP_GRACE_S = 10.0  # `docker stop` sends SIGKILL after this


def _page_url(out: Path, proc: "subprocess.Popen[str]", timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := re.search(r"open (http://\S+)", out.read_text()):
            return found.group(1)
        if proc.poll() is not None:
            raise AssertionError(f"the bot ended with status {proc.returncode} before it was ready")
        time.sleep(0.1)
    raise TimeoutError("the bot did not print its page URL")


def _ledger(data: Path) -> tuple[list[str], dict[str, int], int]:
    """Return the jobs' statuses, the items' counts by status, and how many chunks there were."""
    with sqlite3.connect(data / "peel.sqlite3") as db:
        jobs = [row[0] for row in db.execute("SELECT status FROM jobs ORDER BY id")]
        items = dict(db.execute("SELECT status, count(*) FROM items GROUP BY status").fetchall())
        chunks = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
    return jobs, items, int(chunks)


def _outputs(data: Path) -> int:
    return sum(1 for p in (data / "store" / "outputs").glob("*/*.png") if not p.name.startswith("."))


def _sigterm(proc: "subprocess.Popen[str]") -> tuple[int, float]:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    return code, time.monotonic() - started


async def _imagine(url: str, prompts: list[str]) -> None:
    async with RemoteDriver(url, "alice") as alice:
        for prompt in prompts:
            await alice.wait_ack(await alice.slash("imagine", {"prompt": prompt}))


@pytest.mark.timeout(240)
def test_the_bot_stops_on_sigterm_within_docker_grace_and_finishes_every_job_once_after_a_restart(
    tmp_path: Path, start_gemini: Callable[..., GeminiServer]
) -> None:
    gemini = start_gemini(latency="1.0")
    data = tmp_path / "data"
    env = gemini.cli_env(PLAYGROUND_PORT="0", WEB_PORT="0", DATA_DIR=str(data), GEMINI_CONCURRENCY=str(CONCURRENCY))

    first = start_cli([], cwd=tmp_path, env=env, log_name="first")
    url = _page_url(tmp_path / "first.out", first)
    asyncio.run(_imagine(url, [f"sigterm fox {n}" for n in range(JOBS)]))
    deadline = time.monotonic() + 60
    while gemini.stats()["requests"] <= CONCURRENCY and time.monotonic() < deadline:
        time.sleep(0.05)  # the SIGTERM lands with images made, being made and not yet asked for
    asked_before_stop = gemini.stats()["requests"]
    code, took_s = _sigterm(first)

    assert code == 0, (tmp_path / "first.err").read_text()[-3000:]
    assert took_s < DOCKER_STOP_GRACE_S
    print(f"first stop took {took_s:.2f} s with {asked_before_stop} images asked")
    jobs, _items, chunks_before = _ledger(data)
    assert len(jobs) == JOBS and "done" not in jobs  # stopped mid-run: there is something to finish

    second = start_cli([], cwd=tmp_path, env=env, log_name="second")
    _page_url(tmp_path / "second.out", second)
    deadline = time.monotonic() + 90
    while _ledger(data)[0] != ["done"] * JOBS:
        assert time.monotonic() < deadline, _ledger(data)
        assert second.poll() is None, (tmp_path / "second.err").read_text()[-3000:]
        time.sleep(0.2)
    code, took_s = _sigterm(second)

    assert code == 0 and took_s < DOCKER_STOP_GRACE_S
    jobs, items, chunks = _ledger(data)
    print(f"second stop took {took_s:.2f} s; chunks {chunks_before} then {chunks}; asked {gemini.stats()}")
    assert items == {"ok": IMAGES}
    assert _outputs(data) == IMAGES
    # The first process's chunks ended with its embedded workers; the second submitted only what was not stored
    # (at most one more chunk per job), so Gemini was asked again at most for the calls in flight at the SIGTERM.
    assert chunks <= chunks_before + JOBS
    assert IMAGES <= gemini.stats()["requests"] <= IMAGES + CONCURRENCY
    assert "Traceback" not in (tmp_path / "first.err").read_text()
