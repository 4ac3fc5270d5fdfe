"""`python -m bot batch` and `imagine` as real processes: embedded endpoint, real workers, local Gemini."""

import hashlib
import json
import os
import random
import signal
import sqlite3
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from bot.core.pricing import cost_of
from tests.e2e.cli.conftest import (
    GeminiServer,
    base_env,
    finish_cli,
    make_zip,
    read_results,
    run_cli,
    start_cli,
)
from worker.contract import TokenUsage

if TYPE_CHECKING:
    import subprocess

pytestmark = [pytest.mark.e2e]

CONCURRENCY = 10


def _wait_for_requests(gemini: GeminiServer, target: int, proc: "subprocess.Popen[str]", timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while gemini.stats()["requests"] < target:
        if proc.poll() is not None:
            raise AssertionError(f"the CLI ended (status {proc.returncode}) before Gemini saw {target} requests")
        if time.monotonic() > deadline:
            raise TimeoutError(f"Gemini saw fewer than {target} requests")
        time.sleep(0.02)


def _wait_until_idle(gemini: GeminiServer, timeout_s: float = 10.0) -> None:
    """Wait until the Gemini server has answered every call it received (those of killed workers included)."""
    deadline = time.monotonic() + timeout_s
    while gemini.stats()["in_flight"]:
        if time.monotonic() > deadline:
            raise TimeoutError("the Gemini server still has calls in flight")
        time.sleep(0.05)


def _stored_outputs(store: Path) -> int:
    """Count the output PNGs in a file store (a write in progress is a hidden temp file, not counted)."""
    return sum(1 for path in (store / "outputs").glob("*/*.png") if not path.name.startswith("."))


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def _check_results(path: Path, n: int, skipped: tuple[tuple[str, str], ...] = ()) -> dict[str, object]:
    """Check the results hold each of `n` inputs once and the manifest has a row for every entry of the ZIP."""
    names, manifest = read_results(path)
    images = [name for name in names if name.endswith(".png")]
    assert len(names) == len(set(names))
    assert sorted(images) == [f"img/p{i:05d}.png" for i in range(n)]  # each input once, under its own folder and name
    assert {"manifest.csv", "manifest.json"} <= set(names)
    items = manifest["items"]
    assert isinstance(items, list)
    assert sorted(item["index"] for item in items) == list(range(n + len(skipped)))
    assert all(item["status"] == "ok" for item in items if item["index"] < n)
    rows = [(item["source"], item["status"], item["error_code"]) for item in items if item["index"] >= n]
    assert rows == [(name, "skipped", reason) for name, reason in skipped]
    return manifest


@pytest.mark.timeout(300)
def test_batch_makes_every_item_once_when_killed_three_times_and_restarted(
    tmp_path: Path, start_gemini: Callable[..., GeminiServer]
) -> None:
    n = 300
    gemini = start_gemini(latency="0.1")
    make_zip(tmp_path / "in.zip", n)
    args = ["batch", "in.zip", "--prompt", "make it a watercolour --ar 1:1", "--data", "data", "--json", "--yes"]
    env = gemini.cli_env(GEMINI_CONCURRENCY=str(CONCURRENCY))
    rng = random.Random(1234)
    in_flight_at_kills: list[int] = []

    lost_at_kills: list[int] = []
    wasted = 0
    for kill in range(3):
        before = gemini.stats()["requests"]
        proc = start_cli(args, cwd=tmp_path, env=env, log_name=f"run{kill}")
        target = before + rng.randint(15, 60)
        _wait_for_requests(gemini, target, proc, timeout_s=60)
        in_flight_at_kills.append(gemini.stats()["in_flight"])
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and anything still in its group
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        # The work the kill interrupted: calls still in flight at Gemini, and images Gemini had answered that
        # their (now dead) workers had not yet stored. Gemini finishes the former; then every answered image
        # without a stored output is lost, and only those may be asked for again.
        _wait_until_idle(gemini)
        answered_unstored = gemini.stats()["images"] - _stored_outputs(tmp_path / "data" / "store")
        lost_at_kills.append(answered_unstored - wasted)
        wasted = answered_unstored

    final = run_cli(args, cwd=tmp_path, env=env, timeout_s=180)

    assert final.returncode == 0, final.stderr[-3000:]
    assert "resuming job" in final.stderr
    summary = final.summary()
    assert (summary["ok"], summary["failed"], summary["total"]) == (n, 0, n)
    _check_results(tmp_path / "results.zip", n)
    stats = gemini.stats()
    # Exactly the work the kills interrupted was made again, nothing else; and a kill never interrupts more than
    # the budget has in progress (a worker holds an item's slot from its Gemini call until its PNG is stored).
    extra = stats["requests"] - n
    assert extra == sum(lost_at_kills), (extra, lost_at_kills, in_flight_at_kills)
    assert all(0 <= lost <= CONCURRENCY for lost in lost_at_kills), (lost_at_kills, in_flight_at_kills)
    assert stats["max_in_flight"] <= CONCURRENCY


@pytest.mark.timeout(420)
def test_batch_loses_no_item_and_keeps_the_budget_when_gemini_injects_429s_and_503s(
    tmp_path: Path, start_gemini: Callable[..., GeminiServer]
) -> None:
    n = 500
    gemini = start_gemini(latency="0.05", rate_429="0.3", rate_5xx="0.1", retry_delay="0.05", fault_seed="7")
    make_zip(tmp_path / "in.zip", n)
    # Each failing call is retried by the worker (jittered backoff, at least the 429's retryDelay); six attempts
    # leave ~0.4% of the items (0.4^6) to the dispatcher's own retry, where the default four leave ~2.6% and most
    # chunks would come back RATE_LIMITED and halve the AIMD window. A short backoff keeps a chunk from holding its
    # share of the budget for a minute while one item sleeps through 2+4+8+16 s.
    env = gemini.cli_env(GEMINI_CONCURRENCY=str(CONCURRENCY), GEMINI_MAX_ATTEMPTS="6", GEMINI_BACKOFF_BASE_S="0.05")

    run = run_cli(
        ["batch", "in.zip", "--prompt", "pencil sketch", "--data", "data", "--json", "--yes"],
        cwd=tmp_path,
        env=env,
        timeout_s=400,
    )

    assert run.returncode == 0, run.stderr[-3000:]
    summary = run.summary()
    assert (summary["ok"], summary["failed"]) == (n, 0)
    _check_results(tmp_path / "results.zip", n)
    stats = gemini.stats()
    assert stats["errors_injected"] > 0.2 * n
    assert stats["max_in_flight"] <= CONCURRENCY


@pytest.mark.timeout(120)
def test_batch_can_be_resumed_when_interrupted_with_ctrl_c(
    tmp_path: Path, start_gemini: Callable[..., GeminiServer]
) -> None:
    n = 60
    gemini = start_gemini(latency="0.3")
    make_zip(tmp_path / "in.zip", n, extra={"notes.txt": b"not an image"})
    args = ["batch", "in.zip", "--prompt", "oil painting", "--data", "data", "--out", "out/r.zip", "--yes"]
    env = gemini.cli_env(GEMINI_CONCURRENCY="4")

    proc = start_cli(args, cwd=tmp_path, env=env, log_name="first")
    _wait_for_requests(gemini, 8, proc, timeout_s=60)
    os.kill(proc.pid, signal.SIGINT)
    first = finish_cli(proc, cwd=tmp_path, log_name="first", timeout_s=60)

    assert first.returncode == 130
    assert "notes.txt: a .txt caption with no image of the same name beside it" in first.stderr
    assert "resume with: python -m bot batch in.zip --prompt 'oil painting'" in first.stderr
    second = run_cli(args, cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming job" in second.stderr
    _check_results(tmp_path / "out" / "r.zip", n, skipped=(("notes.txt", "caption_without_image"),))
    assert gemini.stats()["requests"] <= n + 4  # at most the calls in flight at Ctrl-C again


@pytest.mark.timeout(120)
def test_imagine_writes_four_images_and_a_grid_when_run_with_embedded_defaults(tmp_path: Path) -> None:
    # No Gemini settings: the CLI starts the embedded local Gemini server, which inherits LOCAL_GEMINI_DRAW_PX.
    env = base_env()
    run = run_cli(
        ["imagine", "a red fox in the snow --ar 1:1 --v 6", "--out", "fox", "--data", "data"], cwd=tmp_path, env=env
    )

    assert run.returncode == 0, run.stderr[-3000:]
    assert "Ignored Midjourney parameters: --v 6 (Gemini has no equivalent)" in run.stderr  # a pasted prompt runs
    files = sorted((tmp_path / "fox").iterdir())
    singles = [f for f in files if not f.name.endswith("_grid.png")]
    grids = [f for f in files if f.name.endswith("_grid.png")]
    assert len(singles) == 4 and len(grids) == 1
    sizes = {_size(f) for f in singles}
    assert sizes == {(32, 32)}  # drawn small: the embedded server got LOCAL_GEMINI_DRAW_PX=32
    assert _size(grids[0]) == (2 * 32 + 8, 2 * 32 + 8)  # 2x2 with the gap
    assert len({f.read_bytes() for f in singles}) == 4  # four different images
    # Each item's recorded cost is the price table applied to the usage the local Gemini reported for it.
    with sqlite3.connect(tmp_path / "data" / "peel.sqlite3") as db:
        rows = db.execute("SELECT j.params, i.cost_usd, i.usage FROM items i JOIN jobs j ON j.id = i.job_id").fetchall()
        runpod = db.execute("SELECT coalesce(sum(runpod_cost_usd), 0) FROM chunks").fetchone()[0]
    assert len(rows) == 4
    for params, cost, usage in rows:
        reported = TokenUsage.model_validate_json(usage)
        assert reported.image_output_tokens == 1290 and reported.prompt_tokens > 0
        assert cost == pytest.approx(cost_of(json.loads(params)["model"], reported, batch=False))
    assert runpod > 0  # the chunk's executionTime, priced
    assert f"${sum(r[1] for r in rows) + runpod:.4f} spent" in run.stderr


@pytest.mark.timeout(120)
def test_batch_sends_the_shared_references_with_every_item_when_given_ref(
    tmp_path: Path, start_gemini: Callable[..., GeminiServer]
) -> None:
    gemini = start_gemini()
    make_zip(tmp_path / "in.zip", 3)
    for i, name in enumerate(("style.png", "logo.png")):
        Image.new("RGB", (8, 8), (200, 40 * i, 90)).save(tmp_path / name)
    args = [
        "batch",
        "in.zip",
        "--prompt",
        "in this style --model pro",
        "--ref",
        "style.png",
        "--ref",
        "logo.png",
        "--yes",
    ]

    run = run_cli([*args, "--data", "data"], cwd=tmp_path, env=gemini.cli_env())
    too_many = run_cli(
        ["batch", "in.zip", "--prompt", "x --model flash", *[f"--ref={n}" for n in ("style.png", "logo.png") * 2]],
        cwd=tmp_path,
        env=gemini.cli_env(),
    )

    assert run.returncode == 0, run.stderr[-3000:]
    assert "2 shared reference(s) for every image: style.png, logo.png" in run.stderr
    with urllib.request.urlopen(f"{gemini.url}/admin/requests", timeout=5) as resp:
        requests = json.loads(resp.read())
    shared = {hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ("style.png", "logo.png")}
    assert len(requests) == 3 and all(r["images"] == 3 for r in requests)  # its own image and both references
    assert all(set(r["image_sha256"][1:]) == shared for r in requests)
    assert too_many.returncode == 2 and "at most 3 shared reference images" in too_many.stderr
    # The last line says what the batch was recorded to cost (Gemini's reported usage priced, RunPod time).
    with sqlite3.connect(tmp_path / "data" / "peel.sqlite3") as db:
        items = db.execute("SELECT coalesce(sum(cost_usd), 0) FROM items").fetchone()[0]
        runpod = db.execute("SELECT coalesce(sum(runpod_cost_usd), 0) FROM chunks").fetchone()[0]
    assert items > 0 and f"${items + runpod:.4f} spent, as recorded" in run.stdout


def test_batch_exits_2_when_input_or_prompt_is_bad(tmp_path: Path) -> None:
    env = base_env()
    missing = run_cli(["batch", "nope.zip", "--prompt", "x", "--data", "data"], cwd=tmp_path, env=env)
    make_zip(tmp_path / "in.zip", 1)
    bad_prompt = run_cli(["batch", "in.zip", "--prompt", "x --ar banana", "--data", "data"], cwd=tmp_path, env=env)
    bad_flag = run_cli(["batch", "in.zip", "--prompt", "x", "--size", "9K", "--data", "data"], cwd=tmp_path, env=env)

    assert (missing.returncode, bad_prompt.returncode, bad_flag.returncode) == (2, 2, 2)
    assert "no such file" in missing.stderr
    assert "--ar banana" in bad_prompt.stderr
    assert "--size 9K" in bad_flag.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was started
