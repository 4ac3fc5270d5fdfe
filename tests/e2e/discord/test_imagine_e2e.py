"""/imagine and everything under a grid, through the local Discord with the real discord.py and the embedded
back ends (dispatcher → local RunPod endpoint → real worker subprocesses → local Gemini)."""

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import pytest_asyncio
from aiohttp import ClientSession

from bot.core.models import Image, JobKind, JobStatus, UserId
from bot.exts._access import AccessPolicy
from local.discord.actions import ActionError
from local.discord.state import Upload
from storage.links import LinkSigner
from tests.e2e.discord.conftest import WAIT_S, action_id, ephemeral_embed, imagine, labels, png, result_of, set_faults
from tests.fakes.peel_stack import PeelStack, peel_stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(90)]

TOOLS = [
    "Upscale 2K",
    "Upscale 4K",
    "Vary (Subtle)",
    "Vary (Strong)",
    "Vary (Region)",
    "Edit",
    "Zoom Out 1.5×",
    "Zoom Out 2×",
    "Custom Zoom",
    "⬅️",
    "➡️",
    "⬆️",
    "⬇️",
    "❤️",
    "Full size",
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PeelStack]:
    async with peel_stack(
        tmp_path_factory.mktemp("imagine"),
        worker_env={"LOCAL_GEMINI_BLOCK_WORD": "forbidden"},
        progress_edit_interval_s=0.5,
    ) as s:
        yield s


async def latest_job(stack: PeelStack):
    jobs = await stack.rt.ledger.list_jobs()
    return jobs[-1]


async def grid_of(stack: PeelStack, prompt: str, *, user: str = "alice", **options: Any):
    await imagine(stack, prompt, user=user, **options)
    return await stack.driver(user).wait_for_message(result_of(prompt), timeout=WAIT_S)


async def test_imagine_posts_a_grid_with_u_v_and_reroll_buttons_when_given_a_prompt(stack: PeelStack):
    d = stack.driver("alice")
    run = await imagine(stack, "a red fox")
    grid = await d.wait_for_message(result_of("a red fox"), timeout=WAIT_S)
    response = run.response()
    assert response is not None and grid.id == response.id  # one message, from "Waiting to start" to the grid
    assert grid.content == f"**a red fox** - <@{d.user_id}> (fast)"
    assert labels(grid) == ["U1", "U2", "U3", "U4", "🔄", "V1", "V2", "V3", "V4"]
    assert all(cid.startswith("peel:") and cid.count(":") == 3 for cid in grid.custom_ids())
    assert grid.attachments[0]["filename"].endswith((".png", ".jpg"))
    job = await latest_job(stack)
    assert job.kind is JobKind.GRID and job.status is JobStatus.DONE and job.ok == 4
    group = await stack.rt.ledger.get_group(job.group_id) if job.group_id else None
    assert group is not None and group.channel_id == int(d.channel_id("general"))


async def test_imagine_echoes_the_prompt_without_pings_links_or_bidi_when_the_prompt_is_hostile(stack: PeelStack):
    d, bob = stack.driver("alice"), stack.driver("bob")
    await imagine(stack, f"<@{bob.user_id}> [free nitro](https://evil.example) a fox\u202egnp.exe")
    grid = await d.wait_for_message(lambda m: "free nitro" in m.content and "U1" in labels(m), timeout=WAIT_S)
    # Discord computes mentions from the content and allowed_mentions: the owner is pinged, as in Midjourney; bob not
    assert [str(m["id"]) for m in grid.raw["mentions"]] == [str(d.user_id)]
    assert grid.raw["mention_everyone"] is False
    assert f"<@{bob.user_id}>" not in grid.content
    assert "[free nitro](" not in grid.content
    assert "\u202e" not in grid.content
    assert grid.content.endswith(f"** - <@{d.user_id}> (fast)")


async def test_imagine_sends_references_to_the_model_when_images_are_attached(stack: PeelStack):
    await grid_of(
        stack, "a fox like these", image=Upload("a.png", png()), image2=Upload("b.png", png(colour=(1, 2, 3)))
    )
    job = await latest_job(stack)
    item = await stack.rt.ledger.get_item(job.id, 0)
    assert item is not None and len(item.inputs.ref_keys) == 2
    assert all(k.startswith("inputs/") for k in item.inputs.ref_keys)


async def test_imagine_refuses_references_beyond_the_models_limit_when_too_many_are_attached(stack: PeelStack):
    d = stack.driver()
    files: dict[str, Any] = {
        f"image{i}" if i > 1 else "image": Upload(f"{i}.png", png(colour=(i, i, i))) for i in range(1, 5)
    }
    await imagine(stack, "four refs", model="flash", **files)
    error = await d.wait_for_message(lambda m: "at most 3 reference images" in ephemeral_embed(m), timeout=WAIT_S)
    assert "gemini-2.5-flash-image" in ephemeral_embed(error)


async def test_imagine_applies_every_inline_parameter_when_given_in_the_prompt(stack: PeelStack):
    d = stack.driver()
    prompt = "a castle --ar 5:3 --seed 7 --no trees, fog --model pro --size 2K --n 2"
    await imagine(stack, prompt)
    grid = await d.wait_for_message(result_of(prompt), timeout=WAIT_S)
    assert labels(grid) == ["U1", "U2", "🔄", "V1", "V2"]
    job = await latest_job(stack)
    assert job.params.model == "gemini-3-pro-image-preview"
    assert (job.params.aspect_ratio, job.params.image_size, job.params.seed, job.params.n) == ("16:9", "2K", 7, 2)
    assert "Do not include: trees, fog" in job.prompt
    assert "ℹ️ --ar 5:3 is not a ratio Gemini makes; using the nearest, 16:9" in grid.content  # under its line


async def test_imagine_takes_model_ratio_and_size_options_when_chosen(stack: PeelStack):
    await grid_of(stack, "option fox", model="flash3", aspect_ratio="3:4", size="2K")
    job = await latest_job(stack)
    assert (job.params.model, job.params.aspect_ratio, job.params.image_size) == (
        "gemini-3.1-flash-image-preview",
        "3:4",
        "2K",
    )


async def test_imagine_answers_an_ephemeral_error_naming_each_parameter_when_malformed(stack: PeelStack):
    d = stack.driver()
    before = len(await stack.rt.ledger.list_jobs())
    run = await imagine(stack, "broken --ar wide --seed x --foo 1 --size 3K")
    error = await d.wait_for_message(lambda m: "Invalid parameter" in ephemeral_embed(m), timeout=WAIT_S)
    text = ephemeral_embed(error)
    for name in ("--ar wide", "--seed x", "--foo", "--size 3K"):
        assert name in text
    assert run.response() is None  # the public "thinking" message is gone
    assert len(await stack.rt.ledger.list_jobs()) == before


async def test_u_posts_the_image_with_its_tools_when_clicked(stack: PeelStack):
    d = stack.driver()
    grid = await grid_of(stack, "tool fox")
    await d.click(grid, label="U2")
    single = await d.wait_for_message(lambda m: "Image #2" in m.content and m.attachments, timeout=WAIT_S)
    assert single.content == f"**tool fox** - Image #2 <@{d.user_id}>"
    assert labels(single) == TOOLS
    link = single.button(label="Full size")
    assert link["style"] == 5 and str(link["url"]).startswith("http://127.0.0.1")
    job = await latest_job(stack)
    assert job.kind is JobKind.GRID  # no model call
    image = await stack.rt.ledger.image_at(job.id, 1)
    assert image is not None and image.message_id == int(single.id)

    def u_styles() -> list[object]:
        return [d._message(grid.id).button(label=f"U{i}")["style"] for i in range(1, 5)]

    await d.wait_until(lambda: u_styles() == [2, 1, 2, 2], timeout=WAIT_S)  # U2 blue, as in Midjourney
    await d.click(d._message(grid.id), label="U4")
    await d.wait_until(lambda: u_styles() == [2, 1, 2, 1], timeout=WAIT_S)
    assert d._message(grid.id).attachments == grid.attachments  # only the buttons changed


async def u1(stack: PeelStack, prompt: str, user: str = "alice"):
    d = stack.driver(user)
    grid = await grid_of(stack, prompt)
    await d.click(grid, label="U1")
    return await d.wait_for_message(lambda m: m.content.startswith(f"**{prompt}** - Image #1"), timeout=WAIT_S)


async def test_v_and_reroll_make_new_grids_for_whoever_clicks_when_clicked(stack: PeelStack):
    bob = stack.driver("bob")
    grid = await grid_of(stack, "shared fox")
    await bob.click(grid, label="V3")
    varied = await bob.wait_for_message(
        lambda m: m.content.startswith("**shared fox** - Variations (Strong) by") and m.attachments, timeout=WAIT_S
    )
    assert f"<@{bob.user_id}>" in varied.content and labels(varied)[:4] == ["U1", "U2", "U3", "U4"]
    job = await latest_job(stack)
    assert job.kind is JobKind.VARIATION and job.owner_id == int(bob.user_id) and job.parent_image_id is not None
    await bob.click(grid, action_id(grid, "r"))
    await bob.wait_for(
        lambda ms: sum(1 for m in ms if result_of("shared fox")(m) and "Variations" not in m.content) >= 2,
        timeout=WAIT_S,
    )
    job = await latest_job(stack)
    assert job.kind is JobKind.REROLL and job.owner_id == int(bob.user_id)


async def test_upscale_uses_a_model_that_takes_the_size_when_the_grids_model_does_not(stack: PeelStack):
    d = stack.driver()
    single = await u1(stack, "upscale fox")
    await d.click(single, label="Upscale 2K")
    up = await d.wait_for_message(
        lambda m: m.content.startswith("**upscale fox** - Upscaled (2K) by") and m.attachments, timeout=WAIT_S
    )
    assert labels(up) == TOOLS
    job = await latest_job(stack)
    assert (job.kind, job.params.image_size, job.params.model) == (JobKind.UPSCALE, "2K", "gemini-3-pro-image-preview")
    assert "\nℹ️ gemini-2.5-flash-image makes 1K images only; upscaled with gemini-3-pro-image-preview." in up.content


async def test_vary_subtle_makes_four_variations_when_clicked(stack: PeelStack):
    d = stack.driver()
    single = await u1(stack, "subtle fox")
    await d.click(single, label="Vary (Subtle)")
    await d.wait_for_message(lambda m: "Variations (Subtle)" in m.content and bool(m.attachments), timeout=WAIT_S)
    job = await latest_job(stack)
    assert job.kind is JobKind.VARIATION and job.total == 4 and "subtle variation" in job.prompt


async def test_edit_modal_edits_the_image_when_submitted(stack: PeelStack):
    d = stack.driver()
    single = await u1(stack, "edit fox")
    opened = await d.click(single, label="Edit")
    assert await opened.wait_ack() == 9
    await d.submit_modal(opened, {"instruction": "give it a hat"})
    edited = await d.wait_for_message(
        lambda m: m.content.startswith("**edit fox ✏️ give it a hat** - Edited by") and m.attachments, timeout=WAIT_S
    )
    assert labels(edited) == TOOLS
    job = await latest_job(stack)
    item = await stack.rt.ledger.get_item(job.id, 0)
    assert job.kind is JobKind.EDIT and item is not None and item.inputs.edit is not None


async def test_zoom_and_pan_fill_a_padded_canvas_when_clicked(stack: PeelStack):
    d = stack.driver()
    single = await u1(stack, "zoom fox")
    await d.click(single, label="Zoom Out 2×")
    await d.wait_for_message(lambda m: "Zoom Out 2× by" in m.content and m.attachments, timeout=WAIT_S)
    zoom = await latest_job(stack)
    await d.click(single, action_id(single, "pl"))
    await d.wait_for_message(lambda m: "Pan Left by" in m.content and m.attachments, timeout=WAIT_S)
    pan = await latest_job(stack)
    assert (zoom.kind, pan.kind) == (JobKind.ZOOM, JobKind.PAN)
    assert pan.params.aspect_ratio == "3:2"  # a 1:1 image widened by half
    for job in (zoom, pan):
        item = await stack.rt.ledger.get_item(job.id, 0)
        assert item is not None and item.inputs.ref_keys[0].startswith("inputs/")


async def test_favourite_marks_the_image_when_its_owner_clicks_heart(stack: PeelStack):
    d = stack.driver()
    single = await u1(stack, "fav fox")
    await d.click(single, action_id(single, "fav"))
    await d.wait_for_message(lambda m: m.is_ephemeral and "Added to your favourites" in m.content)
    job = await latest_job(stack)
    image = await stack.rt.ledger.image_at(job.id, 0)
    assert image is not None and image.is_favourite


async def test_remix_opens_a_prefilled_modal_when_remix_mode_is_on(stack: PeelStack):
    d = stack.driver("bob")
    settings = await d.slash("settings")
    panel = await d.wait_for_message(lambda m: m.is_ephemeral and "Your Peel settings" in m.content)
    assert settings.callback_type == 5
    await d.click(panel, label="Remix mode: off")
    await d.wait_for_message(lambda m: m.id == panel.id and "Remix mode: **on**" in m.content)
    grid = await grid_of(stack, "remix fox --ar 3:2", user="bob")
    opened = await d.click(grid, label="V1")
    assert await opened.wait_ack() == 9
    assert opened.modal is not None
    text_input = opened.modal["components"][0]
    inner = text_input.get("component") or text_input["components"][0]
    assert inner["value"] == "remix fox --ar 3:2"  # exactly as typed: no --model the user never wrote
    await d.submit_modal(opened, {"prompt": "remix wolf --ar 3:2"})
    await d.wait_for_message(lambda m: m.content.startswith("**remix wolf --ar 3:2** - Variations"), timeout=WAIT_S)
    opened = await d.click(grid, action_id(grid, "r"))
    assert await opened.wait_ack() == 9
    await d.submit_modal(opened, {"prompt": "remix bear"})
    await d.wait_for_message(result_of("remix bear"), timeout=WAIT_S)
    await d.click(panel, label="Remix mode: on")
    await d.wait_for_message(lambda m: m.id == panel.id and "Remix mode: **off**" in m.content)


async def test_settings_change_the_defaults_of_later_jobs_when_picked(stack: PeelStack):
    d = stack.driver("admin")
    await d.slash("settings")
    panel = await d.wait_for_message(lambda m: m.is_ephemeral and "Your Peel settings" in m.content)
    await d.select(panel, "peel-settings:grid", ["2"])
    await d.wait_for_message(lambda m: m.id == panel.id and "Grid: `2`" in m.content)
    await d.select(panel, "peel-settings:ratio", ["9:16"])
    await d.wait_for_message(lambda m: m.id == panel.id and "Aspect ratio: `9:16`" in m.content)
    await imagine(stack, "tall fox", user="admin")
    await d.wait_for_message(result_of("tall fox"), timeout=WAIT_S)
    job = await latest_job(stack)
    assert (job.params.n, job.params.aspect_ratio) == (2, "9:16")
    await d.click(panel, label="Reset")
    await d.wait_for_message(lambda m: m.id == panel.id and "Grid: `4`" in m.content)


async def test_a_reply_in_a_thread_edits_the_image_and_chains_earlier_instructions_when_replied_to(stack: PeelStack):
    d = stack.driver()
    thread = stack.pg.state.create_thread(d.channel_id("general"), "fox thread", owner_id=d.user_id)
    await imagine(stack, "thread fox", channel=thread["id"])
    grid = await d.wait_for_message(result_of("thread fox"), channel=thread["id"], timeout=WAIT_S)
    await d.click(grid, label="U1")
    single = await d.wait_for_message(lambda m: "Image #1" in m.content, channel=thread["id"], timeout=WAIT_S)
    await d.send(thread["id"], "make it blue", reply_to=single)
    first = await d.wait_for_message(
        lambda m: m.content.startswith("**thread fox ✏️ make it blue** - Edited by") and m.attachments,
        channel=thread["id"],
        timeout=WAIT_S,
    )
    assert labels(first) == TOOLS
    await d.send(thread["id"], "now add snow", reply_to=first, files=[Upload("snow.png", png(colour=(250, 250, 250)))])
    await d.wait_for_message(
        lambda m: (
            m.content.startswith("**thread fox ✏️ make it blue ✏️ now add snow** - Edited by")
            and "📎 with 1 reference: snow.png" in m.content
            and bool(m.attachments)
        ),
        channel=thread["id"],
        timeout=WAIT_S,
    )
    job = await latest_job(stack)
    item = await stack.rt.ledger.get_item(job.id, 0)
    assert item is not None and item.inputs.edit is not None
    assert item.inputs.edit.history == ("make it blue",) and len(item.inputs.ref_keys) == 1
    group = await stack.rt.ledger.get_group(job.group_id) if job.group_id else None
    assert group is not None and group.thread_id == int(thread["id"])


async def test_envelope_dms_the_image_with_prompt_seed_and_job_id_when_reacted(stack: PeelStack):
    d = stack.driver()
    single = await u1(stack, "dm fox")
    await d.react(single, "✉️")
    dm = stack.pg.state.open_dm(d.user_id)
    message = await d.wait_for_message(lambda m: "dm fox" in m.content, channel=dm["id"], timeout=WAIT_S)
    job = await latest_job(stack)
    assert job.id in message.content and "seed" in message.content and message.attachments
    assert f"[full size]({stack.rt.signer.base_url}/l/" in message.content  # a link that stays, as the DM does


async def test_cross_cancels_a_running_job_and_deletes_a_finished_one_when_reacted(stack: PeelStack):
    d = stack.driver()
    done = await grid_of(stack, "delete fox")
    deleted = await latest_job(stack)
    await d.react(done, "❌")
    await d.wait_until(lambda: done.id not in stack.pg.state.messages, timeout=WAIT_S)

    images: list[Image] = []
    for _ in range(100):  # marked right after Discord took the message down: the group's ZIP leaves them out
        images = await stack.rt.ledger.images(job_id=deleted.id)
        if len(images) == 4 and all(image.deleted_at is not None for image in images):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"the deleted grid's images were not marked: {images}")
    await set_faults(stack, {"latency": 20})
    try:
        run = await imagine(stack, "slow fox")
        await d.wait_for_message(lambda m: "slow fox" in m.content and "generating" in m.content, timeout=WAIT_S)
        await stack.driver("bob").react(run.response() or "", "❌")  # not bob's job: nothing happens
        await d.react(run.response() or "", "❌")
        await d.wait_for_message(lambda m: m.content.endswith("(cancelled)"), timeout=WAIT_S)
        job = await latest_job(stack)
        assert job.status is JobStatus.CANCELLED
    finally:
        await set_faults(stack, {"latency": 0.05})


async def test_queue_and_cancel_list_and_cancel_waiting_jobs_when_asked(stack: PeelStack):
    d = stack.driver()
    await set_faults(stack, {"latency": 20})
    try:
        await imagine(stack, "queued fox")
        await d.wait_for_message(lambda m: "queued fox" in m.content and "generating" in m.content, timeout=WAIT_S)
        job = await latest_job(stack)
        await d.slash("queue")
        listing = await d.wait_for_message(lambda m: "Your queue" in ephemeral_embed(m), timeout=WAIT_S)
        assert job.id in ephemeral_embed(listing) and "running" in ephemeral_embed(listing)
        await stack.driver("admin").slash("queue")
        await stack.driver("admin").wait_for_message(lambda m: "Peel's queue" in ephemeral_embed(m), timeout=WAIT_S)
        await d.slash("cancel")
        picker = await d.wait_for_message(lambda m: m.is_ephemeral and "Which job" in m.content, timeout=WAIT_S)
        await d.select(picker, "peel-cancel:pick", [job.id])
        await d.wait_for_message(lambda m: m.id == picker.id and "cancelled" in m.content)
        await d.wait_for_message(lambda m: m.content.startswith("**queued fox**") and m.content.endswith("(cancelled)"))
        await d.slash("cancel", {"job": job.id})
        await d.wait_for_message(lambda m: "already cancelled" in ephemeral_embed(m))
    finally:
        await set_faults(stack, {"latency": 0.05})


async def test_cancel_picker_posts_a_long_prompt_cut_to_discords_option_label_when_asked(stack: PeelStack):
    d = stack.driver("bob")
    prompt = ("long prompt <@123456789012345678> " * 50)[:1500].strip()  # the longest /imagine takes
    await set_faults(stack, {"latency": 20})
    try:
        await imagine(stack, prompt, user="bob")
        await d.wait_for_message(lambda m: "long prompt" in m.content and "generating" in m.content, timeout=WAIT_S)
        job = await latest_job(stack)
        await d.slash("cancel")
        picker = await d.wait_for_message(lambda m: m.is_ephemeral and "Which job" in m.content, timeout=WAIT_S)
        (option,) = picker.components[0]["components"][0]["options"]
        assert len(option["label"]) <= 100 and option["label"].endswith("…")  # Discord's option label limit
        assert option["label"].startswith("long prompt <@123456789012345678> long prompt")
        await d.select(picker, "peel-cancel:pick", [job.id])
        await d.wait_for_message(lambda m: m.id == picker.id and "cancelled" in m.content)
    finally:
        await set_faults(stack, {"latency": 0.05})


def _all_disabled(message: Any) -> bool:
    controls = [c for row in message.components for c in row.get("components", [])]
    return bool(controls) and all(c.get("disabled") for c in controls)


async def test_settings_and_cancel_panels_grey_out_and_say_so_when_they_time_out(
    stack: PeelStack, monkeypatch: pytest.MonkeyPatch
):
    # By name: discord.py loads each extension as a fresh module object, the one the running bot uses.
    account = sys.modules["bot.exts.account"]
    monkeypatch.setattr(account, "SETTINGS_PANEL_S", 1.0)
    monkeypatch.setattr(account, "CANCEL_PANEL_S", 1.0)
    d = stack.driver("bob")
    before = len(d.messages())  # bob has older panels, still live, from the Remix test
    await d.slash("settings")
    panels = await d.wait_for(lambda ms: [m for m in ms[before:] if "Your Peel settings" in m.content])
    panel = panels[0]
    await d.click(panel, label="Variations: strong")
    await d.wait_for_message(lambda m: m.id == panel.id and "Variations: **subtle**" in m.content)
    expired = await d.wait_for_message(lambda m: m.id == panel.id and "have expired" in m.content, timeout=WAIT_S)
    assert _all_disabled(expired)
    assert "Variations: **subtle**" in expired.content  # the panel as it was last changed, not as it was opened
    with pytest.raises(ActionError, match="disabled"):  # Discord's client cannot press a greyed-out control
        await d.click(expired, label="Variations: subtle")
    await stack.rt.ledger.set_preferences(UserId(int(d.user_id)), {}, now=datetime.now(UTC))

    await set_faults(stack, {"latency": 20})
    try:
        await imagine(stack, "slow fox", user="bob")
        await d.wait_for_message(lambda m: "slow fox" in m.content and "generating" in m.content, timeout=WAIT_S)
        before = len(d.messages())
        await d.slash("cancel")
        pickers = await d.wait_for(lambda ms: [m for m in ms[before:] if "Which job" in m.content], timeout=WAIT_S)
        picker = pickers[0]
        gone = await d.wait_for_message(lambda m: m.id == picker.id and "has expired" in m.content, timeout=WAIT_S)
        assert _all_disabled(gone) and "run `/cancel` again" in gone.content
        await stack.rt.dispatcher.cancel((await latest_job(stack)).id, UserId(int(d.user_id)), is_admin=True)
    finally:
        await set_faults(stack, {"latency": 0.05})


async def test_info_shows_usage_and_limits_when_asked(stack: PeelStack):
    d = stack.driver()
    await d.slash("info")
    info = await d.wait_for_message(lambda m: m.is_ephemeral and m.embeds and "Your Peel info" in ephemeral_embed(m))
    fields = {f["name"]: f["value"] for f in info.embeds[0]["fields"]}
    assert "3 running at once" in fields["Limits"] and "made" in fields["Images"]


async def test_a_safety_block_shows_geminis_reason_and_what_it_costs_when_the_prompt_is_blocked(stack: PeelStack):
    d = stack.driver()
    await imagine(stack, "a forbidden fruit")
    blocked = "Blocked by Gemini's safety filters"
    error = await d.wait_for_message(lambda m: blocked in ephemeral_embed(m), timeout=WAIT_S)
    assert ephemeral_embed(error).lower().count("blocked") == 1  # said once, plainly
    assert "Rephrase the prompt" in ephemeral_embed(error) and "PROHIBITED" not in ephemeral_embed(error)
    assert "bills the prompt's input tokens" in ephemeral_embed(error)
    assert "Nothing was charged" not in ephemeral_embed(error)
    job = await latest_job(stack)
    assert job.status is JobStatus.FAILED and job.ok == 0
    assert not any(m.content.startswith("**a forbidden fruit**") for m in d.messages())


async def test_access_refusal_is_polite_and_queues_nothing_when_the_user_is_not_allowed(stack: PeelStack):
    d = stack.driver("bob")
    grid = await grid_of(stack, "guarded fox")
    assert stack.bot is not None
    policy = stack.bot.access
    stack.bot.access = AccessPolicy(allowed_role_ids=frozenset({1}))
    try:
        before = len(await stack.rt.ledger.list_jobs())
        run = await d.slash("imagine", {"prompt": "not allowed"})
        assert await run.wait_ack() == 4
        await d.wait_for_message(lambda m: "No access" in ephemeral_embed(m))
        await d.click(grid, label="V1")
        await d.wait_for(lambda ms: sum("No access" in ephemeral_embed(m) for m in ms) >= 2)
        assert len(await stack.rt.ledger.list_jobs()) == before
    finally:
        stack.bot.access = policy


async def test_edit_and_remix_modals_opened_before_a_restart_work_when_submitted_after_it(stack: PeelStack):
    d = stack.driver()
    user_id = UserId(int(d.user_id))
    saved = await stack.rt.ledger.get_preferences(user_id)
    await stack.rt.ledger.set_preferences(user_id, {**saved, "remix": True}, now=datetime.now(UTC))
    try:
        single = await u1(stack, "restart fox")
        edit = await d.click(single, label="Edit")
        assert await edit.wait_ack() == 9
        grid = await grid_of(stack, "restart wolf")
        remix = await d.click(grid, label="V2")
        assert await remix.wait_ack() == 9 and remix.modal is not None

        await stack.restart_bot()  # the modals are open on the user's screen; the new process never saw them

        await d.submit_modal(edit, {"instruction": "give it a scarf"})
        await d.wait_for_message(
            lambda m: m.content.startswith("**restart fox ✏️ give it a scarf** - Edited by"), timeout=WAIT_S
        )
        await d.submit_modal(remix, {"prompt": "restart bear"})
        await d.wait_for_message(lambda m: m.content.startswith("**restart bear** - Variations"), timeout=WAIT_S)
    finally:
        await stack.rt.ledger.set_preferences(user_id, saved, now=datetime.now(UTC))


async def test_u_posts_a_short_full_size_button_that_opens_the_full_image_when_store_links_are_1000_characters(
    stack: PeelStack, monkeypatch: pytest.MonkeyPatch
):
    # An S3 presigned URL made with temporary credentials is about 1,000 characters; Discord refuses a link
    # button over 512 and the whole message with it. Here every store link is padded to 1,000 characters (the
    # link server ignores the extra parameter), the one the button would have carried and the one it leads to.
    real_sign = LinkSigner.sign

    def long_sign(self: LinkSigner, key: str, **kw: Any) -> str:
        url = real_sign(self, key, **kw)
        return f"{url}&pad={'x' * (1000 - len(url) - 5)}"

    monkeypatch.setattr(LinkSigner, "sign", long_sign)  # a slotted dataclass: patched on its class
    single = await u1(stack, "presigned fox")  # the strict local Discord would refuse a 1,000-character button
    assert single.attachments  # the CDN attachment stays
    assert single.content == f"**presigned fox** - Image #1 <@{stack.driver().user_id}>"  # no link in the text
    url = str(single.button(label="Full size")["url"])
    assert url.startswith(stack.rt.signer.base_url + "/l/") and len(url) < 200
    job = await latest_job(stack)
    image = await stack.rt.ledger.image_at(job.id, 0)
    assert image is not None
    async with ClientSession() as http:
        async with http.get(url, allow_redirects=False) as resp:
            assert resp.status == 302 and len(resp.headers["Location"]) == 1000  # a fresh store link
        async with http.get(url) as resp:
            assert resp.status == 200
            assert await resp.read() == await stack.rt.backends.store.get_bytes(image.key)


async def test_a_full_size_link_still_opens_the_image_after_the_store_url_it_first_led_to_has_expired(
    stack: PeelStack, monkeypatch: pytest.MonkeyPatch
):
    # Every store URL the web server signs here lives two seconds instead of REDIRECT_EXPIRES_S (an hour), so the
    # first one expires within the test; the stable link itself is not signed with an expiry at all.
    real_sign = LinkSigner.sign

    def short_sign(self: LinkSigner, key: str, *, expires_s: int, **kw: Any) -> str:
        return real_sign(self, key, expires_s=min(expires_s, 2), **kw)  # 2: at least a whole second

    monkeypatch.setattr(LinkSigner, "sign", short_sign)  # a slotted dataclass: patched on its class
    single = await u1(stack, "lasting fox")
    url = str(single.button(label="Full size")["url"])
    assert url.startswith(stack.rt.signer.base_url + "/l/")
    image = await stack.rt.ledger.image_at((await latest_job(stack)).id, 0)
    assert image is not None
    expected = await stack.rt.backends.store.get_bytes(image.key)

    async with ClientSession() as http:
        async with http.get(url, allow_redirects=False) as resp:
            assert resp.status == 302
            first = urljoin(url, resp.headers["Location"])
        async with http.get(first) as resp:
            assert resp.status == 200 and await resp.read() == expected
        # Wait for the clock to pass the first URL's expiry (seconds away), not for anything to be fast.
        await asyncio.sleep(int(parse_qs(urlsplit(first).query)["exp"][0]) - time.time() + 0.2)
        async with http.get(first) as resp:
            assert resp.status == 403 and "expired" in await resp.text()

        async with http.get(url, allow_redirects=False) as resp:
            assert resp.status == 302
            second = urljoin(url, resp.headers["Location"])
        assert second != first
        async with http.get(url) as resp:  # followed as a browser does: a fresh store URL, the image again
            assert resp.status == 200 and [hop.status for hop in resp.history] == [302]
            assert await resp.read() == expected


async def test_a_maximal_prompt_with_mentions_and_markdown_posts_cut_with_an_ellipsis_when_imagined(stack: PeelStack):
    d = stack.driver()
    block = "**[a](https://e.x)** <@123> `c` @everyone ~~||x||~~ "
    prompt = (block * (1500 // len(block) + 1))[:1500].rstrip()  # the longest /imagine accepts; escaping doubles it
    await imagine(stack, prompt)
    grid = await d.wait_for_message(lambda m: "…" in m.content and "U1" in labels(m), timeout=WAIT_S)
    assert len(grid.content) <= 2000 and grid.content.endswith(f"…** - <@{d.user_id}> (fast)")
    assert "\\…" not in grid.content  # no escape cut in half before the ellipsis
    await d.click(grid, label="U1")
    single = await d.wait_for_message(
        lambda m: "Image #1" in m.content and "…" in m.content and bool(m.attachments), timeout=WAIT_S
    )
    assert len(single.content) <= 2000 and single.content.endswith(f"…** - Image #1 <@{d.user_id}>")
