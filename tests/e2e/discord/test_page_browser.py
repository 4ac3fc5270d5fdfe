"""The playground page's own behaviour, driven in headless Chromium against the whole Peel stack (issue #26).

One browser and one stack for the module; each test opens its own page as alice.
"""

import asyncio
import io
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from PIL import Image
from playwright.async_api import Browser, Locator, Page, Route, expect

from local.discord import Upload
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


@pytest.mark.allow_blocking  # peel_stack starts worker subprocesses (path lookups on the loop)
async def test_history_and_threads_survive_a_restart_of_the_playground_and_the_bot(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
):
    data = tmp_path_factory.mktemp("restart")
    playground = {"data_dir": data / "playground"}  # where `make run` keeps it: under the bot's data dir
    async with peel_stack(data, playground=playground) as first:
        alice = first.driver()
        grid = await grid_of(first, "kept across restarts")
        await alice.slash("group new", {"name": "kept group"})  # a group is a thread the bot opens
        threads = await alice.wait_until(lambda: alice.threads("general"), timeout=WAIT_S)
        thread = threads[0]

    async with peel_stack(data, playground=playground) as again:
        opened = await browser.new_page(viewport={"width": 1280, "height": 900})
        await opened.goto(again.pg.url)
        old = shown(opened, grid)
        await expect(old.locator("img").first).to_be_visible(timeout=WAIT_S * 1000)
        await expect(opened.locator(f"#channel-list [data-channel='{thread['id']}']")).to_be_visible()
        await old.locator("button", has_text="V2").click()  # and the bot still knows the old grid
        await again.driver().wait_for_message(
            lambda m: m.content.startswith("**kept across restarts** - Variations"), timeout=WAIT_S
        )
        await opened.close()


@pytest.mark.allow_blocking
async def test_a_reply_preview_renders_markdown_and_mentions_like_message_content(stack: PeelStack, page: Page):
    alice, bob = stack.driver("alice"), stack.driver("bob")
    quoted = await bob.send("batch", f"**bold words** for <@{alice.user_id}>\nsecond line")
    reply = await alice.send("batch", "a reply", reply_to=quoted)
    await page.locator("#channel-list .channel", has_text="batch").click()
    preview = shown(page, reply).locator(".reply-ref")
    await expect(preview.locator("b", has_text="bold words")).to_be_visible()
    await expect(preview.locator(".mention", has_text="@Alice")).to_be_visible()
    assert "**" not in await preview.inner_text() and "<@" not in await preview.inner_text()
    assert "second line" not in await preview.inner_text()


@pytest.mark.allow_blocking
async def test_a_dm_says_it_is_a_direct_message_with_the_bot(stack: PeelStack, page: Page):
    state = stack.pg.state
    dm = state.open_dm(stack.driver().user_id)
    state.create_message(dm["id"], state.bot_user, {"content": "hello from the bot"}, {})
    await page.locator(f"#channel-list [data-channel='{dm['id']}']").click()
    heading = page.locator("#messages .welcome")
    await expect(heading.locator("h2")).to_have_text("Peel")
    await expect(heading).to_contain_text("beginning of your direct message history with @Peel")
    await expect(heading).not_to_contain_text("#dm")


def png_of(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (40, 120, 200)).save(out, "PNG")
    return out.getvalue()


AT_BOTTOM = (
    "() => { const el = document.getElementById('messages'); return el.scrollHeight - el.scrollTop - el.clientHeight; }"
)


@pytest.mark.allow_blocking
async def test_the_list_follows_the_newest_message_at_the_bottom_and_stays_put_when_scrolled_up(
    stack: PeelStack, page: Page
):
    bob = stack.driver("bob")
    channel = "images"
    for n in range(25):
        await bob.send(channel, f"filler {n}")
    await page.locator("#channel-list .channel", has_text=channel).click()
    tall = await bob.send(channel, "a tall image", files=[Upload("tall.png", png_of(300, 340))])
    await expect(shown(page, tall).locator("img")).to_be_visible()
    after = await bob.send(channel, "the newest line")  # after the image had loaded and grown the list
    await expect(shown(page, after)).to_be_in_viewport()
    assert await page.evaluate(AT_BOTTOM) < 5

    await page.evaluate("() => { document.getElementById('messages').scrollTop = 0; }")
    await page.wait_for_function("() => document.getElementById('messages').dataset.follow === 'no'")
    later = await bob.send(channel, "while scrolled up")
    await expect(shown(page, later)).to_have_count(1)
    assert await page.evaluate("() => document.getElementById('messages').scrollTop") == 0
    assert await page.evaluate(AT_BOTTOM) > 100  # not yanked down
