"""A 1,000-image batch's gallery in headless Chromium (Playwright): made through the local stack (`/batch` in the
local Discord with real discord.py, the dispatcher, workers, the local Gemini server), opened from its thread's
"Gallery" button, then browsed, filtered, searched, selected and downloaded as a user would.

The batch's prompts come from its `prompts.csv`: three carry the Gemini server's block word (blocked), two fail on
injected 503s (failed), and two are hostile (`<script>…`, `"><img src=x onerror=…>`), as is one file name. A dialog
would mean a script ran: every test listens for one.
"""

import asyncio
import csv
import io
import json
import time
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from bot.core.models import ItemStatus, JobStatus
from local.discord.state import Upload
from tests.e2e.bot._batchzips import tiny_png
from tests.e2e.bot.test_batch_e2e import _job_of_thread, new_thread, plan_message, summaries
from tests.e2e.conftest import VISIBLE_IMAGES_LOADED, chromium
from tests.fakes.peel_stack import PeelStack, peel_stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

N = 1000
BLOCKED = {100, 200, 300}
SCRIPT_PROMPT = "<script>alert('prompt')</script> a fox in the snow"
IMG_PROMPT = '"><img src=x onerror=alert(1)> a heron at dawn'
HOSTILE_FILE = 'img/"><img src=x onerror=alert(2)>.png'
WORD = "lighthouse"  # in exactly one prompt, for search


def batch_zip() -> bytes:
    names = [f"img/p{i:05d}.png" for i in range(N)]
    names[11] = HOSTILE_FILE
    prompts = [f"a watercolour of a cat, number {i}" for i in range(N)]
    prompts[7], prompts[8], prompts[500] = SCRIPT_PROMPT, IMG_PROMPT, f"a red {WORD} in a storm"
    for i in BLOCKED:
        prompts[i] = f"a forbidden picture, number {i}"
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["file", "prompt"])
    writer.writerows(zip(names, prompts, strict=True))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for i, name in enumerate(names):
            archive.writestr(name, tiny_png(i))
        archive.writestr("prompts.csv", table.getvalue())
    return out.getvalue()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PeelStack]:
    root = tmp_path_factory.mktemp("peel-gallery")
    async with peel_stack(
        root / "data",
        worker_env={
            "LOCAL_GEMINI_DRAW_PX": "256",
            "LOCAL_GEMINI_LATENCY": "0",
            "GEMINI_MAX_ATTEMPTS": "1",
            "LOCAL_GEMINI_BLOCK_WORD": "forbidden",
        },
        item_max_attempts=1,
        batch_max_items=N,
        batch_progress_interval_s=1.0,
    ) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the module, on the module's loop (the stack's)."""
    async with chromium() as launched:
        yield launched


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gallery(stack: PeelStack) -> dict[str, Any]:
    """Run the batch through Discord and return its thread, job and gallery URL (from its summary's button)."""
    alice = stack.driver("alice")
    async with aiohttp.ClientSession() as http:
        faults = {"next_5xx": 2, "status_5xx": 503}
        async with http.post(f"{stack.rt.backends.gemini_url}/admin/faults", json=faults) as resp:
            assert resp.status == 200
    data = await asyncio.to_thread(batch_zip)
    before = len(alice.messages())
    await alice.slash("batch", {"zip": Upload("gallery.zip", data)})
    plan = await plan_message(alice, before)
    assert "Batch ready" in plan.content, plan.content
    known = {t["id"] for t in alice.threads()}
    await alice.click(plan, label="Start")
    thread = await new_thread(alice, known)
    summary = await summaries(alice, thread["id"], 1, timeout=240)
    job = await _job_of_thread(stack, thread["id"])
    assert job.status is JobStatus.DONE
    buttons = [c for row in summary.components for c in row.get("components", [])]
    [url] = [c["url"] for c in buttons if c.get("label") == "Gallery"]
    return {"thread": thread["id"], "job": job, "url": url}


async def open_page(browser: Browser, url: str) -> tuple[Page, list[str], list[int]]:
    """Open a page recording dialogs (a script ran) and the bytes of every response."""
    page = await browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    dialogs: list[str] = []
    sizes: list[int] = []

    async def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    async def on_response(response: Any) -> None:
        try:
            sizes.append(len(await response.body()))
        except Exception:
            sizes.append(0)

    page.on("dialog", on_dialog)
    page.on("response", on_response)
    return page, dialogs, sizes


@pytest.mark.timeout(400)
@pytest.mark.allow_blocking  # Playwright's driver start-up reads its package files on the loop thread
async def test_the_first_screen_of_a_1000_image_gallery_is_small_and_quick(
    gallery: dict[str, Any], browser: Browser
) -> None:
    page, dialogs, sizes = await open_page(browser, gallery["url"])
    start = time.monotonic()
    await page.goto(gallery["url"])
    await page.wait_for_function(VISIBLE_IMAGES_LOADED, timeout=30_000)
    first_screen_s = time.monotonic() - start
    await page.wait_for_load_state("networkidle")
    transferred = sum(sizes)
    print(f"gallery first screen: {first_screen_s:.2f} s, {transferred / 1e6:.2f} MB")
    assert transferred < 2_000_000, transferred
    assert first_screen_s < 10  # a bound for a loaded CI machine; bench/gallery_page.py measures the 1 s target
    summary = await page.locator("#summary").inner_text()
    assert f"{N:,}" in summary or str(N) in summary
    assert await page.locator("#filter-made .count").inner_text() == f"({N - 5})"
    assert dialogs == []


@pytest.mark.timeout(120)
@pytest.mark.allow_blocking
async def test_select_10_and_download_gives_a_zip_of_exactly_those_10(
    gallery: dict[str, Any], browser: Browser
) -> None:
    page, dialogs, _ = await open_page(browser, gallery["url"])
    await page.goto(gallery["url"] + ("&" if "?" in gallery["url"] else "?") + "filter=made")
    cells = page.locator("#grid li.cell[data-state=made]")
    chosen = []
    for n in range(10):
        cell = cells.nth(n * 3)
        chosen.append((await cell.get_attribute("data-job"), int(await cell.get_attribute("data-index") or -1)))
        await cell.locator("input.pick").check()
    await expect(page.locator("#selected-count")).to_have_text("10 selected")
    async with page.expect_download() as info:
        await page.locator("#download-selected").click()
    download = await info.value
    path = await download.path()
    with zipfile.ZipFile(path) as archive:
        images = [n for n in archive.namelist() if n.endswith(".png")]
        manifest = json.loads(archive.read("manifest.json"))
        rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert len(images) == 10 and len(rows) == 10 and len(manifest["items"]) == 10
    assert dialogs == []


@pytest.mark.timeout(120)
@pytest.mark.allow_blocking
async def test_the_failed_filter_shows_exactly_the_failed_items_with_their_reasons(
    gallery: dict[str, Any], browser: Browser, stack: PeelStack
) -> None:
    job = gallery["job"]
    failed = {i.index: i.error_code for i in await stack.rt.ledger.items(job.id) if i.error_code}
    page, dialogs, _ = await open_page(browser, gallery["url"])
    await page.goto(gallery["url"])
    await page.locator("#filter-failed").click()
    cells = page.locator("#grid li.cell")
    shown = {int(await cells.nth(n).get_attribute("data-index") or -1) for n in range(await cells.count())}
    assert shown == {i for i, code in failed.items() if code != "SAFETY"} and len(shown) == 2
    assert await page.locator("#grid .reason").first.inner_text() == "The image service failed; try again later."
    await page.locator("#filter-blocked").click()
    cells = page.locator("#grid li.cell")
    shown = {int(await cells.nth(n).get_attribute("data-index") or -1) for n in range(await cells.count())}
    assert shown == BLOCKED
    assert "safety" in (await page.locator("#grid .reason").first.inner_text()).lower()
    assert dialogs == []


@pytest.mark.timeout(120)
@pytest.mark.allow_blocking
async def test_search_finds_an_item_by_a_word_of_its_prompt(gallery: dict[str, Any], browser: Browser) -> None:
    page, dialogs, _ = await open_page(browser, gallery["url"])
    await page.goto(gallery["url"])
    await page.get_by_label("Search prompts").fill(WORD)
    await page.get_by_label("Search prompts").press("Enter")
    cells = page.locator("#grid li.cell")
    await expect(cells).to_have_count(1)
    assert await cells.first.get_attribute("data-index") == "500"
    assert dialogs == []


@pytest.mark.timeout(120)
@pytest.mark.allow_blocking
async def test_hostile_prompts_and_file_names_render_as_text_and_run_nothing(
    gallery: dict[str, Any], browser: Browser
) -> None:
    page, dialogs, _ = await open_page(browser, gallery["url"])
    await page.goto(gallery["url"])
    for word in ("fox", "heron"):
        await page.get_by_label("Search prompts").fill(word)
        await page.get_by_label("Search prompts").press("Enter")
        await expect(page.locator("#grid li.cell")).to_have_count(1)
        caption = await page.locator("#grid .caption").first.inner_text()
        assert (SCRIPT_PROMPT if word == "fox" else IMG_PROMPT)[:20] in caption
        await page.locator("#grid a.open").first.click()
        await expect(page.locator("#prompt")).to_contain_text(word)
        await page.go_back()
    item = gallery["url"].split("?")[0] + f"/item/{gallery['job'].id}/11"
    await page.goto(item)
    source = await page.locator("#source").inner_text()
    assert "onerror=alert(2)" in source  # the name as text (its unsafe characters replaced at intake)
    await page.wait_for_timeout(300)
    assert dialogs == []
    assert await page.locator("img[src='x']").count() == 0


async def ephemeral_answer(driver: Any, name: str, options: dict[str, object], *, channel: str) -> Any:
    before = len(driver.messages(channel))
    await driver.slash(name, options, channel=channel)
    found = await driver.wait_for(
        lambda ms: [m for m in ms[before:] if m.is_ephemeral and not m.is_loading and (m.content or m.embeds)],
        channel=channel,
        timeout=20,
    )
    return found[0]


def link_in(message: Any) -> str:
    buttons = [c for row in message.components for c in row.get("components", [])]
    [url] = [c["url"] for c in buttons if c.get("label") == "Gallery"]
    return str(url)


async def status_of(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url, allow_redirects=False) as resp:
        return resp.status, (await resp.read()).decode(errors="replace")


@pytest.mark.timeout(120)
async def test_group_gallery_gives_the_link_and_revoke_replaces_it_for_the_owner_only(
    gallery: dict[str, Any], stack: PeelStack
) -> None:
    alice, bob = stack.driver("alice"), stack.driver("bob")
    thread = gallery["thread"]
    answer = await ephemeral_answer(bob, "group gallery", {}, channel=thread)
    group_link = link_in(answer)
    assert group_link == gallery["url"].split("?")[0]  # the group's one link; the batch's adds ?job=
    async with aiohttp.ClientSession() as http:
        assert (await status_of(http, group_link))[0] == 200

        refused = await ephemeral_answer(bob, "group gallery", {"revoke": True}, channel=thread)
        assert "owner" in json.dumps(refused.embeds) + refused.content
        assert (await status_of(http, group_link))[0] == 200  # bob changed nothing

        new_link = link_in(await ephemeral_answer(alice, "group gallery", {"revoke": True}, channel=thread))
        assert new_link != group_link
        status, body = await status_of(http, group_link)
        assert status == 403 and "revoked" in body and "watercolour" not in body and gallery["job"].id not in body
        assert (await status_of(http, gallery["url"]))[0] == 403  # the posted batch link went with it
        assert (await status_of(http, new_link))[0] == 200

        token = new_link.rsplit("/", 1)[1]
        tampered = new_link[: -len(token)] + token[:-1] + ("A" if token[-1] != "A" else "B")
        for bad in (tampered, new_link[: -len(token)] + "nope", new_link + "x"):
            status, body = await status_of(http, bad)
            assert status == 404 and "watercolour" not in body, bad

        # Another group's link reaches nothing of this one.
        known = {t["id"] for t in alice.threads()}
        await ephemeral_answer(alice, "group new", {"name": "empty group"}, channel="general")
        other_thread = next(t for t in alice.threads() if t["id"] not in known)["id"]
        first = await alice.wait_for_message(lambda m: "New group" in m.content, channel=other_thread, timeout=20)
        other = link_in(first)
        assert other.split("/g/")[1] != token
        # A made item (which two failed on the injected 503s depends on the order Gemini took them in).
        made = next(i.index for i in await stack.rt.ledger.items(gallery["job"].id) if i.status is ItemStatus.OK)
        job_id = gallery["job"].id
        for path in (f"/item/{job_id}/{made}", f"/thumb/{job_id}/{made}", f"/image/{job_id}/{made}"):
            assert (await status_of(http, other + path))[0] == 404, path
            assert (await status_of(http, new_link + path))[0] in (200, 302), path
