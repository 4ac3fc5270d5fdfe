"""Midjourney parity and polish (#26) through the local Discord with the real discord.py and the embedded back ends:
Midjourney's parameters ignored with a note, honest progress, references named, buttons marked once used, wordings."""

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from bot.core.models import JobStatus
from local.discord.driver import Message
from local.discord.state import Upload
from tests.e2e.discord.conftest import WAIT_S, action_id, ephemeral_embed, imagine, png, result_of, set_faults
from tests.fakes.peel_stack import PeelStack, peel_stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(90)]

PRIMARY, SECONDARY = 1, 2  # Discord's button styles: blue, grey


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PeelStack]:
    async with peel_stack(tmp_path_factory.mktemp("polish"), progress_edit_interval_s=0.3) as s:
        yield s


async def latest_job(stack: PeelStack) -> Any:
    return (await stack.rt.ledger.list_jobs())[-1]


async def grid_of(stack: PeelStack, prompt: str, **options: Any) -> Message:
    await imagine(stack, prompt, **options)
    return await stack.driver().wait_for_message(result_of(prompt), timeout=WAIT_S)


def style_of(message: Message, label: str) -> int:
    return int(
        next(b for b in message.buttons() if (b.get("label") or b.get("emoji", {}).get("name")) == label)["style"]
    )


async def test_a_pasted_midjourney_prompt_runs_at_its_ratio_with_a_note_naming_what_was_ignored(stack: PeelStack):
    prompt = "a cat --v 6 --stylize 250 --ar 3:2"
    grid = await grid_of(stack, prompt)
    job = await latest_job(stack)
    assert job.status is JobStatus.DONE and job.params.aspect_ratio == "3:2"
    assert job.prompt == "a cat"  # nothing of Midjourney's parameters reaches Gemini
    lines = grid.content.split("\n")
    assert lines[0].startswith(f"**{prompt}** - ")  # the prompt as typed
    assert lines[1] == "ℹ️ Ignored Midjourney parameters: --v 6, --stylize 250 (Gemini has no equivalent)"


async def test_a_truly_unknown_parameter_is_still_refused_naming_it(stack: PeelStack):
    d = stack.driver()
    await imagine(stack, "a cat --sed 5")
    error = await d.wait_for_message(lambda m: "`--sed` is not a parameter" in ephemeral_embed(m), timeout=WAIT_S)
    assert error.is_ephemeral


async def test_a_running_grid_counts_images_as_they_arrive_and_says_how_long_it_should_take(stack: PeelStack):
    d = stack.driver()
    # The four calls end apart: the first to arrive after 0.3 s, the others after 3 s.
    await set_faults(stack, {"next_latencies": [0.3, 3, 3, 3]})
    try:
        await imagine(stack, "a slow fox")

        def partway(m: Message) -> bool:
            return bool(re.search(r"\(generating… [123]/4 ready · \d+s(?: of about|, longer than)", m.content))

        line = await d.wait_for_message(partway, timeout=WAIT_S)
        assert "of about" in line.content or "longer than the usual" in line.content
        await d.wait_for_message(result_of("a slow fox"), timeout=WAIT_S)
    finally:
        await set_faults(stack, {"latency": 0, "next_latencies": []})


async def test_the_message_names_the_reference_images_used(stack: PeelStack):
    grid = await grid_of(
        stack, "a fox like these", image=Upload("cat.png", png()), image2=Upload("style.jpg", png(colour=(9, 9, 9)))
    )
    assert "\n📎 with 2 references: cat.png, style.jpg" in grid.content


async def test_v_reroll_and_a_tool_turn_blue_once_used_as_u_does(stack: PeelStack):
    d = stack.driver()
    grid = await grid_of(stack, "blue fox")
    assert style_of(grid, "V2") == SECONDARY and style_of(grid, "🔄") == SECONDARY
    await d.click(grid, label="V2")
    await d.wait_for_message(lambda m: m.id == grid.id and style_of(m, "V2") == PRIMARY, timeout=WAIT_S)
    await d.click(grid, action_id(grid, "r"))
    marked = await d.wait_for_message(lambda m: m.id == grid.id and style_of(m, "🔄") == PRIMARY, timeout=WAIT_S)
    assert style_of(marked, "V2") == PRIMARY and style_of(marked, "V1") == SECONDARY  # others keep their marks
    await d.click(marked, label="U1")
    single = await d.wait_for_message(lambda m: m.content.startswith("**blue fox** - Image #1"), timeout=WAIT_S)
    both = await d.wait_for_message(lambda m: m.id == grid.id and style_of(m, "U1") == PRIMARY, timeout=WAIT_S)
    assert style_of(both, "🔄") == PRIMARY  # U's own mark keeps V's and 🔄's
    await d.click(single, label="Zoom Out 2×")
    await d.wait_for_message(lambda m: m.id == single.id and style_of(m, "Zoom Out 2×") == PRIMARY, timeout=WAIT_S)
    await d.wait_for_message(lambda m: "Zoom Out 2× by" in m.content and bool(m.attachments), timeout=WAIT_S)


async def test_batch_without_a_zip_or_a_link_says_what_is_missing(stack: PeelStack):
    d = stack.driver()
    await d.slash("batch", {"prompt": "a watercolor of this"})
    error = await d.wait_for_message(lambda m: "needs its images" in ephemeral_embed(m), timeout=WAIT_S)
    assert "not both" not in ephemeral_embed(error)


async def test_group_list_shows_a_channel_s_name_without_a_backslash(stack: PeelStack):
    d = stack.driver()
    await grid_of(stack, "listed fox")  # the channel's group (#general) holds an image now
    await d.slash("group list", {})
    listed = await d.wait_for_message(lambda m: m.is_ephemeral and "#general" in m.content, timeout=WAIT_S)
    assert "\\#" not in listed.content
