"""`{a, b}` permutations and `--repeat` in `/batch` through `BatchService`: counts, costs and the prompts sent."""

from pathlib import Path

import pytest

from bot.app.batches import BatchService
from bot.app.batchplan import BatchError, plan_price
from bot.app.runtime import Runtime
from bot.core.models import Group
from storage.memory import MemoryStore
from tests.fakes.gateway import MemoryRunpod
from tests.protocol.services.conftest import RunToEnd
from tests.protocol.services.test_batch_prompts import images, request, sent_prompts, write_zip
from tests.protocol.services.test_batches import manifest_of


async def test_one_prompt_times_permutations_times_repeats_is_one_item_each_with_its_own_prompt(
    group: Group, runtime: Runtime, store: MemoryStore, run_to_end: RunToEnd, runpod: MemoryRunpod, tmp_path: Path
) -> None:
    path = await write_zip(tmp_path / "in.zip", images(2))
    service = BatchService(runtime)

    plan = await service.plan_from_file(path, request("a {fox, owl, cat} in snow --repeat 2"), source="in.zip")

    assert len(plan.items) == 2 * 3 * 2
    assert plan.prompt_source == "one prompt × 3 permutations × 2 repeats"
    one = await service.plan_from_file(path, request("a fox in snow"), source="in.zip")
    price, one_price = plan_price(plan), plan_price(one)
    assert price is not None and one_price is not None and price == pytest.approx(6 * one_price)
    assert service.estimate(plan).items == 12
    assert [(i.name, i.prompt or plan.prompt) for i in plan.items[:6]] == [
        ("set/img_0000.png", p) for p in ("a fox in snow",) * 2 + ("a owl in snow",) * 2 + ("a cat in snow",) * 2
    ]
    started = await service.start(plan, group_id=group.id, is_admin=False)
    assert started.job is not None
    job = await run_to_end(started.job.id)
    assert job.ok == 12
    items = [item async for item in runtime.ledger.iter_items(job.id)]
    by_key = sent_prompts(runpod)
    assert sorted(by_key[i.output_key] for i in items) == sorted(
        f"a {animal} in snow" for animal in ("fox", "owl", "cat") for _ in range(4)
    )
    assert len({i.seed for i in items}) == 12  # each repeat its own seed
    assert len({i.output_key for i in items}) == 12
    download = await service.build_download(job)
    members, manifest = await manifest_of(store, download.key)
    files = [r["file"] for r in manifest if r["status"] == "ok"]
    assert len(set(files)) == 12  # the same source image, distinct members
    assert sum(m.endswith(".png") for m in members) == 12
    assert "set/img_0000 (2).png" in files


async def test_a_rows_own_permutations_expand_and_a_template_keeps_its_placeholders(
    runtime: Runtime, tmp_path: Path
) -> None:
    table = 'file,prompt\nset/img_0000.png,"a {red, blue} kite"\nset/img_0001.png,a boat\n'
    path = await write_zip(tmp_path / "in.zip", {**images(2), "prompts.csv": table.encode()})
    service = BatchService(runtime)

    plan = await service.plan_from_file(path, request("{prompt} of {name}, as {a woodcut, an etching}"), source="z")

    assert [i.prompt for i in plan.items] == [
        "a red kite of img_0000, as a woodcut",
        "a blue kite of img_0000, as a woodcut",
        "a red kite of img_0000, as an etching",
        "a blue kite of img_0000, as an etching",
        "a boat of img_0001, as a woodcut",
        "a boat of img_0001, as an etching",
    ]
    assert plan.prompt_source == "prompts.csv: 2 rows + template × 2 permutations × their own {…} permutations"


async def test_permutations_of_a_parameter_set_each_items_option(runtime: Runtime, tmp_path: Path) -> None:
    path = await write_zip(tmp_path / "in.zip", images(1))
    service = BatchService(runtime)

    plan = await service.plan_from_file(path, request(r"a \{fox\} --ar {1:1, 16:9}"), source="z")

    assert plan.params.aspect_ratio == "1:1"
    assert [(i.prompt, i.aspect_ratio) for i in plan.items] == [(None, None), (None, "16:9")]
    assert plan.prompt == "a {fox}"  # the escape is the user's, not the model's


async def test_repeat_with_a_rows_seed_takes_the_following_seeds(runtime: Runtime, tmp_path: Path) -> None:
    table = "file,prompt,seed\nset/img_0000.png,a kite,100\n"
    path = await write_zip(tmp_path / "in.zip", {**images(1), "prompts.csv": table.encode()})

    plan = await BatchService(runtime).plan_from_file(path, request("{prompt} --repeat 3"), source="z")

    assert [i.seed for i in plan.items] == [100, 101, 102]


async def test_too_many_permutations_are_refused_before_anything_is_planned(runtime: Runtime, tmp_path: Path) -> None:
    path = await write_zip(tmp_path / "in.zip", images(1))
    service = BatchService(runtime)
    with pytest.raises(BatchError, match="make 64 prompts; at most 40"):
        await service.plan_from_file(path, request("{a, b} {c, d} {e, f} {g, h} {i, j} {k, l}"), source="z")
    with pytest.raises(BatchError, match="one model"):
        await service.plan_from_file(path, request("a fox --model {flash, pro}"), source="z")
    with pytest.raises(BatchError, match="limit is"):
        big = "{a, b, c, d, e, f, g, h} {a, b, c, d, e} --repeat 40"  # 1,600 per image over 1,000 images is refused
        many = await write_zip(tmp_path / "many.zip", images(10))
        await service.plan_from_file(many, request(big), source="z")


async def test_a_row_past_the_permutation_cap_is_a_row_problem(runtime: Runtime, tmp_path: Path) -> None:
    table = 'file,prompt\nset/img_0000.png,"{a, b} {c, d} {e, f} {g, h} {i, j} {k, l}"\nset/img_0001.png,a boat\n'
    path = await write_zip(tmp_path / "in.zip", {**images(2), "prompts.csv": table.encode()})

    plan = await BatchService(runtime).plan_from_file(path, request(""), source="z")

    assert [i.name for i in plan.items] == ["set/img_0001.png"]
    assert plan.problems == (
        ("prompts.csv line 2 (set/img_0000.png)", "the {…} permutations make 64 prompts; at most 40 per prompt"),
    )
