"""Screenshots of the playground page with Peel's grid and a single image with its tools (headless Chromium)."""

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Locator, expect
from playwright.async_api import Error as PlaywrightError

from tests.e2e.discord.conftest import WAIT_S, imagine, result_of
from tests.fakes.peel_stack import PeelStack, peel_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

REVIEW_DIR = Path("/tmp/peel-shots")


@pytest.fixture
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PeelStack]:
    async with peel_stack(tmp_path_factory.mktemp("shots"), worker_env={"LOCAL_GEMINI_DRAW_PX": "256"}) as s:
        yield s


async def scroll_to(message: Locator) -> None:
    """Scroll a message into view; the page re-renders messages as they are edited, so retry a detached one."""
    for _ in range(10):
        try:
            await message.scroll_into_view_if_needed(timeout=5000)
            return
        except PlaywrightError as exc:
            if "not attached" not in str(exc):
                raise
            await asyncio.sleep(0.2)
    await message.scroll_into_view_if_needed()


async def save(page_shot: Path, tmp_path: Path) -> None:
    await asyncio.to_thread(REVIEW_DIR.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(shutil.copy, page_shot, REVIEW_DIR / page_shot.name)


@pytest.mark.allow_blocking  # Playwright's driver start-up reads its package files on the loop thread
async def test_page_shows_a_grid_with_its_buttons_and_a_single_image_with_its_tools(
    stack: PeelStack, browser: Browser, tmp_path: Path
):
    d = stack.driver()
    await imagine(stack, "a banana astronaut floating over a neon city --ar 3:2")
    grid = await d.wait_for_message(result_of("a banana astronaut floating over a neon city --ar 3:2"), timeout=WAIT_S)

    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(stack.pg.url)
    shown = page.locator(f"#messages .message[data-id='{grid.id}']")
    if await shown.count() == 0:
        shown = page.locator("#messages .message", has=page.locator("button", has_text="U1")).last
    await expect(shown.locator("img").first).to_be_visible()
    await expect(shown.locator("button", has_text="V4")).to_be_visible()
    await scroll_to(shown)
    grid_shot = tmp_path / "peel-grid.png"
    await page.screenshot(path=str(grid_shot))

    await shown.locator("button", has_text="U2").click()
    single = page.locator("#messages .message", has=page.locator("button", has_text="Upscale 2K")).last
    await expect(single.locator("img").first).to_be_visible(timeout=WAIT_S * 1000)
    await expect(single.locator("button", has_text="Zoom Out 2×")).to_be_visible()
    await scroll_to(single)
    single_shot = tmp_path / "peel-single.png"
    await page.screenshot(path=str(single_shot))

    await expect(shown.locator("button.s1", has_text="U2")).to_be_visible(timeout=WAIT_S * 1000)  # U2 is blue now
    assert await shown.locator("button.s1").count() == 1
    await scroll_to(shown)
    taken_shot = tmp_path / "peel-grid-u2-taken.png"
    await page.screenshot(path=str(taken_shot))

    for shot in (grid_shot, single_shot, taken_shot):
        assert shot.stat().st_size > 10_000
        await save(shot, tmp_path)
    assert errors == []
