"""/describe and /blend through the local Discord with the real discord.py and the embedded back ends
(dispatcher → local RunPod endpoint → real worker subprocesses → local Gemini, its text model included)."""

import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from bot.core.models import Job, JobKind, JobStatus
from local.discord.actions import ActionError
from local.discord.driver import Message
from local.discord.state import Upload
from tests.e2e.discord.conftest import WAIT_S, ephemeral_embed, labels, png
from tests.fakes.peel_stack import PeelStack, peel_stack
from worker.contract import DescribeAnswer, describe_key

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(90)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PeelStack]:
    async with peel_stack(tmp_path_factory.mktemp("describe"), progress_edit_interval_s=0.5) as s:
        yield s


def wide_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (96, 64), (40, 80, 200)).save(out, "PNG")
    return out.getvalue()


def bomb_png() -> bytes:
    """A small file that decodes to 900 million pixels."""
    out = io.BytesIO()
    Image.new("1", (30000, 30000)).save(out, "PNG")
    return out.getvalue()


def is_description(m: Message) -> bool:
    return any(e.get("title") == "Describe" for e in m.embeds) and "Imagine all" in labels(m)


async def latest_job(stack: PeelStack) -> Job:
    return (await stack.rt.ledger.list_jobs())[-1]


async def describe(stack: PeelStack, **options: Any) -> Message:
    d = stack.driver()
    run = await d.slash("describe", options)
    assert await run.wait_ack() == 5

    def answered() -> Message | None:
        response = run.response()
        return response if response is not None and is_description(response) else None

    message = await d.wait_until(answered, timeout=WAIT_S)
    assert message is not None
    return message


async def test_describe_shows_four_numbered_prompts_with_the_images_ratio_and_its_buttons(stack: PeelStack):
    message = await describe(stack, image=Upload("blue.png", wide_png()))
    text = message.embeds[0]["description"]
    for number in ("1️⃣", "2️⃣", "3️⃣", "4️⃣"):
        assert number in text
    assert text.count("--ar 3:2") == 4 and "blue" in text
    assert labels(message) == ["1", "2", "3", "4", "🔄", "Imagine all"]
    assert [a["filename"] for a in message.attachments] == ["described.webp"]  # the image beside its prompts
    assert message.embeds[0]["thumbnail"]["url"] == message.attachments[0]["url"]  # Discord resolves attachment://
    job = await latest_job(stack)
    assert job.kind is JobKind.DESCRIBE and job.status is JobStatus.DONE
    assert job.params.model == stack.rt.settings.gemini_describe_model
    item = await stack.rt.ledger.get_item(job.id, 0)
    assert item is not None and item.cost_usd is not None and item.cost_usd > 0  # priced from Gemini's usage
    answer = DescribeAnswer.model_validate_json(await stack.rt.backends.store.get_bytes(describe_key(item.output_key)))
    assert answer.prompts[0] in text
    assert await stack.rt.ledger.images(job_id=job.id) == []  # a description is no image of the group


async def test_a_numbered_button_imagines_that_prompt_without_the_described_image(stack: PeelStack):
    d = stack.driver()
    message = await describe(stack, image=Upload("blue2.png", wide_png()))
    described = await latest_job(stack)
    item = await stack.rt.ledger.get_item(described.id, 0)
    assert item is not None
    answer = DescribeAnswer.model_validate_json(await stack.rt.backends.store.get_bytes(describe_key(item.output_key)))
    await d.click(message, label="2")
    prompt = answer.prompts[1]
    grid = await d.wait_for_message(
        lambda m: m.content.startswith(f"**{prompt[:40]}") and bool(m.attachments) and "U1" in labels(m),
        timeout=WAIT_S,
    )
    assert grid.id != message.id
    job = await latest_job(stack)
    assert job.kind is JobKind.GRID and job.params.aspect_ratio == "3:2"
    grid_item = await stack.rt.ledger.get_item(job.id, 0)
    assert grid_item is not None and grid_item.inputs.ref_keys == ()  # as Midjourney: the image is not sent


async def test_reroll_describes_the_same_image_again(stack: PeelStack):
    d = stack.driver()
    message = await describe(stack, image=Upload("blue3.png", wide_png()))
    first = await latest_job(stack)
    assert f"peel-d:r:{first.id}" in message.custom_ids()
    clicked = await d.click(message, f"peel-d:r:{first.id}")  # 🔄 (an emoji, no label)
    await d.wait_until(lambda: (r := clicked.response()) is not None and is_description(r), timeout=WAIT_S)
    again = await latest_job(stack)
    assert again.kind is JobKind.DESCRIBE and again.id != first.id
    a = await stack.rt.ledger.get_item(first.id, 0)
    b = await stack.rt.ledger.get_item(again.id, 0)
    assert a is not None and b is not None and a.inputs.ref_keys == b.inputs.ref_keys


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"image": Upload("notes.png", b"this is not an image")}, "can't be described"),
        ({"image": Upload("bomb.png", bomb_png())}, "pixels"),
        ({"link": "http://127.0.0.1:9/cat.png"}, "can't be used"),
        ({"link": "http://0x7f000001/cat.png"}, "can't be used"),
        ({"link": "http://[::ffff:10.0.0.1]/cat.png"}, "can't be used"),
        ({}, "one of the two"),
    ],
    ids=["not-an-image", "decompression-bomb", "loopback", "hex-loopback", "mapped-private", "nothing"],
)
async def test_describe_refuses_a_hostile_input_clearly(stack: PeelStack, options: dict[str, Any], says: str):
    d = stack.driver()
    before = len(await stack.rt.ledger.list_jobs())
    run = await d.slash("describe", options)
    assert await run.wait_ack() == 5
    await d.wait_until(lambda: any(says in ephemeral_embed(m) for m in run.followups()), timeout=WAIT_S)
    await d.wait_until(lambda: run.response() is None, timeout=WAIT_S)  # the public "thinking" message is gone
    assert len(await stack.rt.ledger.list_jobs()) == before


async def blend(stack: PeelStack, count: int, **options: Any) -> Any:
    files = {f"image{i}": Upload(f"b{i}.png", png(colour=(i * 40, 90, 200 - i * 30))) for i in range(1, count + 1)}
    run = await stack.driver().slash("blend", {**files, **options})
    assert await run.wait_ack() == 5
    return run


@pytest.mark.parametrize("count", [2, 3])
async def test_blend_makes_a_grid_whose_job_has_the_images_as_references(stack: PeelStack, count: int):
    d = stack.driver()
    await blend(stack, count, dimensions="landscape", prompt="at dusk")
    grid = await d.wait_for_message(
        lambda m: m.content.startswith(f"**Blend of {count} images: at dusk**") and bool(m.attachments),
        timeout=WAIT_S,
    )
    assert labels(grid)[:5] == ["U1", "U2", "U3", "U4", "🔄"]
    job = await latest_job(stack)
    assert job.kind is JobKind.GRID and job.params.aspect_ratio == "3:2" and job.ok == 4
    assert job.prompt.startswith("Blend the reference images") and "at dusk" in job.prompt
    item = await stack.rt.ledger.get_item(job.id, 0)
    assert item is not None and len(item.inputs.ref_keys) == count


async def test_blend_refuses_more_images_than_the_model_takes_naming_its_cap(stack: PeelStack):
    d = stack.driver()
    before = len(await stack.rt.ledger.list_jobs())
    await blend(stack, 4, prompt="--model flash")
    error = await d.wait_for_message(lambda m: "at most 3 reference images" in ephemeral_embed(m), timeout=WAIT_S)
    assert "gemini-2.5-flash-image" in ephemeral_embed(error)
    assert len(await stack.rt.ledger.list_jobs()) == before


async def test_blend_with_a_single_image_is_refused(stack: PeelStack):
    # image2 is a required option: Discord refuses the command before Peel sees it (the local Discord as well).
    with pytest.raises(ActionError, match="option 'image2' is required"):
        await stack.driver().slash("blend", {"image1": Upload("one.png", png())})


async def test_imagine_all_queues_the_four_prompts_each_a_grid_of_its_own(stack: PeelStack):
    d = stack.driver()
    message = await describe(stack, image=Upload("blue4.png", wide_png()))
    described = await latest_job(stack)
    before = len(await stack.rt.ledger.list_jobs())
    clicked = await d.click(message, label="Imagine all")
    await d.wait_until(lambda: any("Queued 4 grids" in m.content for m in [clicked.response()] if m), timeout=WAIT_S)
    jobs = (await stack.rt.ledger.list_jobs())[before:]
    assert [j.kind for j in jobs] == [JobKind.GRID] * 4
    item = await stack.rt.ledger.get_item(described.id, 0)
    assert item is not None
    answer = DescribeAnswer.model_validate_json(await stack.rt.backends.store.get_bytes(describe_key(item.output_key)))
    displays = [await stack.rt.ledger.note(j.id, "display") for j in jobs]
    assert displays == list(answer.prompts)
    for prompt in answer.prompts:
        await d.wait_for_message(grid_of(prompt), timeout=WAIT_S)


def grid_of(prompt: str) -> Callable[[Message], bool]:
    def check(m: Message) -> bool:
        return m.content.startswith(f"**{prompt}**") and bool(m.attachments)

    return check
