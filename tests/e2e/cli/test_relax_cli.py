"""Relax mode through `python -m bot batch --relax` as real processes: the embedded RunPod endpoint with real workers
(relax_prepare, relax_collect) and a standalone local Gemini server with the Batch and Files APIs, which outlives
the CLI so its batches and counts add up over kills."""

import io
import json
import math
import os
import signal
import sqlite3
import time
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from tests.e2e.cli.conftest import GeminiServer, make_zip, read_results, run_cli, start_cli

if TYPE_CHECKING:
    import subprocess

pytestmark = [pytest.mark.e2e]

PROMPT = "make it a watercolour --seed 42"


def admin_batches(gemini: GeminiServer) -> dict[str, object]:
    with urllib.request.urlopen(f"{gemini.url}/admin/batches", timeout=5) as resp:
        data = json.loads(resp.read())
    assert isinstance(data, dict)
    return data


def relax_env(gemini: GeminiServer, **extra: str) -> dict[str, str]:
    return gemini.cli_env(RELAX_POLL_S="0.2", GEMINI_CONCURRENCY="10", **extra)


def pixels(archive: zipfile.ZipFile, name: str) -> bytes:
    with Image.open(io.BytesIO(archive.read(name))) as image:
        return image.convert("RGB").tobytes()


@pytest.mark.timeout(400)
def test_a_relax_batch_gives_fast_modes_outputs_at_half_the_price(
    tmp_path: Path, start_gemini: Callable[..., GeminiServer]
) -> None:
    n, part, compared = 1000, 250, 100
    gemini = start_gemini(batch_wait_s="0.2", batch_concurrency="32")
    make_zip(tmp_path / "in.zip", n)
    # Fast mode on the first `compared` images of the same ZIP: with one seed base, item i has the same seed in
    # both runs, so the same output (and the same manifest row) is expected.
    make_zip(tmp_path / "head.zip", compared)
    options = ["--prompt", PROMPT, "--data", "data", "--json", "--yes"]

    fast = run_cli(["batch", "head.zip", *options, "--fast", "--out", "fast.zip"], cwd=tmp_path, env=relax_env(gemini))
    assert fast.returncode == 0, fast.stderr[-3000:]
    before = gemini.stats()
    relax = run_cli(
        ["batch", "in.zip", *options, "--relax", "--out", "relax.zip"],
        cwd=tmp_path,
        env=relax_env(gemini, RELAX_PART_ITEMS=str(part)),
        timeout_s=240,
    )
    assert relax.returncode == 0, relax.stderr[-3000:]
    after = gemini.stats()

    fast_summary, relax_summary = fast.summary(), relax.summary()
    assert (relax_summary["ok"], relax_summary["failed"], relax_summary["mode"]) == (n, 0, "relax")
    assert fast_summary["mode"] == "fast"
    # Half the price, in the summary and the ledger it is computed from.
    fast_unit = float(str(fast_summary["cost_usd"])) / compared
    assert float(str(relax_summary["cost_usd"])) == pytest.approx(fast_unit * n / 2, abs=0.011)
    # Every image went through Gemini's Batch API, in parts of `part`, each made once; nothing online.
    assert after["requests"] == before["requests"]
    assert after["batch_requests"] - before["batch_requests"] == n
    assert after["batch_images"] - before["batch_images"] == n
    assert after["batches_created"] - before["batches_created"] == math.ceil(n / part)
    assert admin_batches(gemini)["keys_drawn_twice"] == {}

    # The same ZIP: the same members, the same manifest rows but for the mode, the same pictures.
    fast_names, fast_manifest = read_results(tmp_path / "fast.zip")
    relax_names, relax_manifest = read_results(tmp_path / "relax.zip")
    images = sorted(name for name in relax_names if name.endswith(".png"))
    assert images == [f"img/p{i:05d}.png" for i in range(n)]
    assert [name for name in relax_names if not name.endswith(".png")] == [
        name for name in fast_names if not name.endswith(".png")
    ]
    fast_items, relax_items = fast_manifest["items"], relax_manifest["items"]
    assert isinstance(fast_items, list) and isinstance(relax_items, list)
    assert {item["mode"] for item in relax_items} == {"relax"} and len(relax_items) == n
    assert [list(item) for item in relax_items[:compared]] == [list(item) for item in fast_items]

    def unmoded(item: dict[str, object]) -> dict[str, object]:
        return {k: v for k, v in item.items() if k != "mode"}

    assert [unmoded(item) for item in relax_items[:compared]] == [unmoded(item) for item in fast_items]
    with zipfile.ZipFile(tmp_path / "fast.zip") as a, zipfile.ZipFile(tmp_path / "relax.zip") as b:
        for name in ("img/p00000.png", "img/p00050.png", "img/p00099.png"):
            assert pixels(a, name) == pixels(b, name)
    with zipfile.ZipFile(tmp_path / "relax.zip") as archive:
        rows = archive.read("manifest.csv").decode().splitlines()
    assert rows[0].endswith(",mode") and rows[1].endswith(",relax")


def parts(db: Path) -> list[tuple[str, str | None, str | None]]:
    """The relax parts as the CLI's ledger has them now: phase, RunPod job, Gemini batch."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return list(conn.execute("SELECT phase, runpod_id, batch_name FROM relax_parts ORDER BY chunk_id"))
    except sqlite3.OperationalError:  # not migrated yet, or busy
        return []


def in_phase(rows: list[tuple[str, str | None, str | None]], phase: str) -> bool:
    if phase == "preparing":  # its prepare job is on RunPod
        return any(p == "preparing" and rp is not None for p, rp, _ in rows)
    if phase == "collecting":  # its collect job is on RunPod
        return any(p == "collecting" and rp is not None for p, rp, _ in rows)
    return any(p == phase for p, _, _ in rows)


def wait_for_phase(db: Path, phase: str, proc: "subprocess.Popen[str]", timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not in_phase(parts(db), phase):
        if proc.poll() is not None:
            raise AssertionError(f"the CLI ended (status {proc.returncode}) before a part was {phase}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no part reached {phase}: {parts(db)}")
        time.sleep(0.01)


@pytest.mark.timeout(300)
def test_kill_9_in_each_phase_finishes_with_one_gemini_batch_per_part_and_no_image_twice(
    tmp_path: Path, start_gemini: Callable[..., GeminiServer]
) -> None:
    n, part = 40, 20
    # Slow enough to be caught in each phase even on a loaded machine, where the CLI takes seconds to start again:
    # uploads and downloads take 1.5 s, a batch waits 3 s and runs its 20 requests one at a time at 0.4 s each, and
    # one part is open at a time, so the second part goes through every phase after the first.
    gemini = start_gemini(batch_wait_s="3", batch_concurrency="1", latency="0.4", files_latency="1.5")
    make_zip(tmp_path / "in.zip", n)
    args = ["batch", "in.zip", "--prompt", PROMPT, "--data", "data", "--json", "--yes", "--relax"]
    env = relax_env(gemini, RELAX_PART_ITEMS=str(part), RELAX_PARTS_PER_JOB="1")
    db = tmp_path / "data" / "peel.sqlite3"

    for number, phase in enumerate(("preparing", "submitted", "running", "collecting")):
        proc = start_cli(args, cwd=tmp_path, env=env, log_name=f"run{number}")
        wait_for_phase(db, phase, proc)
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its embedded endpoint and its workers
        proc.wait()
        assert proc.returncode == -signal.SIGKILL

    final = run_cli(args, cwd=tmp_path, env=env, timeout_s=180)
    assert final.returncode == 0, final.stderr[-3000:]
    summary = final.summary()
    assert (summary["ok"], summary["failed"], summary["total"]) == (n, 0, n)
    names, _ = read_results(tmp_path / "results.zip")
    assert sorted(x for x in names if x.endswith(".png")) == [f"img/p{i:05d}.png" for i in range(n)]

    seen = admin_batches(gemini)
    batches = seen["batches"]
    assert isinstance(batches, list)
    per_name: dict[str, int] = {}
    for batch in batches:
        per_name[batch["displayName"]] = per_name.get(batch["displayName"], 0) + 1
    assert len(per_name) == n // part and set(per_name.values()) == {1}, per_name  # one batch per part, ever
    assert seen["keys_drawn_twice"] == {}
    stats = gemini.stats()
    assert stats["batch_images"] == n and stats["requests"] == 0  # no image generated twice, none online
