"""The browser page, in headless Chromium: run a command with an attachment, click a button, submit a modal."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.async_api import Browser, Page, expect

from local.discord import Playground
from tests.fakes.playground_bot import PlaygroundTestBot, make_png, running_bot

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.e2e


@pytest.fixture
async def pg() -> AsyncIterator[Playground]:
    async with Playground() as server:
        yield server


@pytest.fixture
async def bot(pg: Playground) -> AsyncIterator[PlaygroundTestBot]:
    async with running_bot(pg) as client:
        yield client


async def run_command(page: Page, prefix: str, name: str) -> None:
    composer = page.locator("#main-composer textarea")
    await composer.click()
    await composer.press_sequentially(prefix)
    await expect(page.locator(f"#main-composer .popup [data-command='{name}']")).to_be_visible()
    await composer.press("Enter")


@pytest.mark.allow_blocking  # Playwright's driver start-up reads its package files on the loop thread
async def test_page_runs_a_command_clicks_a_button_and_submits_a_modal_when_used(
    pg: Playground, bot: PlaygroundTestBot, browser: Browser, tmp_path: Path
):
    page = await browser.new_page(viewport={"width": 1440, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(pg.url)
    await expect(page.locator("#bot-status.online")).to_be_visible()

    reference = make_png(32, (250, 210, 40))
    await run_command(page, "/imag", "imagine")
    await page.locator("#main-composer [data-option='prompt'] input").fill("a banana in space")
    await page.locator("#main-composer [data-option='image'] input").set_input_files(
        {"name": "banana.png", "mimeType": "image/png", "buffer": reference}
    )
    await page.locator("#main-composer [data-action='send-command']").click()

    grid = page.locator("#messages .message", has=page.locator("img[alt='grid.png']"))
    await expect(grid).to_be_visible()
    await expect(grid.locator(".context-line")).to_contain_text("Alice used /imagine")
    await expect(grid.locator(".embed-title")).to_have_text("a banana in space")
    assert bot.received_bytes == [reference]

    await grid.locator("button[data-custom-id='peel:v:1:2']").click()
    await expect(page.locator("#messages .ephemeral-note")).to_be_visible()
    await grid.locator(".thread-link").click()
    await expect(page.locator("#thread-messages img[alt='variation.png']")).to_be_visible()
    await expect(page.locator("#thread-messages")).to_contain_text("Variation 2 of job 1")

    await run_command(page, "/tools", "tools")
    await page.locator("#main-composer [data-action='send-command']").click()
    tools = page.locator("#messages .message", has_text="Tools")
    await tools.locator("button[data-custom-id='tools:remix']").click()
    dialog = page.get_by_role("dialog", name="Remix")
    await dialog.locator("[data-custom-id='remix_prompt']").fill("a blue banana")
    await dialog.locator("button.submit").click()
    await expect(page.locator("#messages")).to_contain_text("Remixing with: a blue banana")
    await expect(dialog).to_have_count(0)

    await page.locator("#thread-composer textarea").fill("make it shiny")
    await page.locator("#thread-composer textarea").press("Enter")
    await expect(page.locator("#thread-messages")).to_contain_text("edit: make it shiny")

    shot = tmp_path / "playground.png"
    await page.screenshot(path=str(shot))
    copy_to = os.environ.get("PLAYGROUND_SCREENSHOT_DIR")
    if copy_to:
        await asyncio.to_thread(shutil.copy, shot, Path(copy_to) / shot.name)
    assert shot.stat().st_size > 10_000
    assert errors == []


@pytest.mark.allow_blocking  # Playwright's driver start-up reads its package files on the loop thread
async def test_page_shows_a_failed_interaction_and_hides_others_ephemeral_messages_when_no_bot_answers(
    browser: Browser, tmp_path: Path
):
    async with Playground(interaction_deadline_s=0.3) as pg:
        pg.state.set_commands([{"name": "ghost", "description": "nobody answers", "options": []}])
        general = pg.state.channel_named("general")["id"]
        answered = await pg.driver("alice").slash("ghost")
        pg.state.respond(
            answered.id, answered.token, {"type": 4, "data": {"content": "for alice only", "flags": 64}}, {}
        )

        page = await browser.new_page(viewport={"width": 1280, "height": 720})
        await page.goto(pg.url)
        await expect(page.locator(".offline-banner")).to_contain_text(pg.api_base)
        await expect(page.locator("#messages")).to_contain_text("for alice only")

        await run_command(page, "/gh", "ghost")
        await page.locator("#main-composer [data-action='send-command']").click()
        await expect(page.locator(".toast.error")).to_have_text("This interaction failed")
        assert any(i.failed for i in pg.state.interactions.values())

        await page.locator("#user-select").select_option("bob")
        await expect(page.locator("#me-avatar")).to_have_text("B")
        await expect(page.locator("#messages")).not_to_contain_text("for alice only")
        await pg.driver("bob").send(general, "hi from bob")
        await expect(page.locator("#messages")).to_contain_text("hi from bob")
        await page.screenshot(path=str(tmp_path / "failed-interaction.png"))
