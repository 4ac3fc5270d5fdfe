"""The playground page's own behaviour, driven in headless Chromium against the whole Peel stack (issue #26).

One browser and one stack for the module; each test opens its own page as alice.
"""

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Locator, Page, Route, expect

from local.discord.driver import Message
from tests.e2e.conftest import chromium
from tests.e2e.discord.conftest import WAIT_S, imagine, result_of
from tests.fakes.peel_stack import PeelStack, peel_stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PeelStack]:
    async with peel_stack(tmp_path_factory.mktemp("page"), worker_env={"LOCAL_GEMINI_DRAW_PX": "64"}) as s:
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest_asyncio.fixture(loop_scope="module")
async def page(stack: PeelStack, browser: Browser) -> AsyncIterator[Page]:
    opened = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    await opened.goto(stack.pg.url)
    yield opened
    await opened.close()
    assert errors == []


async def grid_of(stack: PeelStack, prompt: str) -> Message:
    await imagine(stack, prompt)
    return await stack.driver().wait_for_message(result_of(prompt), timeout=WAIT_S)


async def jobs_made_since(stack: PeelStack, before: int, expected: int) -> int:
    """Return how many jobs the ledger gained, once it gained ``expected`` (or after WAIT_S)."""
    for _ in range(int(WAIT_S * 10)):
        made = len(await stack.rt.ledger.list_jobs()) - before
        if made >= expected:
            return made
        await asyncio.sleep(0.1)
    return len(await stack.rt.ledger.list_jobs()) - before


def shown(page: Page, message: Message, where: str = "#messages") -> Locator:
    return page.locator(f"{where} .message[data-message='{message.id}']")


def dm_messages(stack: PeelStack, user: str = "alice") -> list[Message]:
    state = stack.pg.state
    uid = state.user_named(user)["id"]
    dms = [c["id"] for c in state.channels.values() if c["type"] == 1 and c["recipients"][0]["id"] == uid]
    return [Message(m) for cid in dms for m in state.messages_in(cid, uid)]


@pytest.mark.allow_blocking  # Playwright's driver start-up reads its package files on the loop thread
async def test_reroll_pressed_three_times_in_a_row_makes_three_jobs_when_the_ack_beats_the_page(
    stack: PeelStack, page: Page
):
    grid = await grid_of(stack, "three rerolls")
    before = len(await stack.rt.ledger.list_jobs())

    async def ack_first(route: Route) -> None:
        # Hold the page's own answer until the bot has acknowledged the click and the page had time to hear of
        # it: the order that left the button grey for good.
        response = await route.fetch()
        iid = (await response.json())["interaction_id"]
        await stack.driver().wait_until(lambda: stack.pg.state.interactions[iid].acked, timeout=WAIT_S)
        await asyncio.sleep(0.3)
        await route.fulfill(response=response)

    await page.route("**/playground/api/click", ack_first)
    reroll = page.locator(f".message[data-message='{grid.id}'] button[data-custom-id^='peel:r:']")
    for _ in range(3):
        await expect(reroll).to_be_enabled(timeout=WAIT_S * 1000)
        await reroll.click()
    await expect(reroll).to_be_enabled(timeout=WAIT_S * 1000)
    assert await jobs_made_since(stack, before, 3) == 3


@pytest.mark.allow_blocking
async def test_envelope_and_cross_added_from_the_page_dm_the_image_then_delete_the_result(stack: PeelStack, page: Page):
    grid = await grid_of(stack, "react from the page")
    message = shown(page, grid)
    dms_before = len(dm_messages(stack))

    await message.hover()
    await message.locator(".hover-actions [data-react='✉️']").click()
    await stack.driver().wait_until(lambda: len(dm_messages(stack)) > dms_before, timeout=WAIT_S)
    assert dm_messages(stack)[-1].content.startswith("**react from the page**")  # the bot DMed the image

    await message.hover()
    await message.locator(".hover-actions [data-react='❌']").click()
    await stack.driver().wait_until(lambda: grid.id not in stack.pg.state.messages, timeout=WAIT_S)
    await expect(message).to_have_count(0)  # the bot deleted the finished result


@pytest.mark.allow_blocking
async def test_settings_selects_show_the_current_values_after_a_change(stack: PeelStack, page: Page):
    alice = stack.driver()
    await alice.slash("settings")
    first = await alice.wait_for_message(lambda m: "peel-settings:size" in m.custom_ids(), timeout=WAIT_S)
    size = shown(page, first).locator("select[data-custom-id='peel-settings:size']")
    await expect(size).to_have_value("1K")  # the bot's default, sent as the option's `default`
    await size.select_option("2K")
    await alice.wait_for_message(lambda m: m.id == first.id and "2K" in m.content, timeout=WAIT_S)

    await alice.slash("settings")
    second = await alice.wait_for_message(
        lambda m: m.id != first.id and "peel-settings:size" in m.custom_ids(), timeout=WAIT_S
    )
    panel = shown(page, second)
    await expect(panel.locator("select[data-custom-id='peel-settings:size']")).to_have_value("2K")
    await expect(panel.locator("select[data-custom-id='peel-settings:ratio']")).to_have_value("1:1")
    await expect(size).to_have_value("2K")  # the edited panel too
