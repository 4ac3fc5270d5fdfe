"""`BatchService`'s "Retry failed, changed…" and shared reference images, below Discord and the CLI.

A changed retry is a new batch in the same group holding copies of the failed items only, with the new model in
its chunks or the new prompt sent; shared references reach every item and are named in the plan.
"""

import asyncio
from pathlib import Path

import pytest

from bot.app.batches import NOTE_RETRY_OF, BatchService
from bot.app.batchplan import BatchError, BatchRequest, plan_summary
from bot.app.runtime import Runtime
from bot.core.models import Group, Job, JobId, JobStatus
from bot.core.params import resolve_model
from bot.ledger import Ledger
from tests.e2e.bot._batchzips import make_zip, tiny_png
from tests.fakes.gateway import MemoryRunpod
from tests.protocol.services.conftest import RunToEnd
from worker.contract import ErrorCode

ALICE = 42


def request(prompt: str = "make it watercolour", **kwargs: object) -> BatchRequest:
    return BatchRequest(owner_id=ALICE, guild_id=7, channel_id=70, prompt=prompt, **kwargs)  # type: ignore[arg-type]


async def zip_of(path: Path, count: int) -> Path:
    data = await asyncio.to_thread(make_zip, count)
    await asyncio.to_thread(path.write_bytes, data)
    return path


async def batch_with_failures(
    service: BatchService,
    group: Group,
    runtime: Runtime,
    runpod: MemoryRunpod,
    path: Path,
    *,
    failed: dict[int, ErrorCode],
) -> Job:
    """Run a 6-image batch to its end with the items of `failed` failing for good with their codes."""
    plan = await service.plan_from_file(await zip_of(path, 6), request(), source="in.zip")
    result = await service.start(plan, group_id=group.id, is_admin=False)
    assert result.job is not None
    await runtime.dispatcher.run_once()
    for chunk in runpod.active():
        await runpod.finish(chunk.id, errors={i: failed[i] for i in chunk.indices if i in failed})
    await runtime.dispatcher.run_once()
    job = await runtime.ledger.get_job(result.job.id)
    assert job is not None and job.status.is_final and job.failed == len(failed)
    return job


async def test_retry_with_another_model_is_a_new_batch_of_the_failed_items_on_that_model(
    group: Group, runtime: Runtime, ledger: Ledger, runpod: MemoryRunpod, run_to_end: RunToEnd, tmp_path: Path
) -> None:
    service = BatchService(runtime)
    failed = {1: ErrorCode.SAFETY, 4: ErrorCode.BAD_INPUT, 5: ErrorCode.TOO_LARGE}
    job = await batch_with_failures(service, group, runtime, runpod, tmp_path / "in.zip", failed=failed)

    plan = await service.plan_retry(job.id, prompt=None, model="pro", channel_id=70, is_admin=False)
    result = await service.start(plan, group_id=group.id, is_admin=False)
    assert result.job is not None
    await runtime.dispatcher.run_once()
    chunks = runpod.active()
    retried = await run_to_end(result.job.id)

    assert [i.name for i in plan.items] == ["photos/img-00001.png", "photos/img-00004.png"]  # TOO_LARGE left out
    estimate = service.estimate(plan)
    assert estimate.unit_price_usd is not None and "↩️ Retry of the 2 failed image(s)" in plan_summary(plan, estimate)
    assert retried.group_id == group.id and retried.total == 2 and retried.status is JobStatus.DONE
    assert {c.input.model for c in chunks} == {resolve_model("pro")}
    assert sorted(item.prompt for c in chunks for item in c.input.items) == ["make it watercolour"] * 2
    originals = await ledger.items(job.id)
    copies = await ledger.items(retried.id)
    assert [c.inputs.ref_keys for c in copies] == [originals[1].inputs.ref_keys, originals[4].inputs.ref_keys]
    assert [c.inputs.source_name for c in copies] == ["photos/img-00001.png", "photos/img-00004.png"]
    assert await ledger.note(retried.id, NOTE_RETRY_OF) == job.id
    unchanged = await ledger.get_job(job.id)
    assert unchanged is not None and unchanged.failed == 3  # the original's manifest still says failed


async def test_retry_with_an_edited_prompt_sends_the_new_prompt_for_the_failed_items_only(
    group: Group, runtime: Runtime, runpod: MemoryRunpod, tmp_path: Path
) -> None:
    service = BatchService(runtime)
    job = await batch_with_failures(service, group, runtime, runpod, tmp_path / "in.zip", failed={2: ErrorCode.SAFETY})

    plan = await service.plan_retry(
        job.id, prompt="a calm watercolour of {name} --ar 3:2", model=None, channel_id=70, is_admin=False
    )
    result = await service.start(plan, group_id=group.id, is_admin=False)
    assert result.job is not None
    await runtime.dispatcher.run_once()
    [chunk] = runpod.active()

    assert [(i.prompt, i.aspect_ratio) for i in chunk.input.items] == [("a calm watercolour of img-00002", "3:2")]
    assert chunk.input.model == job.params.model


async def test_retry_changing_nothing_is_refused(
    group: Group, runtime: Runtime, runpod: MemoryRunpod, tmp_path: Path
) -> None:
    service = BatchService(runtime)
    job = await batch_with_failures(service, group, runtime, runpod, tmp_path / "in.zip", failed={0: ErrorCode.SAFETY})
    same = await service.retry_prompt(job)

    with pytest.raises(BatchError, match="Nothing changed"):
        await service.plan_retry(job.id, prompt=same, model=job.params.model, channel_id=70, is_admin=False)
    with pytest.raises(BatchError, match="not a Gemini image model"):
        await service.plan_retry(job.id, prompt=None, model="dall-e", channel_id=70, is_admin=False)
    with pytest.raises(BatchError, match="no longer exists"):
        await service.plan_retry(JobId("j_0000000000000000"), prompt="x", model=None, channel_id=70, is_admin=False)


async def test_shared_references_reach_every_item_and_are_named_in_the_plan(
    group: Group, runtime: Runtime, runpod: MemoryRunpod, tmp_path: Path
) -> None:
    service = BatchService(runtime)
    refs = (("style.png", tiny_png(900)), ("logo.png", tiny_png(901)))

    plan = await service.plan_from_file(
        await zip_of(tmp_path / "in.zip", 3), request("in this style --model pro", refs=refs), source="in.zip"
    )
    result = await service.start(plan, group_id=group.id, is_admin=False)
    assert result.job is not None
    await runtime.dispatcher.run_once()
    items = [item for chunk in runpod.active() for item in chunk.input.items]

    shared = [key for _, key in plan.shared_refs]
    assert [name for name, _ in plan.shared_refs] == ["style.png", "logo.png"]
    assert len(items) == 3 and all(item.ref_keys[1:] == shared for item in items)
    assert len({item.ref_keys[0] for item in items}) == 3  # each item's own image first
    text = plan_summary(plan, service.estimate(plan))
    assert "2 shared reference(s) for every image: style.png, logo.png" in text
    assert "not included in the cost" in text


async def test_shared_references_over_the_models_input_limit_or_unreadable_are_refused(
    runtime: Runtime, tmp_path: Path
) -> None:
    service = BatchService(runtime)
    path = await zip_of(tmp_path / "in.zip", 2)
    three = tuple((f"r{i}.png", tiny_png(910 + i)) for i in range(3))

    with pytest.raises(BatchError, match="takes at most 3 input images") as exc:
        await service.plan_from_file(path, request("x --model flash", refs=three), source="in.zip")
    assert "photos/img-00000.png" in exc.value.user_message  # the first item over the limit, by name
    with pytest.raises(BatchError, match="can't be used as a reference"):
        await service.plan_from_file(path, request("x", refs=(("notes.png", b"not an image"),)), source="in.zip")
    with pytest.raises(BatchError, match="at most 3 shared"):
        await service.plan_from_file(path, request("x --model pro", refs=(*three, three[0])), source="in.zip")


async def test_a_trial_paused_by_its_owner_midway_shows_its_samples_only_once_it_is_over(
    group: Group, runtime: Runtime, runpod: MemoryRunpod, tmp_path: Path
) -> None:
    service = BatchService(runtime)
    plan = await service.plan_from_file(await zip_of(tmp_path / "in.zip", 10), request(), source="in.zip")
    result = await service.start(plan, group_id=group.id, is_admin=False, trial=4)
    assert result.job is not None
    job_id = result.job.id
    await runtime.dispatcher.run_once()
    [chunk] = runpod.active()
    await service.pause(job_id)
    await runpod.finish(chunk.id, errors=dict.fromkeys(chunk.indices[2:], ErrorCode.STOPPED))  # 2 made, 2 stopped
    await runtime.dispatcher.run_once()
    midway = await runtime.ledger.get_job(job_id)
    assert midway is not None and midway.status is JobStatus.PAUSED and midway.ok == 2

    early = await service.take_samples(midway)
    await service.resume(job_id)  # Resume, not "Start the rest": the trial's last two run, the rest stays held
    for _ in range(3):
        await runtime.dispatcher.run_once()
        await runpod.finish_all()
    await runtime.dispatcher.run_once()
    over = await runtime.ledger.get_job(job_id)
    assert over is not None

    assert early is None
    assert over.status is JobStatus.PAUSED and over.ok == 4 and over.remaining == 6
    samples = await service.take_samples(over)
    assert samples is not None and len(samples) == 4
