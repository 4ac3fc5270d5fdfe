"""The page formats what Discord's client formats: timestamp mentions (`<t:unix:style>`), thread previews."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from playwright.async_api import Browser, expect

from local.discord import Playground

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.e2e

# 2021-04-20 16:20:30 UTC, Discord's own example (reference#message-formatting-timestamp-styles).
EXAMPLE = 1618935630


@pytest.fixture
async def pg() -> AsyncIterator[Playground]:
    async with Playground() as server:
        yield server


@pytest.mark.allow_blocking  # Playwright's driver start-up reads its package files on the loop thread
async def test_timestamp_mentions_render_in_each_style_with_the_full_date_as_tooltip(pg: Playground, browser: Browser):
    in_two_hours = int(time.time()) + 2 * 3600 + 30
    styles = " | ".join(f"{s}=<t:{EXAMPLE}:{s}>" for s in "tTdDfFsS")
    content = f"{styles} | default=<t:{EXAMPLE}> | resets <t:{in_two_hours}:R> | bad=<t:{EXAMPLE}:x>"
    pg.state.create_message(pg.driver().channel_id("general"), pg.state.bot_user, {"content": content}, {})
    context = await browser.new_context(locale="en-GB", timezone_id="UTC")
    page = await context.new_page()
    await page.goto(pg.url)
    message = page.locator("#messages .message .content").last
    expected = (
        "t=16:20 | T=16:20:30 | d=20/04/2021 | D=20 April 2021 | f=20 April 2021 at 16:20"
        " | F=Tuesday, 20 April 2021 at 16:20 | s=20/04/2021, 16:20 | S=20/04/2021, 16:20:30"
        " | default=20 April 2021 at 16:20 | resets in 2 hours | bad=<t:1618935630:x>"
    )
    await expect(message).to_have_text(expected)
    first = message.locator(".timestamp-mention").first
    await expect(first).to_have_attribute("title", "Tuesday, 20 April 2021 at 16:20")
    await expect(message.locator(".timestamp-mention")).to_have_count(10)  # every valid one, not the bad style
    await context.close()


@pytest.mark.allow_blocking  # Playwright's driver start-up reads its package files on the loop thread
async def test_a_thread_card_previews_its_newest_message_formatted_not_as_raw_markdown(
    pg: Playground, browser: Browser
):
    state = pg.state
    thread = state.create_thread(pg.driver().channel_id("general"), "make it blue", owner_id=state.app_id)
    content = "🖼️ **First results** (4 of 200): 1. `000.png`\nsecond line"
    state.create_message(thread["id"], state.bot_user, {"content": content}, {})
    page = await browser.new_page()
    await page.goto(pg.url)
    preview = page.locator(f".thread-card[data-thread='{thread['id']}'] .thread-preview")
    await expect(preview).to_have_text("🖼️ First results (4 of 200): 1. 000.png")
    await expect(preview.locator("b")).to_have_text("First results")
    await page.close()
