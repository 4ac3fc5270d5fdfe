"""Relax mode against fast mode on the same batch (`python -m bot batch --fast` / `--relax`): memory, price, time.

One standalone local Gemini server (its Batch and Files APIs; images drawn at `--draw-px`) answers both runs of the
same ZIP. Each run is a `python -m bot batch` subprocess with the embedded RunPod endpoint and real worker
subprocesses. Measured per run:

- the bot process's peak RSS (its own `VmHWM`, printed by the CLI's `--json` summary): relax must not cost the bot
  more memory than fast (`bot_rss_relax_over_fast` ≤ 1.2), since the result file is streamed by the workers and
  never passes through the bot;
- the workers' peak RSS (the largest `VmHWM` among the CLI's worker subprocesses, sampled while they live): the
  workers stream the result file line by line, so it stays near a fast worker's although relax moves the whole
  part's images in one job (`worker_rss_relax_over_fast`);
- the price the summary reports (`cost_relax_over_fast`, 0.5: Gemini's batch price), the requests the Gemini
  server saw online and through the Batch API, the size of the result files (the stored images in base64: the
  bot deletes the files once collected), and the wall time of each run
  (relax waits `--batch-wait` for each batch to start, as Gemini's queue would, far shorter than Gemini's own).

The last line holds the figures as key=value pairs.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.batch_pipeline import GEMINI_KEY, PROMPT, ROOT, children_of, clean_env, free_port, make_zip


class Gemini:
    """The standalone local Gemini server, with its batch settings."""

    def __init__(self, *, draw_px: int, batch_wait_s: float, batch_concurrency: int) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        env = clean_env(
            LOCAL_GEMINI_API_KEY=GEMINI_KEY,
            LOCAL_GEMINI_DRAW_PX=str(draw_px),
            LOCAL_GEMINI_BATCH_WAIT_S=str(batch_wait_s),
            LOCAL_GEMINI_BATCH_CONCURRENCY=str(batch_concurrency),
        )
        port = self.url.rsplit(":", 1)[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "local.gemini", "--port", port],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.get("/stats")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def get(self, path: str) -> dict[str, object]:
        import urllib.request

        with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as resp:
            data = json.loads(resp.read())
        assert isinstance(data, dict)
        return data

    def stats(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.get("/stats").items() if isinstance(v, int | float)}

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def vm_hwm_kb(pid: int) -> int:
    """Return a process's peak resident set (`VmHWM`, kB), or 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class WorkerPeak(threading.Thread):
    """Samples the peak RSS of a process's children (the embedded workers) until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kb = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for child in children_of(self.pid):
                self.peak_kb = max(self.peak_kb, vm_hwm_kb(child))
            time.sleep(0.05)


def run_batch(gemini: Gemini, workdir: Path, mode: str, args: argparse.Namespace) -> dict[str, float]:
    """Run the ZIP in `workdir` through the CLI in `mode` (fast or relax); return its figures."""
    env = clean_env(
        GEMINI_API_KEY=GEMINI_KEY,
        GEMINI_BASE_URL=gemini.url,
        RELAX_POLL_S=str(args.poll),
        RELAX_PART_ITEMS=str(args.part_items),
    )
    command = [sys.executable, "-m", "bot", "batch", "in.zip", "--prompt", PROMPT, "--data", f"data-{mode}"]
    command += ["--concurrency", str(args.budget), "--json", "--yes", f"--{mode}", "--out", f"{mode}.zip"]
    before = gemini.stats()
    start = time.monotonic()
    with subprocess.Popen(
        command,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        peak = WorkerPeak(proc.pid)
        peak.start()
        stdout, stderr = proc.communicate()
        peak.stop.set()
        peak.join()
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.stderr.write(stderr[-4000:])
        raise SystemExit(f"the {mode} batch failed with status {proc.returncode}")
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["ok"] == args.items, summary
    after = gemini.stats()
    return {
        "wall_s": wall,
        "bot_rss_mb": summary["peak_rss_bytes"] / 2**20,
        "worker_rss_mb": peak.peak_kb / 1024,
        "cost_usd": float(summary["cost_usd"]),
        "online": after["requests"] - before["requests"],
        "batched": after["batch_requests"] - before["batch_requests"],
        "batches": after["batches_created"] - before["batches_created"],
    }


def images_mb(store: Path) -> float:
    """The total size of the images a run stored: the result files the workers streamed held them in base64 (4/3)."""
    return sum(path.stat().st_size for path in (store / "outputs").glob("*/*.png")) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000, help="images in the batch")
    parser.add_argument("--draw-px", type=int, default=256, help="the local Gemini server's image size")
    parser.add_argument("--budget", type=int, default=20, help="Gemini calls in flight in fast mode")
    parser.add_argument("--part-items", type=int, default=500, help="RELAX_PART_ITEMS")
    parser.add_argument("--poll", type=float, default=0.5, help="RELAX_POLL_S")
    parser.add_argument("--batch-wait", type=float, default=1.0, help="seconds a Gemini batch stays pending")
    parser.add_argument("--batch-concurrency", type=int, default=20, help="a batch's requests drawn at once")
    args = parser.parse_args()
    gemini = Gemini(draw_px=args.draw_px, batch_wait_s=args.batch_wait, batch_concurrency=args.batch_concurrency)
    try:
        with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
            workdir = Path(tmp)
            make_zip(workdir / "in.zip", args.items)
            fast = run_batch(gemini, workdir, "fast", args)
            sys.stderr.write(f"fast: {fast}\n")
            relax = run_batch(gemini, workdir, "relax", args)
            sys.stderr.write(f"relax: {relax}\n")
            results_mb = images_mb(workdir / "data-relax" / "store") * 4 / 3
    finally:
        gemini.close()
    figures = {
        "items": str(args.items),
        "draw_px": str(args.draw_px),
        "fast_wall_s": f"{fast['wall_s']:.1f}",
        "relax_wall_s": f"{relax['wall_s']:.1f}",
        "result_files_mb": f"{results_mb:.0f}",  # the base64 images the workers streamed (the bot deletes the files)
        "relax_batches": f"{relax['batches']:.0f}",
        "relax_online_requests": f"{relax['online']:.0f}",
        "relax_batch_requests": f"{relax['batched']:.0f}",
        "bot_rss_fast_mb": f"{fast['bot_rss_mb']:.0f}",
        "bot_rss_relax_mb": f"{relax['bot_rss_mb']:.0f}",
        "worker_rss_fast_mb": f"{fast['worker_rss_mb']:.0f}",
        "worker_rss_relax_mb": f"{relax['worker_rss_mb']:.0f}",
        "cost_relax_over_fast": f"{relax['cost_usd'] / fast['cost_usd']:.2f}",
        "worker_rss_relax_over_fast": f"{relax['worker_rss_mb'] / fast['worker_rss_mb']:.2f}",
        "bot_rss_relax_over_fast": f"{relax['bot_rss_mb'] / fast['bot_rss_mb']:.2f}",
    }
    print(" ".join(f"{name}={value}" for name, value in figures.items()))


if __name__ == "__main__":
    main()
