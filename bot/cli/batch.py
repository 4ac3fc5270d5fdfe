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
from collections.abc import Sequence
from pathlib import Path

from bot.app import IntakeReport, InvalidRequestError
from bot.app.batches import BatchService
from bot.app.batchplan import BatchError, BatchOptions, BatchRequest, plan_summary
from bot.app.runtime import StopRequestedError, open_runtime
from bot.cli.args import CLI_OWNER, EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, Prompt, UsageError, parse_job_prompt
from bot.cli.console import Console, ProgressMeter, interruptible, peak_rss_bytes
from bot.core.batch import BatchLimits
from bot.core.manifest import ItemStatus as RowStatus
from bot.core.manifest import ManifestRow
from bot.core.models import Job, JobParams
from bot.settings import BotSettings

_HASH_BLOCK_BYTES = 1024 * 1024


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


async def run_batch(args: argparse.Namespace, settings: BotSettings, console: Console) -> int:
    """Run `python -m bot batch` through the same `BatchService` as `/batch`; return the exit status."""
    path: Path = args.input
    if not await asyncio.to_thread(path.is_file):
        raise UsageError(f"{path}: no such file")
    prompt = parse_job_prompt(args.prompt, args, allow_empty=True)
    params = prompt.job_params(settings.gemini_model)
    for note in prompt.parsed.notes:
        console.note(f"note: {note}")
    refs = await _read_refs(args.ref)
    ref_hashes = [hashlib.sha256(data).hexdigest() for _, data in refs]
    # A permutation prompt is keyed as typed: its first expansion alone would not tell it from its neighbours.
    text = prompt.text if prompt.expansions == 1 else " ".join(args.prompt.split())
    key = batch_key(await _file_sha256(path), text, params, ref_hashes, repeat=prompt.params.repeat)
    tty = console.err.isatty()
    resume_hint = "resume with: python -m bot " + shlex.join(args.argv)
    started = time.monotonic()

    async with interruptible() as stop, open_runtime(settings, serve_links=False) as runtime:
        service = BatchService(runtime, limits=_cli_limits(settings))
        job = await service.started_job(key)
        if job is not None:
            console.note(f"resuming job {job.id}: {job.ok} done, {job.failed} failed of {job.total}")
        else:
            job = await start_batch(service, path, args.prompt, prompt, key, settings, console, refs=refs)
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
            job = await runtime.run_until_final(
                job.id,
                stop,
                on_tick=tick,
                tick_s=0.25 if tty else 0.5,
                give_up_after_s=args.give_up_after,
                on_delayed=console.delayed,
            )
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


async def _read_refs(paths: Sequence[Path]) -> tuple[tuple[str, bytes], ...]:
    """Read the `--ref` images as (name, bytes); the plan checks them through the intake."""
    refs = []
    for ref in paths:
        if not await asyncio.to_thread(ref.is_file):
            raise UsageError(f"{ref}: no such file")
        refs.append((ref.name, await asyncio.to_thread(ref.read_bytes)))
    return tuple(refs)


def cli_batch_request(text: str, prompt: Prompt, key: str, refs: tuple[tuple[str, bytes], ...] = ()) -> BatchRequest:
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
) -> Job:
    """Plan the input ZIP (intake, limits) and start it as one batch job, as `/batch` does on Start."""

    def on_intake(report: IntakeReport) -> None:
        for line in _intake_summary(report):
            console.note(line)
        if len(report.accepted) > settings.batch_max_items:
            raise UsageError(f"{path}: {len(report.accepted)} images, over the limit of {settings.batch_max_items}")

    try:
        request = cli_batch_request(args_prompt, prompt, key, refs)
        plan = await service.plan_from_file(path, request, source=path.name, on_intake=on_intake)
        for line in plan_summary(plan, service.estimate(plan), markdown=False).splitlines():
            console.note(line)  # the plan as /batch shows it: options, prompt source, skipped names, cost, time
        result = await service.start(plan, group_id=None, is_admin=True)
    except InvalidRequestError as exc:
        raise UsageError(exc.user_message) from exc
    except BatchError as exc:
        raise UsageError(f"{path}: {exc.user_message}") from exc
    assert result.job is not None  # start raises BatchError when the job is refused
    console.note(f"job {result.job.id}: {result.job.total} item(s) submitted")
    return result.job


__all__ = ["batch_key", "cli_batch_request", "run_batch", "start_batch"]
