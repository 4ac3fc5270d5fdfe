"""`BatchService` below Discord: plan, limits, start, progress and the ZIP, for `/batch` and for the CLI."""

import argparse
import asyncio
import csv
import dataclasses
import io
import zipfile
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.app.batches import BatchService
from bot.app.batchplan import NOTE_PLAN, NOTE_SKIPPED, BatchError, BatchRequest
from bot.app.runtime import Runtime
from bot.cli.args import parse_job_prompt
from bot.cli.batch import batch_key, start_batch
from bot.cli.console import Console
from bot.core.batch import BatchLimits
from bot.core.budgets import BudgetHold, Limit, Period, ScopeKind, micros, next_reset
from bot.core.models import Group, ItemInputs, JobKind, JobParams, JobRequest, JobStatus, NewItem, UserId
from bot.core.pricing import cost_of
from bot.core.render import batch_progress_text
from bot.dispatch import SubmitStatus
from bot.ledger import Ledger
from bot.settings import BotSettings
from bot.web import StableLinks
from storage.memory import MemoryStore
from tests.e2e.bot._batchzips import make_zip
from tests.fakes.clock import FakeClock
from tests.fakes.gateway import MemoryRunpod
from tests.protocol.dispatcher.conftest import batch
from tests.protocol.services.conftest import RunToEnd
from worker.contract import ErrorCode, TokenUsage

PROMPT = "make it watercolour --ar 3:2 --seed 7"
ALICE = 42


async def write_zip(path: Path, count: int, *, extras: dict[str, bytes] | None = None) -> Path:
    data = await asyncio.to_thread(make_zip, count, extras=extras)
    await asyncio.to_thread(path.write_bytes, data)
    return path


def slash_request(prompt: str = PROMPT, *, owner: int = ALICE, is_admin: bool = False) -> BatchRequest:
    """What the `/batch` cog asks for: a user in a guild's channel."""
    return BatchRequest(owner_id=owner, guild_id=7, channel_id=70, prompt=prompt, is_admin=is_admin)


async def manifest_of(store: MemoryStore, key: str) -> tuple[list[str], list[dict[str, str]]]:
    """Return the archive's member names (its job-named folder left out) and its manifest.csv rows."""
    archive = zipfile.ZipFile(io.BytesIO(await store.get_bytes(key)))
    names = sorted(name.split("/", 1)[-1] for name in archive.namelist())
    csv_name = next(name for name in archive.namelist() if name.endswith("manifest.csv"))
    rows = list(csv.DictReader(io.StringIO(archive.read(csv_name).decode())))
    return names, rows


async def test_cli_and_slash_batch_write_the_same_manifest_when_given_the_same_zip_and_prompt(
    group: Group, runtime: Runtime, store: MemoryStore, run_to_end: RunToEnd, runpod: MemoryRunpod, tmp_path: Path
) -> None:
    path = await write_zip(tmp_path / "in.zip", 5, extras={"notes.txt": b"not an image", "bad.png": b"\x89PNG?"})
    service = BatchService(runtime)

    # /batch: the cog plans the attachment, then Start queues it in the thread's group.
    slash_plan = await service.plan_from_file(path, slash_request(), source="in.zip")
    slash = await service.start(slash_plan, group_id=group.id, is_admin=False)
    assert slash.job is not None
    slash_job = await run_to_end(slash.job.id)
    slash_zip = await service.build_download(slash_job)

    # python -m bot batch in.zip --prompt "…": the CLI's own request, through the same service.
    prompt = parse_job_prompt(PROMPT, argparse.Namespace(model=None, ar=None, size=None, seed=None))
    key = batch_key("0" * 64, prompt.text, prompt.job_params(runtime.settings.gemini_model))
    err = io.StringIO()
    console = Console(io.StringIO(), err)
    cli_job = await start_batch(service, path, PROMPT, prompt, key, runtime.settings, console)
    cli_job = await run_to_end(cli_job.id)
    cli_zip = await service.save_zip(cli_job, tmp_path / "results.zip")

    assert cli_job.id != slash_job.id
    assert (cli_job.prompt, cli_job.params) == (slash_job.prompt, slash_job.params)
    slash_names, slash_rows = await manifest_of(store, slash_zip.key)
    cli_names, cli_rows = await manifest_of(store, cli_zip.key)
    assert cli_names == slash_names
    assert list(cli_rows[0]) == list(slash_rows[0])  # the same columns, in the same order
    assert cli_rows == slash_rows  # rows, codes and file names (no job id or time is in the CSV)
    assert [r["status"] for r in cli_rows].count("skipped") == 2
    assert await asyncio.to_thread((tmp_path / "results.zip").read_bytes) == await store.get_bytes(cli_zip.key)
    assert "intake: 5 image(s) accepted, 1 skipped, 1 text file(s)" in err.getvalue()
    # The CLI prints the plan as /batch shows it, without Discord's markup.
    printed = err.getvalue()
    assert "Batch ready: make it watercolour --ar 3:2 --seed 7" in printed
    assert "⚙️ Model gemini-2.5-flash-image · aspect ratio 3:2 · size 1K · seed 7" in printed
    assert "📝 Prompts: one prompt" in printed
    assert "notes.txt: a .txt caption with no image of the same name beside it" in printed and "**" not in printed


async def test_started_batch_keeps_its_plan_as_a_note_of_the_job_and_forgets_the_pending_one(
    group: Group, runtime: Runtime, ledger: Ledger, store: MemoryStore, tmp_path: Path
) -> None:
    service = BatchService(runtime)
    plan = await service.plan_from_file(await write_zip(tmp_path / "in.zip", 3), slash_request(), source="in.zip")
    assert await service.get_plan(plan.id) == plan

    result = await service.start(plan, group_id=group.id, is_admin=False)

    assert result.job is not None and result.job.total == 3
    # The job keeps the plan without its items: those are the job's items in the ledger.
    assert await ledger.note(result.job.id, NOTE_PLAN) == {**plan.to_json(), "items": []}
    assert await service.plan_of(result.job.id) == dataclasses.replace(plan, items=())
    items = await ledger.items(result.job.id)
    assert [(i.inputs.ref_keys[0], i.inputs.source_name) for i in items] == [(p.key, p.name) for p in plan.items]
    assert await service.get_plan(plan.id) is None
    assert [k async for k in store.list("batches/pending/")] == []


async def test_start_queues_once_when_start_is_clicked_twice(group: Group, runtime: Runtime, tmp_path: Path) -> None:
    service = BatchService(runtime)
    plan = await service.plan_from_file(await write_zip(tmp_path / "in.zip", 2), slash_request(), source="in.zip")

    first = await service.start(plan, group_id=group.id, is_admin=False)
    second = await service.start(plan, group_id=group.id, is_admin=False)

    assert first.job is not None and second.job is not None
    assert second.status is SubmitStatus.DUPLICATE and second.job.id == first.job.id
    assert await service.started_job(plan.id) == first.job


async def test_plan_is_refused_when_the_user_already_runs_the_most_batches(
    group: Group, runtime: Runtime, tmp_path: Path
) -> None:
    service = BatchService(
        runtime,
        limits=BatchLimits(max_items=100, max_running_per_user=1, max_running_per_guild=9, max_items_per_guild=900),
    )
    path = await write_zip(tmp_path / "in.zip", 2)
    plan = await service.plan_from_file(path, slash_request(), source="in.zip")
    await service.start(plan, group_id=group.id, is_admin=False)

    with pytest.raises(BatchError, match="already have 1 batches running"):
        await service.plan_from_file(path, slash_request(), source="in.zip")
    assert (await service.plan_from_file(path, slash_request(is_admin=True), source="in.zip")).items


async def test_plan_is_refused_when_the_prompt_or_the_zip_is_unusable(runtime: Runtime, tmp_path: Path) -> None:
    service = BatchService(runtime)
    with pytest.raises(BatchError, match="Fix the prompt first"):
        await service.plan_from_file(await write_zip(tmp_path / "a.zip", 1), slash_request("x --ar 0:0"), source="a")
    with pytest.raises(BatchError, match="no usable image"):
        empty = await write_zip(tmp_path / "b.zip", 0, extras={"a.txt": b"text"})
        await service.plan_from_file(empty, slash_request(), source="b")


async def test_snapshot_counts_blocks_apart_from_failures_and_retry_requeues_the_failed(
    group: Group, runtime: Runtime, runpod: MemoryRunpod, tmp_path: Path
) -> None:
    service = BatchService(runtime)
    plan = await service.plan_from_file(await write_zip(tmp_path / "in.zip", 4), slash_request(), source="in.zip")
    result = await service.start(plan, group_id=group.id, is_admin=False)
    assert result.job is not None
    await runtime.dispatcher.run_once()
    for job in runpod.active():
        await runpod.finish(job.id, errors=dict.fromkeys(job.indices[:1], ErrorCode.SAFETY))
    await runtime.dispatcher.run_once()

    snapshot = await service.snapshot(result.job.id)

    assert snapshot is not None and snapshot.job.status.is_final
    assert (snapshot.progress.done, snapshot.progress.blocked, snapshot.progress.failed) == (3, 1, 0)
    _job, requeued = await service.retry_failed(result.job.id)
    assert requeued == 0  # a safety block is not retried


async def test_snapshot_cost_is_the_recorded_cost_of_the_usage_reported_and_the_runpod_time(
    group: Group, runtime: Runtime, runpod: MemoryRunpod, tmp_path: Path
) -> None:
    service = BatchService(runtime)
    plan = await service.plan_from_file(await write_zip(tmp_path / "in.zip", 3), slash_request(), source="in.zip")
    result = await service.start(plan, group_id=group.id, is_admin=False)
    assert result.job is not None
    await runtime.dispatcher.run_once()
    usage = TokenUsage(prompt_tokens=300, output_tokens=1290, image_output_tokens=1290)  # a reference at 258 tokens
    for job in runpod.active():
        await runpod.finish(job.id, usage=usage, execution_ms=2_000)
    await runtime.dispatcher.run_once()

    snapshot = await service.snapshot(result.job.id)

    assert snapshot is not None and snapshot.progress.done == 3
    unit = cost_of(plan.params.model, usage, batch=False)
    assert unit is not None
    runpod_s = 2.0 * len(runpod.jobs)
    assert snapshot.progress.cost_usd == pytest.approx(3 * unit + runpod_s * runtime.settings.runpod_price_per_s)
    assert snapshot.progress.cost_usd != pytest.approx(3 * 0.039)  # not the estimate: $0.039 is 1290 tokens rounded


async def test_samples_are_taken_once_when_enough_images_are_made(
    group: Group, runtime: Runtime, runpod: MemoryRunpod, tmp_path: Path
) -> None:
    service = BatchService(runtime)
    plan = await service.plan_from_file(await write_zip(tmp_path / "in.zip", 6), slash_request(), source="in.zip")
    result = await service.start(plan, group_id=group.id, is_admin=False)
    assert result.job is not None
    await runtime.dispatcher.run_once()
    first = runpod.active()[0]
    await runpod.progress(first.id, first.indices[:4])
    await runtime.dispatcher.run_once()
    job = await runtime.ledger.get_job(result.job.id)
    assert job is not None and job.ok >= 4 and not job.status.is_final

    samples = await service.take_samples(job)

    assert samples is not None and [name for name, _ in samples] == [f"photos/img-{i:05d}.png" for i in range(4)]
    assert await service.take_samples(job) is None


async def test_rows_list_the_skipped_entries_when_an_older_cli_kept_them_under_its_own_note(
    runtime: Runtime, ledger: Ledger, run_to_end: RunToEnd
) -> None:
    request = JobRequest(
        kind=JobKind.BATCH,
        owner_id=UserId(0),
        prompt="p",
        params=JobParams(model=runtime.settings.gemini_model),
        items=(NewItem(inputs=ItemInputs(source_name="a.png")),),
        idempotency_key="cli:batch:old",
        is_admin=True,
        notes={NOTE_SKIPPED: [["notes.txt", "not_an_image"]]},
    )
    result = await runtime.dispatcher.submit(request)
    assert result.job is not None
    job = await run_to_end(result.job.id)

    rows = [row async for row in BatchService(runtime).rows(job)]

    assert [(r.source_name, r.status.value) for r in rows] == [("a.png", "ok"), ("notes.txt", "skipped")]


async def test_fresh_link_rebuilds_the_zip_when_the_archive_is_gone(
    group: Group, runtime: Runtime, store: MemoryStore, run_to_end: RunToEnd, tmp_path: Path, settings: BotSettings
) -> None:
    service = BatchService(runtime)
    plan = await service.plan_from_file(await write_zip(tmp_path / "in.zip", 2), slash_request(), source="in.zip")
    result = await service.start(plan, group_id=group.id, is_admin=False)
    assert result.job is not None
    job = await run_to_end(result.job.id)
    download = await service.build_download(job)
    assert (await service.fresh_link(job)).startswith("http://127.0.0.1:9/")

    await store.delete(download.key)
    await service.fresh_link(job)

    assert [info.key async for info in store.list("zips/")] != []


async def test_the_zip_link_and_new_link_are_stable_links_to_the_archive_when_users_reach_the_web_server(
    group: Group, runtime: Runtime, store: MemoryStore, run_to_end: RunToEnd, tmp_path: Path
) -> None:
    stable = StableLinks(b"test-secret", "https://peel.example.com")
    service = BatchService(dataclasses.replace(runtime, stable_links=stable))
    plan = await service.plan_from_file(await write_zip(tmp_path / "in.zip", 2), slash_request(), source="in.zip")
    result = await service.start(plan, group_id=group.id, is_admin=False)
    assert result.job is not None
    job = await run_to_end(result.job.id)

    download = await service.build_download(job)
    fresh = await service.fresh_link(job)

    for url in (download.url, fresh):
        assert url.startswith("https://peel.example.com/l/")
        target = stable.resolve(url.rpartition("/")[2])
        assert target is not None and (target.key, target.filename) == (download.key, f"peel-{job.id}.zip")
    await store.delete(download.key)  # the lifecycle rule removed it: New link writes it again, same name
    rebuilt = stable.resolve((await service.fresh_link(job)).rpartition("/")[2])
    assert rebuilt is not None and await store.exists(rebuilt.key)


async def test_intake_limits_set_in_the_environment_bound_the_zips_the_services_plan(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.app.services import Services

    monkeypatch.setenv("STORAGE_INTAKE_MAX_ENTRIES", "2")
    service = Services.of(runtime).batches
    with pytest.raises(BatchError):
        await service.plan_from_file(await write_zip(tmp_path / "three.zip", 3), slash_request(), source="three")
    monkeypatch.delenv("STORAGE_INTAKE_MAX_ENTRIES")
    plan = await Services.of(runtime).batches.plan_from_file(tmp_path / "three.zip", slash_request(), source="three")
    assert len(plan.items) == 3


async def test_snapshot_of_a_batch_paused_at_its_cap_names_the_cap_and_when_it_resets(
    runtime: Runtime, runpod: MemoryRunpod, clock: FakeClock
) -> None:
    service = BatchService(runtime)
    image = micros("0.039")  # one image of `batch`'s model at 1K
    tz = ZoneInfo("UTC")
    limits = (Limit(scope=ScopeKind.GUILD, period=Period.DAY, cap=3 * image),)
    # Its estimate (2 images) fitted the cap of 3; it holds 10, so it costs more than estimated and meets the cap.
    hold = BudgetHold(cost=2 * image, limits=limits, tz=tz)
    capped = await runtime.dispatcher.submit(dataclasses.replace(batch(10, owner=ALICE), guild_id=7, budget=hold))
    free = await runtime.dispatcher.submit(dataclasses.replace(batch(4, owner=ALICE + 1), guild_id=8))
    assert capped.job is not None and free.job is not None
    await runtime.dispatcher.pause(free.job.id)  # paused by its owner, under no cap
    for _ in range(5):
        await runtime.dispatcher.run_once()
        await runpod.finish_all()

    snapshot = await service.snapshot(capped.job.id)

    assert snapshot is not None and snapshot.job.status is JobStatus.PAUSED and snapshot.progress.done == 3
    resets = next_reset(clock.now(), Period.DAY, tz).strftime("%Y-%m-%d %H:%M UTC")
    line = snapshot.progress.budget_line
    assert line is not None and line.startswith("⛔ Paused at this server's daily budget of $0.117: $0.117 is spent")
    assert f"It resets at {resets}" in line and line in batch_progress_text(snapshot.progress)
    paused_by_owner = await service.snapshot(free.job.id)
    assert paused_by_owner is not None and paused_by_owner.progress.budget_line is None
