"""Choosing relax mode below Discord and the CLI: the option, the guild's default, the plan's prices, the job's params,
and "Retry failed" in the other mode as a new batch of the failed items."""

import argparse
import asyncio
import dataclasses
import io
from pathlib import Path

import pytest

from bot.app.batches import BatchService
from bot.app.batchplan import NOTE_PLAN, BatchError, BatchOptions, BatchRequest, plan_summary
from bot.app.runtime import Runtime
from bot.cli.args import parse_job_prompt
from bot.cli.batch import start_batch
from bot.cli.console import Console
from bot.core.batch import Speed
from bot.core.models import Group, JobId
from bot.core.relax import RelaxPhase, RelaxStatus
from bot.core.render import batch_progress_text
from bot.ledger import Ledger
from tests.e2e.bot._batchzips import make_zip
from tests.fakes.gateway import MemoryRunpod
from tests.protocol.services.test_batch_retry_refs import batch_with_failures
from worker.contract import ErrorCode

ALICE = 42


def request(*, relax: bool | None = None, guild_id: int | None = 7) -> BatchRequest:
    return BatchRequest(
        owner_id=ALICE, guild_id=guild_id, channel_id=70, prompt="make it blue", options=BatchOptions(relax=relax)
    )


async def zip_of(path: Path, count: int) -> Path:
    await asyncio.to_thread(path.write_bytes, await asyncio.to_thread(make_zip, count))
    return path


def with_settings(runtime: Runtime, **changes: object) -> BatchService:
    return BatchService(dataclasses.replace(runtime, settings=runtime.settings.model_copy(update=changes)))


async def test_a_relax_batch_is_planned_at_the_batch_price_and_started_as_a_relax_job(
    group: Group, runtime: Runtime, ledger: Ledger, tmp_path: Path
) -> None:
    service = BatchService(runtime)
    path = await zip_of(tmp_path / "in.zip", 4)

    plan = await service.plan_from_file(path, request(relax=True), source="in.zip")
    result = await service.start(plan, group_id=group.id, is_admin=False)

    text = plan_summary(plan, service.estimate(plan))
    assert "🐢 Relax: about $0.08 for 4 images (fast would be $0.16)" in text  # 4 x $0.0195, 4 x $0.039
    assert result.job is not None and result.job.params.relax
    note = await ledger.note(result.job.id, NOTE_PLAN)
    assert isinstance(note, dict) and note["params"]["relax"] is True


async def test_a_batch_runs_fast_unless_chosen_or_its_server_defaults_to_relax(
    runtime: Runtime, tmp_path: Path
) -> None:
    path = await zip_of(tmp_path / "in.zip", 2)
    plain, relax_here = BatchService(runtime), with_settings(runtime, relax_guilds=[7])
    relax_default = with_settings(runtime, batch_default_speed=Speed.RELAX)

    assert not (await plain.plan_from_file(path, request(), source="in.zip")).relax
    assert (await relax_here.plan_from_file(path, request(), source="in.zip")).relax
    assert not (await relax_here.plan_from_file(path, request(guild_id=8), source="in.zip")).relax
    assert not (await relax_here.plan_from_file(path, request(relax=False), source="in.zip")).relax  # chosen wins
    assert (await relax_default.plan_from_file(path, request(guild_id=None), source="in.zip")).relax


async def test_relax_is_refused_with_the_fix_where_the_bot_has_no_gemini_key_beside_a_runpod_endpoint(
    runtime: Runtime, tmp_path: Path
) -> None:
    path = await zip_of(tmp_path / "in.zip", 2)
    deployed = with_settings(runtime, runpod_endpoint_id="abc123", gemini_api_key=None)
    with pytest.raises(BatchError) as refused:
        await deployed.plan_from_file(path, request(relax=True), source="in.zip")
    assert refused.value.title == "Relax unavailable" and "speed:fast" in str(refused.value)
    fast = await deployed.plan_from_file(path, request(), source="in.zip")  # fast still plans
    assert not fast.relax and deployed.estimate(fast).other_cost_usd is None  # and offers no relax


async def test_retry_failed_in_relax_is_a_new_relax_batch_of_what_retry_failed_would_run(
    group: Group, runtime: Runtime, runpod: MemoryRunpod, tmp_path: Path
) -> None:
    service = BatchService(runtime)
    failed = {1: ErrorCode.SAFETY, 3: ErrorCode.UNAVAILABLE, 4: ErrorCode.EXPIRED, 5: ErrorCode.TOO_LARGE}
    job = await batch_with_failures(service, group, runtime, runpod, tmp_path / "in.zip", failed=failed)

    plan = await service.plan_retry(job.id, prompt=None, model=None, channel_id=70, is_admin=False, relax=True)

    assert plan.relax and plan.retry_of == job.id
    assert [i.name for i in plan.items] == ["photos/img-00003.png", "photos/img-00004.png"]  # not SAFETY, TOO_LARGE
    assert "the failed images of the batch, relax" in plan_summary(plan, service.estimate(plan))
    with pytest.raises(BatchError, match="Nothing changed"):  # the same speed, prompt and model: Retry failed
        await service.plan_retry(job.id, prompt=None, model=None, channel_id=70, is_admin=False, relax=False)


async def test_a_changed_retry_keeps_the_batchs_speed_unless_another_is_chosen(
    group: Group, runtime: Runtime, runpod: MemoryRunpod, tmp_path: Path
) -> None:
    # A fast batch: a relax one's items are the dispatcher's to send through Gemini's Batch API, not RunPod chunks.
    service = BatchService(runtime)
    job = await batch_with_failures(service, group, runtime, runpod, tmp_path / "in.zip", failed={2: ErrorCode.SAFETY})

    kept = await service.plan_retry(job.id, prompt=None, model="pro", channel_id=70, is_admin=False)
    relax = await service.plan_retry(
        job.id, prompt="make it red", model=None, channel_id=70, is_admin=False, relax=True
    )

    assert not kept.relax and relax.relax


async def test_the_cli_starts_a_relax_job_with_relax_and_says_both_prices(runtime: Runtime, tmp_path: Path) -> None:
    path = await zip_of(tmp_path / "in.zip", 2)
    prompt = parse_job_prompt("make it blue", argparse.Namespace(model=None, ar=None, size=None, seed=None))
    err = io.StringIO()
    questions: list[str] = []

    async def yes(question: str) -> bool:
        questions.append(question)
        return True

    job = await start_batch(
        BatchService(runtime), path, "make it blue", prompt, "cli:k", runtime.settings, Console(io.StringIO(), err),
        confirm=yes, relax=True,
    )  # fmt: skip

    assert job.params.relax
    assert "🐢 Relax: about $0.04 for 2 images (fast would be $0.08)" in err.getvalue()
    assert questions == ["Start 2 images for about $0.04 in relax?"]


async def test_a_relax_batchs_snapshot_shows_where_gemini_is_and_a_fast_ones_does_not_ask(
    group: Group, runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = BatchService(runtime)
    path = await zip_of(tmp_path / "in.zip", 3)
    held = RelaxStatus(phase=RelaxPhase.RUNNING, parts=1, sent=3, gemini_done=1, gemini_failed=0)
    asked: list[JobId] = []

    async def relax_status(job_id: JobId) -> RelaxStatus:
        asked.append(job_id)
        return held

    monkeypatch.setattr(runtime.dispatcher, "relax_status", relax_status)
    relax = await service.start(
        await service.plan_from_file(path, request(relax=True), source="in.zip"), group_id=group.id, is_admin=False
    )
    fast = await service.start(
        await service.plan_from_file(path, request(), source="in.zip"), group_id=group.id, is_admin=False
    )
    assert relax.job is not None and fast.job is not None

    relax_snapshot, fast_snapshot = await service.snapshot(relax.job.id), await service.snapshot(fast.job.id)

    assert relax_snapshot is not None and relax_snapshot.progress.relax_status == held
    assert "🐢 relax · Gemini running: 1/3 done" in batch_progress_text(relax_snapshot.progress)
    assert fast_snapshot is not None and not fast_snapshot.progress.relax and asked == [relax.job.id]
