"""Headless use of Peel: `python -m bot batch INPUT.zip --prompt "…"` and `python -m bot imagine "prompt"`.

Both run through the same `Runtime` as the Discord bot (ledger under `--data`, file store under `--data/store`,
embedded back ends unless RunPod/Gemini/storage settings are in the environment); only the front end differs.

`batch` plans and starts the ZIP through the same `BatchService` as `/batch` (so both write the same notes and the
same manifest), runs the dispatcher until the job is finished and writes the batch's ZIP with both manifests. The
job's idempotency key is a hash of the input ZIP's content, the prompt and the parameters, so the same command
started again after Ctrl-C, a crash or SIGKILL finds the same job in the ledger and goes on with it: nothing that
was made is made again. Exit status: 0 when every item was made, 1 when some failed (the ZIP is still written), 2
for bad usage or input, 3 when the ledger is damaged (the message says how to restore it), 130 when interrupted.

`imagine` goes through `GenerationService`, as `/imagine` does: it makes a grid job (4 images unless `--n`) and
writes the images and a 2x2 grid into a directory.
"""

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from bot.app import IntakeReport, InvalidRequestError, LedgerDamagedError, LedgerTooNewError
from bot.app.batches import BatchService
from bot.app.batchplan import BatchError, BatchOptions, BatchRequest
from bot.app.generation_types import GenerationError, Origin
from bot.app.imaging import compose_grid
from bot.app.runtime import StopRequestedError, open_runtime
from bot.app.services import generation_service
from bot.core.admission import REFUSAL_TITLE
from bot.core.batch import BatchLimits
from bot.core.item_errors import NOT_MADE, item_error_message
from bot.core.manifest import ItemStatus as RowStatus
from bot.core.manifest import ManifestRow
from bot.core.models import Job, JobParams, UserId
from bot.core.params import ParsedPrompt, PromptParams, parse_prompt
from bot.settings import BotSettings

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_LEDGER_DAMAGED = 3  # damaged, or written by a newer Peel
EXIT_INTERRUPTED = 130

CLI_OWNER = UserId(0)  # the CLI's jobs belong to no Discord user
_HASH_BLOCK_BYTES = 1024 * 1024
NOTE_SKIPPED = "intake_skipped"  # the job's ZIP entries intake skipped, as [entry name, reason code]
WORKERS_READY_S = 15.0  # the most a batch waits for the embedded workers to start


class UsageError(Exception):
    """Bad arguments or input; the message is shown as is and the exit status is 2."""


# ---- output ------------------------------------------------------------------------------------------------------


class Console:
    """Where the CLI talks: results on stdout, progress and notes on stderr (no `print`: ruff T20)."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self._progress_open = False

    def say(self, text: str) -> None:
        """Write a line to stdout."""
        self.end_progress()
        self.out.write(text + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        """Write a line to stderr."""
        self.end_progress()
        self.err.write(text + "\n")
        self.err.flush()

    def progress(self, text: str, *, tty: bool) -> None:
        """Show a progress line: rewritten in place on a terminal, one line per call otherwise."""
        if tty:
            self.err.write("\r" + text.ljust(78))
            self._progress_open = True
        else:
            self.err.write(text + "\n")
        self.err.flush()

    def end_progress(self) -> None:
        """Finish an in-place progress line, so what follows starts on a line of its own."""
        if self._progress_open:
            self.err.write("\n")
            self.err.flush()
            self._progress_open = False


@dataclasses.dataclass(slots=True)
class ProgressMeter:
    """Turns job counts into a progress line: done/failed/total, rate over this run, ETA."""

    total: int
    started_at: float
    done_at_start: int
    clock: Callable[[], float] = time.monotonic

    def line(self, job: Job) -> str:
        """Return the progress line for the job as it is now."""
        elapsed = max(1e-6, self.clock() - self.started_at)
        made_now = max(0, job.ok + job.failed - self.done_at_start)
        rate = made_now / elapsed
        remaining = job.remaining
        eta = "--" if rate <= 0 else _duration(remaining / rate)
        pct = 100.0 * (job.ok + job.failed) / max(1, job.total)
        return (
            f"{job.ok + job.failed}/{job.total} ({pct:.0f}%)  done {job.ok}  failed {job.failed}  "
            f"{rate:.1f} img/s  ETA {eta}"
        )


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def peak_rss_bytes() -> int | None:
    """Return this process's peak resident set size (Linux `VmHWM`), or None where it cannot be read."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


# ---- arguments ---------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of `python -m bot batch|imagine`."""
    parser = argparse.ArgumentParser(prog="python -m bot", description="Peel without Discord.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", help="flash, pro, flash3 or a full Gemini model name")
        p.add_argument("--ar", help="aspect ratio, e.g. 16:9")
        p.add_argument("--size", help="image size: 512, 1K, 2K or 4K")
        p.add_argument("--seed", help="seed base")
        p.add_argument("--data", type=Path, default=None, help="data directory (ledger, store; default ./data)")
        p.add_argument("--concurrency", type=int, default=None, help="Gemini calls in flight (GEMINI_CONCURRENCY)")
        p.add_argument("--workers", type=int, default=None, help="embedded RunPod workers (LOCAL_WORKERS)")
        p.add_argument("--poll-interval", type=float, default=None, help="seconds between RunPod polls")
        p.add_argument("--json", action="store_true", help="end with a JSON summary line on stdout")
        p.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")

    batch = sub.add_parser("batch", help="run one prompt over every image of a ZIP")
    batch.add_argument("input", type=Path, help="the ZIP of input images")
    batch.add_argument("--prompt", required=True, help="the prompt; may carry --ar/--seed/--no/--model/--size")
    batch.add_argument("--out", type=Path, default=Path("results.zip"), help="where the results ZIP goes")
    batch.add_argument("--progress-every", type=float, default=5.0, help="seconds between progress lines (no TTY)")
    common(batch)

    imagine = sub.add_parser("imagine", help="make a grid of images from a prompt")
    imagine.add_argument("prompt", help="the prompt; may carry --ar/--seed/--no/--model/--size/--n")
    imagine.add_argument("--ref", type=Path, action="append", default=[], help="a reference image (repeatable)")
    imagine.add_argument("--n", type=int, default=None, help="how many images: 1, 2 or 4 (default 4)")
    imagine.add_argument("--out", type=Path, default=Path("peel-imagine"), help="the directory for the images")
    common(imagine)
    return parser


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Prompt:
    """The prompt as the job gets it: the model's text and the parameters, CLI flags over inline ones."""

    parsed: ParsedPrompt
    params: PromptParams

    @property
    def text(self) -> str:
        """The text sent to the model (`--no` words rewritten into it)."""
        return self.parsed.model_prompt()

    def job_params(self, default_model: str, *, n: int = 1) -> JobParams:
        """Return the job's parameters."""
        return JobParams(
            model=self.params.model or default_model,
            aspect_ratio=self.params.aspect_ratio,
            image_size=self.params.image_size,
            seed=self.params.seed,
            n=n,
        )


def parse_job_prompt(prompt: str, args: argparse.Namespace) -> Prompt:
    """Parse the prompt's inline parameters, then the flags (which win), with every problem reported at once.

    Raises:
        UsageError: the prompt or a flag is malformed.
    """
    parsed = parse_prompt(prompt)
    flags = [f"--{name} {value}" for name in ("model", "ar", "size", "seed") if (value := getattr(args, name))]
    if getattr(args, "n", None) is not None:
        flags.append(f"--n {args.n}")
    flag_params = PromptParams()
    errors = list(parsed.errors)
    if flags:
        # The flags go through the same parser, so they are checked (and ratios snapped) exactly like inline ones.
        parsed_flags = parse_prompt("flags " + " ".join(flags))
        errors += [e for e in parsed_flags.errors if "prompt is empty" not in e]
        flag_params = parsed_flags.params
    if errors:
        raise UsageError("; ".join(errors))
    return Prompt(parsed=parsed, params=flag_params.merged_over(parsed.params))


def make_settings(args: argparse.Namespace) -> BotSettings:
    """Build the settings from the environment with the command's flags over them.

    Raises:
        UsageError: a setting or flag is invalid.
    """
    overrides: dict[str, object] = {}
    if args.data is not None:
        overrides["data_dir"] = args.data
    if args.concurrency is not None:
        overrides["gemini_concurrency"] = args.concurrency
    if args.workers is not None:
        overrides["local_workers"] = args.workers
    if args.poll_interval is not None:
        overrides["poll_interval_s"] = args.poll_interval
    try:
        return BotSettings(**overrides)  # type: ignore[arg-type]  # pydantic validates the values
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"invalid settings: {problems}") from exc


# ---- shared running ----------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def interruptible() -> AsyncIterator[asyncio.Event]:
    """Turn SIGINT and SIGTERM into an event (and restore the default handling afterwards)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _intake_summary(report: IntakeReport) -> list[str]:
    lines = [f"intake: {len(report.accepted)} image(s) accepted, {len(report.skipped)} skipped"]
    if report.skipped:
        counts = ", ".join(f"{reason.value} {n}" for reason, n in report.skip_counts().items())
        lines.append(f"  skipped by reason: {counts}")
        for entry in report.skipped[:10]:
            lines.append(f"  - {entry.name}: {entry.message}")
        if len(report.skipped) > 10:
            lines.append(f"  … and {len(report.skipped) - 10} more")
    return lines


async def _file_sha256(path: Path) -> str:
    def digest() -> str:
        h = hashlib.sha256()
        with path.open("rb") as fp:
            while block := fp.read(_HASH_BLOCK_BYTES):
                h.update(block)
        return h.hexdigest()

    return await asyncio.to_thread(digest)


def batch_key(zip_sha256: str, prompt: str, params: JobParams) -> str:
    """Return the batch's idempotency key: a hash of the input's content, the prompt and the parameters."""
    material = json.dumps({"zip": zip_sha256, "prompt": prompt, "params": params.to_json()}, sort_keys=True)
    return "cli:batch:" + hashlib.sha256(material.encode()).hexdigest()[:40]


# ---- batch -------------------------------------------------------------------------------------------------------


async def run_batch(args: argparse.Namespace, settings: BotSettings, console: Console) -> int:
    """Run `python -m bot batch` through the same `BatchService` as `/batch`; return the exit status."""
    path: Path = args.input
    if not await asyncio.to_thread(path.is_file):
        raise UsageError(f"{path}: no such file")
    prompt = parse_job_prompt(args.prompt, args)
    params = prompt.job_params(settings.gemini_model)
    for note in prompt.parsed.notes:
        console.note(f"note: {note}")
    key = batch_key(await _file_sha256(path), prompt.text, params)
    tty = console.err.isatty()
    resume_hint = "resume with: python -m bot " + shlex.join(args.argv)
    started = time.monotonic()

    async with interruptible() as stop, open_runtime(settings, serve_links=False) as runtime:
        service = BatchService(runtime, limits=_cli_limits(settings))
        job = await service.started_job(key)
        if job is not None:
            console.note(f"resuming job {job.id}: {job.ok} done, {job.failed} failed of {job.total}")
        else:
            job = await start_batch(service, path, args.prompt, prompt, key, settings, console)
        meter = ProgressMeter(total=job.total, started_at=time.monotonic(), done_at_start=job.ok + job.failed)
        last_line = 0.0

        def tick(current: Job) -> None:
            nonlocal last_line
            now = time.monotonic()
            if tty or now - last_line >= args.progress_every or current.status.is_final:
                last_line = now
                console.progress(meter.line(current), tty=tty)

        try:
            await runtime.workers_ready(stop)
            job = await runtime.run_until_final(job.id, stop, on_tick=tick, tick_s=0.25 if tty else 0.5)
        except StopRequestedError:
            console.note(f"interrupted; job {job.id} is kept in {settings.data_dir}.")
            console.note(resume_hint)
            return EXIT_INTERRUPTED
        console.end_progress()
        download = await service.save_zip(job, args.out)

    elapsed = time.monotonic() - started
    made_now = max(0, job.ok + job.failed - meter.done_at_start)
    console.say(
        f"job {job.id} {job.status.value}: {job.ok} made, {job.failed} failed, {job.cancelled} cancelled "
        f"of {job.total} in {elapsed:.1f}s; results: {args.out} ({download.size:,} bytes)"
    )
    errors = _error_summary(download.rows)
    if errors:
        console.say(f"failures by code: {errors}")
    if args.json:
        summary = {
            "job_id": job.id,
            "status": job.status.value,
            "total": job.total,
            "ok": job.ok,
            "failed": job.failed,
            "made_this_run": made_now,
            "elapsed_s": round(elapsed, 3),
            "out": str(args.out),
            "peak_rss_bytes": peak_rss_bytes(),
        }
        console.say(json.dumps(summary))
    return EXIT_OK if job.ok == job.total else EXIT_SOME_FAILED


def _cli_limits(settings: BotSettings) -> BatchLimits:
    """The CLI's batch caps: one machine, one user; only the size of one batch is capped."""
    unbounded = sys.maxsize
    return BatchLimits(
        max_items=settings.batch_max_items,
        max_running_per_user=unbounded,
        max_running_per_guild=unbounded,
        max_items_per_guild=unbounded,
    )


def _error_summary(rows: Sequence[ManifestRow]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        if row.status not in (RowStatus.OK, RowStatus.SKIPPED):  # skipped entries were listed at intake
            code = row.error_code or row.status.value  # a cancelled row has no code
            counts[code] = counts.get(code, 0) + 1
    return ", ".join(f"{code} {n}" for code, n in sorted(counts.items()))


def cli_batch_request(text: str, prompt: Prompt, key: str) -> BatchRequest:
    """Return the `BatchRequest` the CLI plans: the CLI's owner, no guild, the flags as the command's options."""
    flags = prompt.params
    return BatchRequest(
        owner_id=CLI_OWNER,
        guild_id=None,
        channel_id=0,
        prompt=text,
        options=BatchOptions(
            model=flags.model, aspect_ratio=flags.aspect_ratio, image_size=flags.image_size, seed=flags.seed
        ),
        is_admin=True,  # the CLI's user runs the whole machine: no per-user caps
        idempotency_key=key,
    )


async def start_batch(
    service: BatchService,
    path: Path,
    args_prompt: str,
    prompt: Prompt,
    key: str,
    settings: BotSettings,
    console: Console,
) -> Job:
    """Plan the input ZIP (intake, limits) and start it as one batch job, as `/batch` does on Start."""

    def on_intake(report: IntakeReport) -> None:
        for line in _intake_summary(report):
            console.note(line)
        if len(report.accepted) > settings.batch_max_items:
            raise UsageError(f"{path}: {len(report.accepted)} images, over the limit of {settings.batch_max_items}")

    try:
        request = cli_batch_request(args_prompt, prompt, key)
        plan = await service.plan_from_file(path, request, source=path.name, on_intake=on_intake)
        result = await service.start(plan, group_id=None, is_admin=True)
    except InvalidRequestError as exc:
        raise UsageError(exc.user_message) from exc
    except BatchError as exc:
        raise UsageError(f"{path}: {exc.user_message}") from exc
    assert result.job is not None  # start raises BatchError when the job is refused
    console.note(f"job {result.job.id}: {result.job.total} item(s) submitted")
    return result.job


# ---- imagine -----------------------------------------------------------------------------------------------------


async def run_imagine(args: argparse.Namespace, settings: BotSettings, console: Console) -> int:
    """Run `python -m bot imagine` through `GenerationService`, as `/imagine` does; return the exit status."""
    prompt = parse_job_prompt(args.prompt, args)
    n = prompt.params.grid_size or 4
    for ref in args.ref:
        if not await asyncio.to_thread(ref.is_file):
            raise UsageError(f"{ref}: no such file")
    out: Path = args.out
    async with interruptible() as stop, open_runtime(settings, serve_links=False) as runtime:
        service = generation_service(runtime)
        try:
            bodies = [(ref.name, await asyncio.to_thread(ref.read_bytes)) for ref in args.ref]
            ref_keys = await service.take_references(bodies)
            prepared = await service.imagine(
                args.prompt,
                Origin(user_id=CLI_OWNER, is_admin=True),
                ref_keys=ref_keys,
                overrides=dataclasses.replace(prompt.params, grid_size=n),
            )
            result = (await service.submit(prepared)).result
        except (GenerationError, InvalidRequestError) as exc:
            raise UsageError(exc.user_message) from exc
        if result.job is None:
            raise UsageError(f"{REFUSAL_TITLE}: {result.message}")
        console.note(f"job {result.job.id}: making {n} image(s)")
        try:
            job = await runtime.run_until_final(result.job.id, stop, tick_s=0.1)
        except StopRequestedError:
            console.note(f"interrupted; job {result.job.id} was not finished")
            return EXIT_INTERRUPTED
        await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
        images: list[bytes | None] = []
        for item, data in await service.outputs(job.id):
            images.append(data)
            if data is None:
                code = item.error_code or NOT_MADE
                console.note(f"image {item.index + 1} failed: {code} {item_error_message(code)}")
                continue
            target = out / f"{job.id}_{item.index + 1}.png"
            await asyncio.to_thread(target.write_bytes, data)
            console.say(str(target))
        if any(images):
            grid_path = out / f"{job.id}_grid.png"
            await asyncio.to_thread(_save_grid, images, grid_path)
            console.say(str(grid_path))
    return EXIT_OK if job.ok == job.total else EXIT_SOME_FAILED


def _save_grid(images: Sequence[bytes | None], path: Path) -> None:
    compose_grid(images).save(path, "PNG")


# ---- entry -------------------------------------------------------------------------------------------------------


def configure_logging(verbosity: int) -> None:
    """Log warnings (or more with -v) to stderr."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbosity < 2:
        for noisy in ("aiohttp.access", "local.runpod.worker"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str]) -> int:
    """Run a headless command (`batch` or `imagine`); return the process's exit status."""
    console = Console(sys.stdout, sys.stderr)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage and 0 for --help
        return int(exc.code or 0)
    args.argv = argv
    configure_logging(args.verbose)
    try:
        settings = make_settings(args)
        command = run_batch if args.command == "batch" else run_imagine
        return asyncio.run(command(args, settings, console))
    except UsageError as exc:
        console.note(f"error: {exc}")
        return EXIT_USAGE
    except (LedgerDamagedError, LedgerTooNewError) as exc:
        console.note(f"error: {exc.user_message}")
        return EXIT_LEDGER_DAMAGED
    except KeyboardInterrupt:
        console.note("interrupted")
        return EXIT_INTERRUPTED
