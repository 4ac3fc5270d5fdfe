"""The single-image tools Midjourney users reach for (Make Square, Custom Zoom, Vary (Region)) and references marked
as style, character or object, through the local Discord with the real discord.py and the embedded back ends."""

import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from PIL import Image, ImageChops

from bot.core.models import JobKind, JobStatus
from local.discord.actions import iter_components
from local.discord.driver import InteractionHandle, Message
from local.discord.state import Upload
from tests.e2e.discord.conftest import WAIT_S, ephemeral_embed, imagine, labels, png, result_of
from tests.fakes.peel_stack import PeelStack, peel_stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(90)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PeelStack]:
    async with peel_stack(
        tmp_path_factory.mktemp("tools"),
        progress_edit_interval_s=0.5,
        batch_fetch_allowed_networks=["127.0.0.0/8"],  # the test's image server; users' links stay public-only
    ) as s:
        yield s


async def latest_job(stack: PeelStack):
    jobs = await stack.rt.ledger.list_jobs()
    return jobs[-1]


async def single(stack: PeelStack, prompt: str, **options: Any):
    d = stack.driver()
    await imagine(stack, prompt, **options)
    grid = await d.wait_for_message(result_of(prompt), timeout=WAIT_S)
    await d.click(grid, label="U1")
    text = prompt.split(" --")[0]
    return await d.wait_for_message(
        lambda m: m.content.startswith(f"**{text}") and "Image #1" in m.content, timeout=WAIT_S
    )


async def received(stack: PeelStack) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{stack.rt.backends.gemini_url}/admin/requests") as resp:
        return list(await resp.json())


async def test_make_square_outpaints_a_wide_image_to_one_to_one_when_clicked(stack: PeelStack):
    d = stack.driver()
    wide = await single(stack, "square fox --ar 3:2")
    assert "Make Square" in labels(wide)
    await d.click(wide, label="Make Square")
    done = await d.wait_for_message(lambda m: "Make Square by" in m.content and m.attachments, timeout=WAIT_S)
    assert "Upscale 2K" in labels(done) and "Make Square" not in labels(done)  # a square result has no Make Square
    job = await latest_job(stack)
    assert (job.kind, job.status, job.params.aspect_ratio) == (JobKind.SQUARE, JobStatus.DONE, "1:1")
    item = await stack.rt.ledger.get_item(job.id, 0)
    assert item is not None and item.inputs.ref_keys[0].startswith("inputs/")
    canvas = Image.open(io.BytesIO(await stack.rt.backends.store.get_bytes(item.inputs.ref_keys[0])))
    assert canvas.width == canvas.height


async def test_make_square_is_not_offered_on_a_square_image(stack: PeelStack):
    assert "Make Square" not in labels(await single(stack, "already square fox"))


async def test_custom_zoom_uses_the_edited_prompt_and_factor_when_the_modal_is_submitted(stack: PeelStack):
    d = stack.driver()
    image = await single(stack, "zoom cat")
    parent = await stack.rt.ledger.image_at((await latest_job(stack)).id, 0)
    opened = await d.click(image, label="Custom Zoom")
    assert await opened.wait_ack() == 9 and opened.modal is not None
    assert opened.modal["components"][0]["components"][0]["value"].startswith("zoom cat")
    await d.submit_modal(opened, {"prompt": "zoom cat in a garden", "zoom": "1.5"})
    done = await d.wait_for_message(
        lambda m: m.content.startswith("**zoom cat in a garden** - Custom Zoom 1.5×") and m.attachments,
        timeout=WAIT_S,
    )
    assert "Vary (Region)" in labels(done)
    job = await latest_job(stack)
    assert job.kind is JobKind.ZOOM and job.prompt.startswith("zoom cat in a garden")
    item = await stack.rt.ledger.get_item(job.id, 0)
    assert item is not None and parent is not None and parent.width is not None
    canvas = Image.open(io.BytesIO(await stack.rt.backends.store.get_bytes(item.inputs.ref_keys[0])))
    assert canvas.width == round(parent.width * 1.5)


async def test_custom_zoom_takes_the_shape_of_the_prompts_ar_when_given(stack: PeelStack):
    d = stack.driver()
    image = await single(stack, "wide cat")
    opened = await d.click(image, label="Custom Zoom")
    assert await opened.wait_ack() == 9
    await d.submit_modal(opened, {"prompt": "wide cat on a beach --ar 16:9", "zoom": "1"})
    await d.wait_for_message(lambda m: "Custom Zoom 1×" in m.content and bool(m.attachments), timeout=WAIT_S)
    job = await latest_job(stack)
    assert (job.kind, job.params.aspect_ratio) == (JobKind.ZOOM, "16:9")


async def test_custom_zoom_refuses_a_factor_outside_one_to_two(stack: PeelStack):
    d = stack.driver()
    image = await single(stack, "far cat")
    opened = await d.click(image, label="Custom Zoom")
    assert await opened.wait_ack() == 9
    await d.submit_modal(opened, {"prompt": "far cat", "zoom": "3"})
    await d.wait_for_message(lambda m: "from 1 to 2" in ephemeral_embed(m), timeout=WAIT_S)


async def region_picker(stack: PeelStack, image: Message, user: str = "alice") -> Message:
    """Click Vary (Region) and return the picker it answers with, to the clicker alone."""
    d = stack.driver(user)
    clicked = await d.click(image, label="Vary (Region)")
    assert await clicked.wait_ack() == 5  # deferred: the grid is drawn first
    await d.wait_until(lambda: (m := clicked.response()) is not None and not m.is_loading, timeout=WAIT_S)
    picker = clicked.response()
    assert picker is not None
    return picker


async def type_a_box(stack: PeelStack, image: Message) -> InteractionHandle:
    """Open the typed-region modal through the picker's "Type a box instead…"."""
    opened = await stack.driver().click(await region_picker(stack, image), label="Type a box instead…")
    assert await opened.wait_ack() == 9
    return opened


def cells_select(message: Message) -> dict[str, Any]:
    return next(c for c in iter_components(message.components) if str(c.get("custom_id", "")).startswith("peel:cells:"))


async def test_vary_region_answers_the_clicker_with_the_image_under_a_numbered_grid_and_a_cells_select(
    stack: PeelStack,
):
    image = await single(stack, "picker dog --ar 3:2")
    source = await stack.rt.ledger.image_at((await latest_job(stack)).id, 0)
    assert source is not None and source.width is not None and source.height is not None
    picker = await region_picker(stack, image)
    assert picker.is_ephemeral and len(picker.attachments) == 1
    assert "Type a box instead…" in labels(picker)
    select = cells_select(picker)
    assert (select["min_values"], select["max_values"]) == (1, 9)
    assert [o["value"] for o in select["options"]] == [str(n) for n in range(1, 10)]
    assert "box around" in select["placeholder"]
    # The image's own button turns blue, as a used tool does (its job starts from the private picker).
    d = stack.driver()
    await d.wait_for_message(
        lambda m: (
            m.id == image.id and any(b.get("label") == "Vary (Region)" and b.get("style") == 1 for b in m.buttons())
        ),
        timeout=WAIT_S,
    )
    async with aiohttp.ClientSession() as http, http.get(picker.attachments[0]["url"]) as resp:
        overlay = Image.open(io.BytesIO(await resp.read())).convert("RGB")
    assert overlay.width / overlay.height == pytest.approx(source.width / source.height, abs=0.01)  # the image's shape
    third = overlay.width // 3
    column = [overlay.getpixel((third, y)) for y in range(overlay.height)]
    assert sum(1 for px in column if px == (255, 255, 255)) > overlay.height // 2  # the grid's line is drawn


async def test_picking_cells_opens_the_prompt_modal_and_varies_their_bounding_box(stack: PeelStack):
    d = stack.driver()
    image = await single(stack, "cells dog")
    source_job = await latest_job(stack)
    picker = await region_picker(stack, image)
    opened = await d.select(picker, str(cells_select(picker)["custom_id"]), ["2", "1"])
    assert await opened.wait_ack() == 9 and opened.modal is not None
    assert opened.modal["custom_id"] == f"peel-region:{source_job.id}:0:12"  # the region travels in the id
    assert opened.modal["components"][0]["components"][0]["value"].startswith("cells dog")
    await d.submit_modal(opened, {"prompt": "two red kites"})
    done = await d.wait_for_message(
        lambda m: m.content.startswith("**two red kites** - Vary (Region: cells 1–2)") and m.attachments,
        timeout=WAIT_S,
    )
    assert "Upscale 2K" in labels(done)
    job = await latest_job(stack)
    assert job.kind is JobKind.REGION and job.status is JobStatus.DONE
    item = await stack.rt.ledger.get_item(job.id, 0)
    assert item is not None and item.inputs.region == pytest.approx((0.0, 0.0, 2 / 3, 1 / 3))


async def test_a_picker_whose_image_is_gone_answers_so_when_cells_are_picked(stack: PeelStack):
    d = stack.driver()
    picker = await region_picker(stack, await single(stack, "gone dog"))
    select = cells_select(picker)
    select["custom_id"] = "peel:cells:no-such-job:0"  # a picker for a job this ledger does not know
    opened = await d.select(picker.id, "peel:cells:no-such-job:0", ["5"])
    assert await opened.wait_ack() == 4 and opened.modal is None
    await d.wait_for_message(lambda m: "no longer known" in ephemeral_embed(m), timeout=WAIT_S)


async def test_vary_region_changes_only_the_region_when_the_modal_is_submitted(stack: PeelStack):
    d = stack.driver()
    image = await single(stack, "region dog")
    source_job = await latest_job(stack)
    opened = await type_a_box(stack, image)
    await d.submit_modal(opened, {"region": "top-left", "prompt": "a red kite"})
    done = await d.wait_for_message(
        lambda m: m.content.startswith("**a red kite** - Vary (Region: top-left)") and m.attachments, timeout=WAIT_S
    )
    assert "Upscale 2K" in labels(done)
    job = await latest_job(stack)
    assert job.kind is JobKind.REGION and job.status is JobStatus.DONE
    item = await stack.rt.ledger.get_item(job.id, 0)
    source = await stack.rt.ledger.image_at(source_job.id, 0)
    assert item is not None and source is not None and item.inputs.edit is not None
    assert item.inputs.edit.source_key == source.key and item.inputs.region is not None
    sent = (await received(stack))[-1]
    assert sent["images"] == 2  # the image and its outlined copy
    assert "from 0% to 33% of the width" in sent["prompt"] and "a red kite" in sent["prompt"]
    before = Image.open(io.BytesIO(await stack.rt.backends.store.get_bytes(source.key))).convert("RGB")
    after = Image.open(io.BytesIO(await stack.rt.backends.store.get_bytes(item.output_key))).convert("RGB")
    assert after.size == before.size
    third_w, third_h = before.width // 3 + 1, before.height // 3 + 1
    outside = Image.new("L", before.size, 255)
    outside.paste(0, (0, 0, third_w, third_h))
    diff = ImageChops.difference(after, before).convert("L")
    assert ImageChops.multiply(diff, outside).getbbox() is None  # not one pixel outside the region changed
    assert diff.crop((0, 0, third_w, third_h)).getbbox() is not None  # the region did


async def test_vary_region_refuses_an_unknown_region_naming_the_accepted_ones(stack: PeelStack):
    d = stack.driver()
    image = await single(stack, "region cow")
    opened = await type_a_box(stack, image)
    await d.submit_modal(opened, {"region": "somewhere nice", "prompt": "a hat"})
    await d.wait_for_message(lambda m: "bottom-right" in ephemeral_embed(m), timeout=WAIT_S)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def images_site() -> AsyncIterator[str]:
    """A web server on 127.0.0.1 serving reference images (allowed by the stack's BATCH_FETCH_ALLOWED_NETWORKS)."""

    async def serve(request: web.Request) -> web.Response:
        if request.match_info["name"] == "page.html":
            return web.Response(text="<html>not an image</html>", content_type="text/html")
        shade = sum(request.match_info["name"].encode()) % 200
        return web.Response(body=png(colour=(shade, 40, 90)), content_type="image/png")

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_sref_and_cref_links_become_references_marked_in_the_prompt_gemini_receives(
    stack: PeelStack, images_site: str
):
    prompt = f"a knight --sref {images_site}/style.png --cref {images_site}/hero.png"
    await imagine(stack, prompt, refs="1=object", image=Upload("a.png", png()))
    grid = await stack.driver().wait_for_message(
        lambda m: "a knight" in m.content and "U1" in labels(m), timeout=WAIT_S
    )
    job = await latest_job(stack)
    item = await stack.rt.ledger.get_item(job.id, 0)
    assert item is not None and len(item.inputs.ref_keys) == 3  # the attachment, then the links in order
    sent = (await received(stack))[-1]
    assert sent["images"] == 3
    assert sent["prompt"].startswith("a knight")
    assert "Image 1 shows an object" in sent["prompt"]
    assert "Use image 2 only for its style" in sent["prompt"]
    assert "Image 3 shows a character" in sent["prompt"]
    # A variation sends only the chosen image: the roles, which name the references, stay behind.
    await stack.driver().click(grid, label="V1")
    await stack.driver().wait_for_message(lambda m: "Variations" in m.content and bool(m.attachments), timeout=WAIT_S)
    varied = await latest_job(stack)
    assert varied.kind is JobKind.VARIATION and varied.prompt.startswith("a knight")
    assert "image 2" not in varied.prompt.lower() and "Image 3" not in varied.prompt


@pytest.mark.parametrize(
    "link",
    ["http://10.1.2.3/a.png", "http://0xa010203/a.png", "http://169.254.169.254/latest", "http://[::ffff:10.0.0.1]/"],
)
async def test_a_link_to_a_private_address_is_refused_before_anything_is_fetched(stack: PeelStack, link: str):
    before = len(await stack.rt.ledger.list_jobs())
    await imagine(stack, f"a knight --sref {link}")
    await stack.driver().wait_for_message(
        lambda m: "private or local address" in ephemeral_embed(m) and link[:20] in ephemeral_embed(m), timeout=WAIT_S
    )
    assert len(await stack.rt.ledger.list_jobs()) == before


async def test_a_link_that_is_not_an_image_is_refused_naming_it(stack: PeelStack, images_site: str):
    await imagine(stack, f"a knight {images_site}/page.html")
    await stack.driver().wait_for_message(
        lambda m: "page.html" in ephemeral_embed(m) and "can't be used as a reference" in ephemeral_embed(m),
        timeout=WAIT_S,
    )


async def test_a_fourth_reference_on_flash_is_refused_naming_the_models_cap(stack: PeelStack, images_site: str):
    links = " ".join(f"{images_site}/{n}.png" for n in range(2))
    await imagine(
        stack, f"a crowd --oref {links}", model="flash", image=Upload("a.png", png()), image2=Upload("b.png", png())
    )
    error = await stack.driver().wait_for_message(
        lambda m: "at most 3 reference images" in ephemeral_embed(m), timeout=WAIT_S
    )
    assert "gemini-2.5-flash-image" in ephemeral_embed(error) and "4 given" in ephemeral_embed(error)
