"""Throughput of a whole batch through Peel (`python -m bot batch`) against the ideal the Gemini budget allows.

One standalone local Gemini server answers every call after `--latency` seconds (drawing small images). Each
batch size runs as its own `python -m bot batch` subprocess with the embedded RunPod endpoint and real worker
subprocesses, budget `--budget` calls in flight. The rate is measured at the Gemini server (its `/stats`, polled
here): items ÷ the time from its first to its last call of the run, so worker start-up and intake do not count,
but every dispatcher, RunPod and worker overhead does. The ideal is budget ÷ latency (50 / 0.5 s = 100 images/s).
The bot process's peak RSS is its own `VmHWM` (the CLI prints it in its `--json` summary; workers and the Gemini
server are other processes).

On Linux it also prints the CPU time each part spent per image within that window (the bot process, its worker
subprocesses, the Gemini server), and how busy the machine's cores were: on a small machine the whole pipeline
shares a few cores, so `cpu_busy` near 1 says the ratio is bounded by CPU, not by the pipeline's waits.

Each size runs again with a `prompts.csv` giving every image its own prompt (`--per-image-sizes`): its ratio and
RSS growth should match one prompt's, and `table_n{n}_plan_s` is how long the CLI took from reading the ZIP to the
job queued (intake, the table, the plan); `table_parse_{n}_rows_s` is the table's own part (read, assign), in process.

The baseline is what a user without Peel would write: a plain sequential loop of google-genai calls (one input
image and the prompt each) against the same server, over `--baseline-items` items, extrapolated per image.

The last line holds the figures as key=value pairs.
"""

import argparse
import csv
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

from google import genai
from google.genai import types
from PIL import Image

# The CLI and the servers run as `python -m …` subprocesses from the repository's root.
ROOT = Path(__file__).resolve().parent.parent

GEMINI_KEY = "bench-key"
MODEL = "gemini-2.5-flash-image"
PROMPT = "turn it into a watercolour"
_DROPPED_PREFIXES = ("RUNPOD_", "GEMINI_", "STORAGE_", "LOCAL_GEMINI_", "DISCORD_", "LEDGER_", "WORKER_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_PREFIXES)}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def small_png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (i % 256, (i // 256) % 256, (i // 65536) % 256)).save(buf, "PNG")
    return buf.getvalue()


def make_zip(path: Path, n: int, *, per_image: bool = False) -> None:
    """Write `n` small PNGs under `in/`; with `per_image`, a `prompts.csv` giving each its own prompt."""
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(n):
            archive.writestr(f"in/{i:05d}.png", small_png(i))
        if per_image:
            archive.writestr("prompts.csv", prompts_csv(n))


def prompts_csv(n: int) -> str:
    """Return a `prompts.csv` of `n` rows, a different prompt for each image of `make_zip`."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["file", "prompt"])
    for i in range(n):
        writer.writerow([f"in/{i:05d}.png", f"{PROMPT}, number {i}, in the colours of a {WEATHER[i % 4]} day"])
    return out.getvalue()


WEATHER = ("sunny", "rainy", "foggy", "snowy")


class Gemini:
    """The standalone local Gemini server."""

    def __init__(self, latency: float, draw_px: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = clean_env(
            LOCAL_GEMINI_API_KEY=GEMINI_KEY, LOCAL_GEMINI_LATENCY=str(latency), LOCAL_GEMINI_DRAW_PX=str(draw_px)
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "local.gemini", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.stats()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.url}/stats", timeout=5) as resp:
            return {k: int(v) for k, v in json.loads(resp.read()).items() if isinstance(v, int | float)}

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/admin/reset", method="POST")
        with urllib.request.urlopen(request, timeout=5):
            pass

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def stat_fields(pid: int) -> list[str] | None:
    """Return the fields of `/proc/{pid}/stat` after the command name (state, ppid, …), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds a process has used (Linux /proc; 0 when it is gone)."""
    fields = stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    """Return the pids of a process's children (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := stat_fields(int(entry.name))) is not None and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


def cpu_snapshot(bot: int, gemini: int) -> dict[str, float]:
    """Return CPU seconds so far of the bot process, its worker subprocesses and the Gemini server."""
    return {
        "bot": cpu_seconds(bot),
        "workers": sum(cpu_seconds(child) for child in children_of(bot)),
        "gemini": cpu_seconds(gemini),
    }


class CallWindow(threading.Thread):
    """Polls `/stats` and records when the run's first call arrived and when its `n`-th call was answered.

    With `bot_pid` it also takes a CPU snapshot (`cpu_snapshot`) at both moments.
    """

    def __init__(self, gemini: Gemini, n: int) -> None:
        super().__init__(daemon=True)
        self.gemini, self.n = gemini, n
        self.first: float | None = None
        self.last: float | None = None
        self.bot_pid: int | None = None
        self.cpu: list[dict[str, float]] = []
        self.stop = threading.Event()

    def snapshot(self) -> None:
        if self.bot_pid is not None and sys.platform == "linux":
            self.cpu.append(cpu_snapshot(self.bot_pid, self.gemini.proc.pid))

    def run(self) -> None:
        while not self.stop.is_set():
            stats = self.gemini.stats()
            now = time.monotonic()
            if self.first is None and stats["requests"] > 0:
                self.first = now
                self.snapshot()
            if self.last is None and stats["images"] >= self.n:
                self.last = now
                self.snapshot()
                return
            time.sleep(0.05)


def run_peel(
    gemini: Gemini, n: int, args: argparse.Namespace, workdir: Path, *, per_image: bool = False
) -> dict[str, float]:
    """Run a batch of `n` through the CLI: one prompt, or (`per_image`) the ZIP's `prompts.csv`, one per image."""
    make_zip(workdir / "in.zip", n, per_image=per_image)
    gemini.reset()
    env = clean_env(
        GEMINI_API_KEY=GEMINI_KEY,
        GEMINI_BASE_URL=gemini.url,
        WORKER_MAX_CONCURRENT_JOBS=str(args.jobs_per_worker),
        WORKER_PROGRESS_INTERVAL_S=str(args.progress_interval),
    )
    command = [
        sys.executable,
        "-m",
        "bot",
        "batch",
        "in.zip",
        "--prompt",
        "" if per_image else PROMPT,  # per image: the prompts come from the table
        "--data",
        "data",
        "--concurrency",
        str(args.budget),
        "--workers",
        str(args.workers),
        "--poll-interval",
        str(args.poll_interval),
        "--progress-every",
        "30",
        "--json",
        "--yes",
    ]
    window = CallWindow(gemini, n)
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
        window.bot_pid = proc.pid
        window.start()
        stdout, stderr = proc.communicate()
    wall = time.monotonic() - start
    window.stop.set()
    window.join()
    if proc.returncode != 0:
        sys.stderr.write(stderr[-4000:])
        raise SystemExit(f"the batch of {n} failed with status {proc.returncode}")
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["ok"] == n, summary  # every row's image made (a row problem would leave one out)
    assert window.first is not None and window.last is not None
    stats = gemini.stats()
    seconds = window.last - window.first
    figures = {
        "rate": n / seconds,
        "wall_s": wall,
        "rss_mb": summary["peak_rss_bytes"] / 2**20,
        "max_in_flight": stats["max_in_flight"],
        "requests": stats["requests"],
        "plan_s": summary["plan_s"],
    }
    if len(window.cpu) == 2:
        used = {part: window.cpu[1][part] - window.cpu[0][part] for part in window.cpu[0]}
        for part, cpu_s in used.items():
            figures[f"cpu_ms_{part}"] = 1000 * cpu_s / n
        figures["cpu_busy"] = sum(used.values()) / (seconds * (os.cpu_count() or 1))
    return figures


def plan_table_s(n: int) -> float:
    """Return the seconds the table's part of planning takes for an `n`-row `prompts.csv`, in this process.

    That is reading it and giving each image its prompt and options (`bot.core.prompt_table`).
    """
    # `make bench` runs `python bench/<name>.py`, which puts bench/ rather than the repository on sys.path.
    sys.path.insert(0, str(ROOT))
    from bot.core.params import parse_prompt  # only this figure needs the bot's modules
    from bot.core.prompt_table import assign_prompts, parse_table

    text, images = prompts_csv(n), [f"in/{i:05d}.png" for i in range(n)]
    start = time.monotonic()
    table = parse_table("prompts.csv", text)
    plan = assign_prompts(command=parse_prompt(""), model=MODEL, images=images, table=table, captions={})
    elapsed = time.monotonic() - start
    assert len(plan.items) == n and not plan.problems
    return elapsed


def run_sequential(gemini: Gemini, n: int) -> float:
    """Return images/s of a plain loop of google-genai calls, one input image each (what a user would write)."""
    client = genai.Client(api_key=GEMINI_KEY, http_options=types.HttpOptions(base_url=gemini.url, api_version="v1beta"))
    start = time.monotonic()
    for i in range(n):
        response = client.models.generate_content(
            model=MODEL,
            contents=types.Content(
                role="user",
                parts=[
                    types.Part.from_bytes(data=small_png(i), mime_type="image/png"),
                    types.Part.from_text(text=PROMPT),
                ],
            ),
            config=types.GenerateContentConfig(response_modalities=["IMAGE"]),
        )
        parts = response.candidates[0].content.parts if response.candidates and response.candidates[0].content else []
        data = next((p.inline_data.data for p in parts or [] if p.inline_data and p.inline_data.data), None)
        assert data is not None
        with tempfile.NamedTemporaryFile(suffix=".png") as out:  # a user saves each result
            out.write(data)
    return n / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="batch sizes, comma-separated")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per Gemini call")
    parser.add_argument("--budget", type=int, default=50, help="Gemini calls in flight (GEMINI_CONCURRENCY)")
    parser.add_argument("--workers", type=int, default=5, help="embedded RunPod workers")
    parser.add_argument("--jobs-per-worker", type=int, default=4, help="WORKER_MAX_CONCURRENT_JOBS")
    parser.add_argument("--poll-interval", type=float, default=0.2, help="dispatcher poll interval, seconds")
    parser.add_argument("--progress-interval", type=float, default=0.5, help="worker progress interval, seconds")
    parser.add_argument("--draw-px", type=int, default=64, help="the local Gemini server's image size")
    parser.add_argument("--baseline-items", type=int, default=20, help="items of the sequential google-genai loop")
    parser.add_argument(
        "--per-image-sizes",
        default="1000,10000",
        help="batch sizes run again with a prompts.csv of a different prompt per image (empty: none)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    ideal = args.budget / args.latency
    figures: dict[str, str] = {"ideal_img_s": f"{ideal:.0f}", "cores": str(os.cpu_count() or 1)}
    gemini = Gemini(args.latency, args.draw_px)
    try:
        results = {}
        for n in sizes:
            with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
                results[n] = run_peel(gemini, n, args, Path(tmp))
            r = results[n]
            figures[f"n{n}_plan_s"] = f"{r['plan_s']:.1f}"
            figures[f"n{n}_img_s"] = f"{r['rate']:.1f}"
            figures[f"n{n}_ratio"] = f"{r['rate'] / ideal:.2f}"
            figures[f"n{n}_rss_mb"] = f"{r['rss_mb']:.0f}"
            figures[f"n{n}_wall_s"] = f"{r['wall_s']:.0f}"
            figures[f"n{n}_max_in_flight"] = f"{r['max_in_flight']:.0f}"
            for key in ("cpu_ms_bot", "cpu_ms_workers", "cpu_ms_gemini"):
                if key in r:
                    figures[f"n{n}_{key}"] = f"{r[key]:.1f}"
            if "cpu_busy" in r:
                figures[f"n{n}_cpu_busy"] = f"{r['cpu_busy']:.2f}"
            sys.stderr.write(f"{n} items: {r}\n")
        per_image_sizes = [int(s) for s in args.per_image_sizes.split(",") if s]
        table_results = {}
        for n in per_image_sizes:
            with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
                table_results[n] = run_peel(gemini, n, args, Path(tmp), per_image=True)
            r = table_results[n]
            figures[f"table_n{n}_img_s"] = f"{r['rate']:.1f}"
            figures[f"table_n{n}_ratio"] = f"{r['rate'] / ideal:.2f}"
            figures[f"table_n{n}_rss_mb"] = f"{r['rss_mb']:.0f}"
            figures[f"table_n{n}_plan_s"] = f"{r['plan_s']:.1f}"  # intake, the table, the plan, the job queued
            sys.stderr.write(f"{n} items, a prompt each: {r}\n")
        if len(per_image_sizes) > 1:
            first, last = table_results[per_image_sizes[0]], table_results[per_image_sizes[-1]]
            figures["table_rss_growth"] = f"{last['rss_mb'] / first['rss_mb']:.2f}"
        if per_image_sizes:
            figures[f"table_parse_{per_image_sizes[-1]}_rows_s"] = f"{plan_table_s(per_image_sizes[-1]):.2f}"
        gemini.reset()
        sequential = run_sequential(gemini, args.baseline_items)
        figures["sequential_img_s"] = f"{sequential:.2f}"
        figures["sequential_items"] = str(args.baseline_items)
        best = results[sizes[-1]]["rate"]
        figures["vs_sequential"] = f"{best / sequential:.0f}"
        if len(sizes) > 1:
            figures["rss_growth"] = f"{results[sizes[-1]]['rss_mb'] / results[sizes[0]]['rss_mb']:.2f}"
    finally:
        gemini.close()
    print(" ".join(f"{name}={value}" for name, value in figures.items()))


if __name__ == "__main__":
    main()
