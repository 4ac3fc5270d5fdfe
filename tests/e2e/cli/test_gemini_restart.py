"""`python -m bot batch` on its embedded defaults, with the embedded Gemini server killed under it mid-batch."""

import json
import logging
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.cli.conftest import base_env, finish_cli, make_zip, read_results, start_cli
from tests.fakes.processes import descendants_running

pytestmark = [pytest.mark.e2e]
log = logging.getLogger(__name__)


def _stats(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"{url}/stats", timeout=2) as resp:
            data = json.loads(resp.read())
    except (urllib.error.URLError, ConnectionError):
        return None
    return data if isinstance(data, dict) else None


def _wait(what: str, predicate: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


@pytest.mark.timeout(120)
def test_batch_makes_every_item_once_when_its_gemini_server_is_killed_mid_batch(tmp_path: Path) -> None:
    n = 60
    make_zip(tmp_path / "in.zip", n)
    # No Gemini settings: the CLI starts the embedded server, which inherits the latency (a batch of ~5 s).
    env = base_env(LOCAL_GEMINI_LATENCY="0.3", GEMINI_CONCURRENCY="4")
    args = ["batch", "in.zip", "--prompt", "charcoal drawing", "--data", "data", "--json", "--yes"]
    proc = start_cli(args, cwd=tmp_path, env=env)

    servers: list[tuple[int, list[str]]] = []

    def server_started() -> bool:
        servers[:] = descendants_running(proc.pid, "local.gemini")
        return len(servers) == 1 and proc.poll() is None

    _wait("the CLI started no local Gemini server", server_started, 60)
    [(first, argv)] = servers
    url = f"http://127.0.0.1:{argv[argv.index('--port') + 1]}"

    def made_some() -> bool:
        stats = _stats(url)
        return stats is not None and int(str(stats["images"])) >= 10

    _wait("the batch made no image", made_some, 60)
    os.kill(first, signal.SIGKILL)
    killed_at = time.monotonic()
    _wait("the local Gemini server did not come back", lambda: _stats(url) is not None, 15)
    back_after_s = time.monotonic() - killed_at
    run = finish_cli(proc, cwd=tmp_path, timeout_s=60)  # the batch goes on by itself within a minute
    done_after_s = time.monotonic() - killed_at

    assert run.returncode == 0, run.stderr[-3000:]
    assert f"pid {first}) exited with code -9" in run.stderr
    assert f"local Gemini server restarted on {url}" in run.stderr
    summary = run.summary()
    assert (summary["ok"], summary["failed"], summary["total"]) == (n, 0, n)
    names, manifest = read_results(tmp_path / "results.zip")
    assert sorted(name for name in names if name.endswith(".png")) == [f"img/p{i:05d}.png" for i in range(n)]
    items = manifest["items"]
    assert isinstance(items, list)
    assert sorted(item["index"] for item in items) == list(range(n))
    assert all(item["status"] == "ok" for item in items)
    log.info("Gemini server killed: back after %.2f s, batch done %.2f s after the kill", back_after_s, done_after_s)
