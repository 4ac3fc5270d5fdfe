"""`python -m bot batch INPUT.zip --prompt "…"`: plan and start the ZIP through `BatchService`, as `/batch` does.

The dispatcher runs until the job is final; the batch's ZIP (outputs and both manifests) is written to `--out`. The
job's idempotency key hashes the input's content, the prompt and the parameters, so the same command run again
finds the same job and goes on with it.
"""

import argparse
import asyncio
import hashlib
import json
import shlex
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path

from bot.app import IntakeReport, InvalidRequestError
from bot.app.batches import BatchService
from bot.app.batchplan import BatchError, BatchOptions, BatchRequest, plan_summary
from bot.app.runtime import StopRequestedError, open_runtime
from bot.cli.args import CLI_OWNER, EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, Prompt, UsageError, parse_job_prompt
from bot.cli.console import Console, ProgressMeter, interruptible, peak_rss_bytes
from bot.core.batch import BatchLimits, Speed
from bot.core.manifest import ItemStatus as RowStatus
from bot.core.manifest import ManifestRow
from bot.core.models import Job, JobParams
from bot.core.render import RELAX_ETA, relax_line, relax_trouble_line
from bot.settings import BotSettings

_HASH_BLOCK_BYTES = 1024 * 1024
_SAMPLE_FROM_SETTINGS = 0  # `--sample` without a number: BATCH_SAMPLE_SIZE


def _intake_summary(report: IntakeReport) -> list[str]:
    texts = f", {len(report.texts)} text file(s)" if report.texts else ""
    lines = [f"intake: {len(report.accepted)} image(s) accepted, {len(report.skipped)} skipped{texts}"]
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


def batch_key(
    zip_sha256: str, prompt: str, params: JobParams, refs: Sequence[str] = (), *, repeat: int | None = None
) -> str:
    """Return the batch's idempotency key: a hash of the input, the prompt, the parameters and the references.

    `refs` are the SHA-256s of the shared references and `repeat` the `--repeat` count; each counts only when
    given, so the keys of batches started without them stay what they were.
    """
    fields: dict[str, object] = {"zip": zip_sha256, "prompt": prompt, "params": params.to_json()}
    if refs:
        fields["refs"] = list(refs)
    if repeat is not None:
        fields["repeat"] = repeat
    material = json.dumps(fields, sort_keys=True)
    return "cli:batch:" + hashlib.sha256(material.encode()).hexdigest()[:40]


class NotStartedError(Exception):
    """The user said no to the plan: nothing was queued or charged."""


class RestHeldError(Exception):
    """The user said no to "Start the rest" after a trial: the job is kept, its other items held."""


async def run_batch(args: argparse.Namespace, settings: BotSettings, console: Console) -> int:
    """Run `python -m bot batch` through the same `BatchService` as `/batch`; return the exit status."""
    path: Path = args.input
    if not await asyncio.to_thread(path.is_file):
        raise UsageError(f"{path}: no such file")
    prompt = parse_job_prompt(args.prompt, args, allow_empty=True)
    # A relax batch is another job than a fast one of the same input (its key holds the speed only when relax, so
    # the keys of fast batches stay what they were).
    relax = args.relax if args.relax is not None else settings.batch_default_speed is Speed.RELAX
    params = replace(prompt.job_params(settings.gemini_model), relax=relax)
    for note in prompt.parsed.notes:
        console.note(f"note: {note}")
    refs = await _read_refs(args.ref)
    ref_hashes = [hashlib.sha256(data).hexdigest() for _, data in refs]
    # A permutation prompt is keyed as typed: its first expansion alone would not tell it from its neighbours.
    text = prompt.text if prompt.expansions == 1 else " ".join(args.prompt.split())
    key = batch_key(await _file_sha256(path), text, params, ref_hashes, repeat=prompt.params.repeat)
    resume_hint = "resume with: python -m bot " + shlex.join(args.argv)
    started = time.monotonic()

    async with interruptible() as stop, open_runtime(settings, serve_links=False) as runtime:
        service = BatchService(runtime, limits=_cli_limits(settings))
        job = await service.started_job(key)
        plan_s: float | None = None  # from reading the ZIP to the job queued (the question's wait left out)
        if job is not None:
            console.note(f"resuming job {job.id}: {job.ok} done, {job.failed} failed of {job.total}")
        else:
            trial = _trial_size(args, settings)

            waited = 0.0

            async def confirm(question: str) -> bool:
                nonlocal waited
                asked_at = time.monotonic()
                try:
                    return await ask(console, args, question, stop)
                finally:
                    waited = time.monotonic() - asked_at

            planning_at = time.monotonic()
            try:
                job = await start_batch(
                    service,
                    path,
                    args.prompt,
                    prompt,
                    key,
                    settings,
                    console,
                    refs=refs,
                    confirm=confirm,
                    trial=trial,
                    relax=relax,
                )
            except NotStartedError:
                console.note("not started: nothing was queued or charged")
                return EXIT_OK
            except StopRequestedError:  # Ctrl-C at the question
                console.note("interrupted; nothing was started")
                return EXIT_INTERRUPTED
            plan_s = time.monotonic() - planning_at - waited
        runner = BatchRunner(service, console, args, stop, done_at_start=job.ok + job.failed)
        try:
            await runtime.workers_ready(stop)
            job = await runtime.run_until_final(
                job.id,
                stop,
                on_tick=runner.tick,
                tick_s=0.5,
                give_up_after_s=args.give_up_after,
                on_delayed=console.delayed,
            )
        except StopRequestedError:
            console.note(f"interrupted; job {job.id} is kept in {settings.data_dir}.")
            console.note(resume_hint)
            return EXIT_INTERRUPTED
        except RestHeldError:
            console.note(f"the rest of job {job.id} is held, kept in {settings.data_dir}; {resume_hint}")
            return EXIT_OK
        await runner.show(job, final=True)
        console.end_progress()
        download = await service.save_zip(job, args.out)
        snapshot = await service.snapshot(job.id)
        cost = snapshot.progress.cost_usd if snapshot is not None else 0.0
        recorded = await service.job_cost(job.id)

    elapsed = time.monotonic() - started
    made_now = max(0, job.ok + job.failed - runner.meter.done_at_start)
    mode = "relax, at Gemini's batch price" if job.params.relax else "fast"
    console.say(
        f"job {job.id} {job.status.value}: {job.ok} made, {job.failed} failed, {job.cancelled} cancelled "
        f"of {job.total} in {elapsed:.1f}s; {spent_text(recorded, cost, mode)}; results: {args.out} "
        f"({download.size:,} bytes)"
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
            "mode": Speed.RELAX.value if job.params.relax else Speed.FAST.value,
            "cost_usd": round(cost, 4),
            "recorded_cost_usd": None if recorded is None else round(recorded, 6),
            "elapsed_s": round(elapsed, 3),
            "out": str(args.out),
            "peak_rss_bytes": peak_rss_bytes(),
        }
        if plan_s is not None:
            summary["plan_s"] = round(plan_s, 3)
        console.say(json.dumps(summary))
    return EXIT_OK if job.ok == job.total else EXIT_SOME_FAILED


def spent_text(recorded: float | None, cost: float, mode: str) -> str:
    """Return what the batch cost: what the ledger recorded, else the price table's estimate, said as such.

    Recorded is Gemini's reported usage priced and RunPod time (`Ledger.job_cost`).
    """
    if recorded is None:
        return f"about ${cost:.2f} by the price table, no cost recorded ({mode})"
    return f"${recorded:.4f} spent, as recorded: Gemini's reported usage and RunPod time ({mode})"


async def ask(console: Console, args: argparse.Namespace, question: str, stop: asyncio.Event) -> bool:
    """Ask before spending: `--yes` answers yes; without it only a terminal may answer.

    Raises:
        UsageError: stdin is not a terminal and `--yes` was not given (a script never spends unasked).
    """
    if args.yes:
        console.note(f"{question} yes (--yes)")
        return True
    if not console.can_ask:
        raise UsageError(
            "nothing was started: stdin is not a terminal, so there is no one to ask before spending. "
            "Add --yes to start without asking."
        )
    return await console.ask(question, stop)


def _trial_size(args: argparse.Namespace, settings: BotSettings) -> int | None:
    """Return N of `--sample N` (`--sample` alone: BATCH_SAMPLE_SIZE), or None for no trial."""
    if args.sample is None:
        return None
    size = settings.batch_sample_size if args.sample == _SAMPLE_FROM_SETTINGS else args.sample
    if size < 1:
        raise UsageError("--sample takes a number of images, 1 or more")
    return int(size)


def sample_dir(out: Path) -> Path:
    """Return the folder a trial's images are written to: beside `--out`, named after it (`results-sample/`)."""
    return out.with_name(out.stem + "-sample")


class BatchRunner:
    """What the CLI does while a batch runs: the progress line, and after a trial its images and "Start the rest"."""

    def __init__(
        self,
        service: BatchService,
        console: Console,
        args: argparse.Namespace,
        stop: asyncio.Event,
        *,
        done_at_start: int,
    ) -> None:
        self._service, self._console, self._args, self._stop = service, console, args, stop
        self._tty = console.err.isatty()
        self._last_line = float("-inf")
        self.meter = ProgressMeter(started_at=time.monotonic(), done_at_start=done_at_start)

    async def tick(self, job: Job) -> None:
        """Show progress (redrawn on a terminal, every `--progress-every` s otherwise), or end a trial.

        Once a trial holds, its images are written and listed and the rest starts only when the user says so.
        """
        if (trial := await self._service.trial_over(job)) is not None:
            await self._show_trial(job, trial)
            return
        await self.show(job)

    async def show(self, job: Job, *, final: bool = False) -> None:
        """Write the progress line when it is due (always when `final`)."""
        now = time.monotonic()
        if not (self._tty or final or now - self._last_line >= self._args.progress_every):
            return
        self._last_line = now
        snapshot = await self._service.snapshot(job.id)
        progress = snapshot.progress if snapshot is not None else None
        failed = progress.failed + progress.blocked if progress is not None else job.failed
        cost = progress.cost_usd if progress is not None else 0.0
        # Gemini's Batch API sets a relax batch's pace: where Gemini is replaces a rate and an ETA of Peel's own.
        relax = None
        if progress is not None and progress.relax and not job.status.is_final:
            relax = f"{relax_line(progress.relax_status, waiting_s=progress.relax_waiting_s)} · ETA: {RELAX_ETA}"
            if progress.relax_trouble_s is not None:
                relax += f" · {relax_trouble_line(progress.relax_trouble_s)}"
        line = self.meter.line(job, failed=failed, cost_usd=cost, bar=self._tty, relax=relax)
        self._console.progress(line, tty=self._tty)

    async def _show_trial(self, job: Job, trial: int) -> None:
        """Write the trial's images beside `--out`, list them, and ask before making the rest.

        Raises:
            RestHeldError: the answer was no; the job stays paused with its other items held.
        """
        await self.show(job, final=True)
        folder = sample_dir(self._args.out)
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        self._console.note(f"the first {trial} image(s), as a trial:")
        for index, (name, data) in enumerate(await self._service.first_made(job, trial)):
            target = folder / f"{index + 1:02d}_{Path(name).stem}.png"
            await asyncio.to_thread(target.write_bytes, data)
            self._console.say(str(target))
        rest = job.total - trial
        question = f"Start the rest ({rest:,} image(s), about ${await self._service.rest_cost(job, trial):.2f})?"
        if not await ask(self._console, self._args, question, self._stop):
            raise RestHeldError
        await self._service.resume(job.id, rest=True)
        self._console.note(f"starting the other {rest:,} image(s)")


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


async def _read_refs(paths: Sequence[Path]) -> tuple[tuple[str, bytes], ...]:
    """Read the `--ref` images as (name, bytes); the plan checks them through the intake."""
    refs = []
    for ref in paths:
        if not await asyncio.to_thread(ref.is_file):
            raise UsageError(f"{ref}: no such file")
        refs.append((ref.name, await asyncio.to_thread(ref.read_bytes)))
    return tuple(refs)


def cli_batch_request(
    text: str, prompt: Prompt, key: str, refs: tuple[tuple[str, bytes], ...] = (), *, relax: bool | None = None
) -> BatchRequest:
    """Return the `BatchRequest` the CLI plans: the CLI's owner, no guild, the flags as the command's options."""
    flags = prompt.flags  # the inline parameters are the service's to read, per `{a, b}` expansion
    return BatchRequest(
        owner_id=CLI_OWNER,
        guild_id=None,
        channel_id=0,
        prompt=text,
        options=BatchOptions(
            model=flags.model,
            aspect_ratio=flags.aspect_ratio,
            image_size=flags.image_size,
            seed=flags.seed,
            repeat=flags.repeat,
            relax=relax,
        ),
        is_admin=True,  # the CLI's user runs the whole machine: no per-user caps
        idempotency_key=key,
        refs=refs,
    )


async def start_batch(
    service: BatchService,
    path: Path,
    args_prompt: str,
    prompt: Prompt,
    key: str,
    settings: BotSettings,
    console: Console,
    *,
    refs: tuple[tuple[str, bytes], ...] = (),
    confirm: Callable[[str], Awaitable[bool]] | None = None,
    trial: int | None = None,
    relax: bool | None = None,
) -> Job:
    """Plan the input ZIP (intake, limits), show the plan, and start it as one batch job, as `/batch` does on Start.

    Args:
        service: the batch service.
        path: the input ZIP.
        args_prompt: the command's prompt as typed (the default, or a template).
        prompt: the prompt parsed, with the flags.
        key: the job's idempotency key (`batch_key`).
        settings: the settings (the batch size cap).
        console: where the intake report and the plan are written.
        refs: the shared reference images (`--ref`), as (file name, bytes), sent with every item.
        confirm: asked "Start N images for about $X?" after the plan is shown (None: start without asking).
        trial: run only this many items first ("Try on N"); the rest waits for `BatchService.resume`.
        relax: `--relax` / `--fast` (None: `BATCH_DEFAULT_SPEED`).

    Raises:
        NotStartedError: `confirm` said no; the plan is forgotten.
        UsageError: the input or the prompt is refused, or `confirm` could not ask.
    """

    def on_intake(report: IntakeReport) -> None:
        for line in _intake_summary(report):
            console.note(line)
        if len(report.accepted) > settings.batch_max_items:
            raise UsageError(f"{path}: {len(report.accepted)} images, over the limit of {settings.batch_max_items}")

    try:
        request = cli_batch_request(args_prompt, prompt, key, refs, relax=relax)
        plan = await service.plan_from_file(path, request, source=path.name, on_intake=on_intake)
        estimate = service.estimate(plan)
        for line in plan_summary(plan, estimate, markdown=False).splitlines():
            console.note(line)  # the plan as /batch shows it: options, prompt source, skipped names, cost, time
        if confirm is not None:
            agreed = False
            try:
                agreed = await confirm(_start_question(len(plan.items), estimate.cost_usd, trial, relax=plan.relax))
            finally:
                if not agreed:  # no, no one to ask, or interrupted: the plan is not left pending
                    await service.discard_plan(plan.id)
            if not agreed:
                raise NotStartedError
        result = await service.start(plan, group_id=None, is_admin=True, trial=trial)
    except InvalidRequestError as exc:
        raise UsageError(exc.user_message) from exc
    except BatchError as exc:
        raise UsageError(f"{path}: {exc.user_message}") from exc
    assert result.job is not None  # start raises BatchError when the job is refused
    console.note(f"job {result.job.id}: {result.job.total} item(s) submitted")
    return result.job


def _start_question(items: int, cost_usd: float | None, trial: int | None, *, relax: bool = False) -> str:
    """Return the question asked before spending: the whole batch, or its trial first (in relax: saying so)."""

    def about(share: float) -> str:
        mode = " in relax" if relax else ""
        return "" if cost_usd is None else f" for about ${cost_usd * share:.2f}{mode}"

    if trial is not None and 0 < trial < items:
        return f"Try {trial} of {items:,} images first{about(trial / items)}, then ask before the rest?"
    return f"Start {items:,} images{about(1.0)}?"


__all__ = [
    "BatchRunner",
    "NotStartedError",
    "RestHeldError",
    "ask",
    "batch_key",
    "cli_batch_request",
    "run_batch",
    "sample_dir",
    "start_batch",
]
