"""A prompt per image through `BatchService`: prompts.csv rows, a prompt list alone, captions and a template."""

import asyncio
import io
import zipfile
from pathlib import Path

import pytest

from bot.app.batches import BatchService
from bot.app.batchplan import BatchError, BatchPlan, BatchRequest, PlannedItem
from bot.app.runtime import Runtime
from bot.core.models import Group
from storage.memory import MemoryStore
from tests.e2e.bot._batchzips import tiny_png
from tests.fakes.gateway import MemoryRunpod
from tests.protocol.services.conftest import RunToEnd
from tests.protocol.services.test_batches import manifest_of

ALICE = 42


def request(prompt: str) -> BatchRequest:
    return BatchRequest(owner_id=ALICE, guild_id=7, channel_id=70, prompt=prompt)


async def write_zip(path: Path, entries: dict[str, bytes]) -> Path:
    def build() -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in entries.items():
                archive.writestr(name, data)
        return out.getvalue()

    await asyncio.to_thread(path.write_bytes, await asyncio.to_thread(build))
    return path


def sent_prompts(runpod: MemoryRunpod) -> dict[str, str]:
    """Return each item's prompt as the chunks sent it, by output key."""
    return {item.output_key: item.prompt for job in runpod.jobs.values() for item in job.input.items}


def images(count: int) -> dict[str, bytes]:
    return {f"set/img_{i:04d}.png": tiny_png(i) for i in range(count)}


async def test_sixty_images_get_their_rows_prompts_and_three_bad_rows_are_reported_with_their_lines(
    group: Group, runtime: Runtime, store: MemoryStore, run_to_end: RunToEnd, runpod: MemoryRunpod, tmp_path: Path
) -> None:
    rows = [f"set/img_{i:04d}.png,prompt number {i}: a fox in style {i % 7}" for i in range(60)]
    rows.insert(10, "set/missing.png,nothing to draw")  # line 12
    rows.insert(20, "set/img_0003.png,a second row for one image")  # line 22
    rows.insert(30, "set/img_0030.png,")  # line 32: no prompt
    table = "file,prompt\n" + "\n".join(rows) + "\n"
    path = await write_zip(tmp_path / "in.zip", {**images(60), "prompts.csv": table.encode()})
    service = BatchService(runtime)

    plan = await service.plan_from_file(path, request("a default --ar 3:2"), source="in.zip")

    assert len(plan.items) == 60
    assert plan.prompt_source == "prompts.csv: 63 rows"
    assert [where for where, _ in plan.problems] == [
        "prompts.csv line 12 (set/missing.png)",
        "prompts.csv line 22 (set/img_0003.png)",
        "prompts.csv line 32 (set/img_0030.png)",
    ]
    assert plan.problem_lines()[0].startswith("prompts.csv line 12 (set/missing.png): ")
    started = await service.start(plan, group_id=group.id, is_admin=False)
    assert started.job is not None
    job = await run_to_end(started.job.id)
    assert job.ok == 60

    items = [item async for item in runtime.ledger.iter_items(job.id)]
    by_key = sent_prompts(runpod)
    got = {item.inputs.source_name: by_key[item.output_key] for item in items}
    expected = {f"set/img_{i:04d}.png": f"prompt number {i}: a fox in style {i % 7}" for i in range(60)}
    assert got == expected
    _, manifest = await manifest_of(store, (await service.build_download(job)).key)
    skipped = {r["source"]: r["error_code"] for r in manifest if r["status"] == "skipped"}
    assert skipped == {
        "prompts.csv line 12 (set/missing.png)": "row_missing_file",
        "prompts.csv line 22 (set/img_0003.png)": "row_duplicate",
        "prompts.csv line 32 (set/img_0030.png)": "row_empty_prompt",
    }


async def test_a_prompt_list_alone_is_a_text_to_image_batch(
    group: Group, runtime: Runtime, run_to_end: RunToEnd, runpod: MemoryRunpod, tmp_path: Path
) -> None:
    lines = "\n".join(f'{{"prompt": "a lighthouse, take {i}"}}' for i in range(100))
    path = await write_zip(tmp_path / "list.zip", {"prompts.jsonl": lines.encode()})
    service = BatchService(runtime)

    plan = await service.plan_from_file(path, request(""), source="list.zip")

    assert len(plan.items) == 100 and plan.prompt_source == "prompts.jsonl: 100 rows"
    started = await service.start(plan, group_id=group.id, is_admin=False)
    assert started.job is not None
    job = await run_to_end(started.job.id)
    assert job.ok == 100
    sent = [item for rp in runpod.jobs.values() for item in rp.input.items]
    assert sorted(item.prompt for item in sent) == sorted(f"a lighthouse, take {i}" for i in range(100))
    assert all(item.ref_keys == [] for item in sent)


async def test_captions_beside_images_fill_a_template_with_the_images_name(
    group: Group, runtime: Runtime, run_to_end: RunToEnd, runpod: MemoryRunpod, tmp_path: Path
) -> None:
    entries = {**images(3), "set/img_0000.txt": b"a red barn", "set/img_0001.txt": b"a blue door"}
    path = await write_zip(tmp_path / "c.zip", entries)
    service = BatchService(runtime)

    plan = await service.plan_from_file(path, request("{name}: {prompt}, as a woodcut"), source="c.zip")

    assert plan.prompt_source == "captions: 2 + template"
    assert list(plan.problems) == [("set/img_0002.png", "the template uses {prompt}, but no row or caption gives one")]
    started = await service.start(plan, group_id=group.id, is_admin=False)
    assert started.job is not None
    await run_to_end(started.job.id)
    assert sorted(sent_prompts(runpod).values()) == [
        "img_0000: a red barn, as a woodcut",
        "img_0001: a blue door, as a woodcut",
    ]


async def test_a_rows_options_seed_and_references_reach_the_worker_and_its_size_its_price(
    group: Group, runtime: Runtime, run_to_end: RunToEnd, runpod: MemoryRunpod, tmp_path: Path
) -> None:
    table = (
        "file,prompt,aspect_ratio,image_size,seed,refs\n"
        "set/img_0000.png,a,16:9,2K,11,set/img_0002.png\n"
        "set/img_0001.png,b,,,,\n"
    )
    path = await write_zip(tmp_path / "o.zip", {**images(3), "prompts.csv": table.encode()})
    service = BatchService(runtime)

    plan = await service.plan_from_file(path, request("c --model flash3 --size 1K"), source="o.zip")

    assert [i.name for i in plan.items] == ["set/img_0000.png", "set/img_0001.png"]  # img_0002 is a reference only
    assert service.estimate(plan).cost_usd == pytest.approx(0.101 + 0.067)  # 2K and 1K on gemini-3.1-flash-image
    started = await service.start(plan, group_id=group.id, is_admin=False)
    assert started.job is not None
    await run_to_end(started.job.id)
    sent = sorted((item for rp in runpod.jobs.values() for item in rp.input.items), key=lambda i: i.index)
    first, second = sent
    assert (first.aspect_ratio, first.image_size, first.seed, len(first.ref_keys)) == ("16:9", "2K", 11, 2)
    assert (second.aspect_ratio, second.image_size, len(second.ref_keys)) == (None, "1K", 1)


async def test_a_table_peel_cannot_read_or_a_zip_without_any_prompt_is_refused(
    runtime: Runtime, tmp_path: Path
) -> None:
    service = BatchService(runtime)
    bad = await write_zip(tmp_path / "bad.zip", {**images(1), "prompts.csv": b"file,promt\nset/img_0000.png,x\n"})
    with pytest.raises(BatchError, match="promt"):
        await service.plan_from_file(bad, request(""), source="bad.zip")
    bare = await write_zip(tmp_path / "bare.zip", images(1))
    with pytest.raises(BatchError, match="prompt is empty"):
        await service.plan_from_file(bare, request("--ar 1:1"), source="bare.zip")


def test_a_plan_stored_before_items_had_prompts_is_still_read() -> None:
    old = {
        "id": "p1",
        "owner_id": 1,
        "guild_id": None,
        "channel_id": 2,
        "prompt": "p",
        "display_prompt": "p",
        "params": {"model": "gemini-2.5-flash-image"},
        "items": [["inputs/a.png", "a.png"]],
        "skipped": [],
        "created_at": "2025-01-01T00:00:00+00:00",
    }
    plan = BatchPlan.from_json(old)
    assert plan.items == (PlannedItem(key="inputs/a.png", name="a.png"),)
    assert plan.prompt_source == "one prompt" and plan.problems == ()
    assert BatchPlan.from_json(plan.to_json()) == plan


async def test_start_the_rest_of_a_trial_is_priced_at_each_held_items_own_size(
    runtime: Runtime, group: Group, tmp_path: Path
) -> None:
    sizes = ["1K", "1K", "4K", "2K", "4K", ""]  # the first 2 are the trial; "" leaves the job's (1K)
    table = "file,prompt,image_size\n" + "".join(f"set/img_{i:04d}.png,p {i},{s}\n" for i, s in enumerate(sizes))
    path = await write_zip(tmp_path / "in.zip", {**images(6), "prompts.csv": table.encode()})
    service = BatchService(runtime)
    plan = await service.plan_from_file(path, request("x --model gemini-3.1-flash-image"), source="in.zip")

    started = await service.start(plan, group_id=group.id, is_admin=False, trial=2)

    assert started.job is not None
    # 4K + 2K + 4K + 1K of gemini-3.1-flash-image, not 4 x the job's 1K price
    assert await service.rest_cost(started.job, 2) == pytest.approx(0.151 + 0.101 + 0.151 + 0.067)
