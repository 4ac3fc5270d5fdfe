"""A real discord.py bot against the playground, driven by the test driver."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from local.discord import Playground, Upload
from tests.fakes.playground_bot import FakeClock, PlaygroundTestBot, make_png, running_bot

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture
async def pg() -> AsyncIterator[Playground]:
    async with Playground() as server:
        yield server


@pytest.fixture
async def bot(pg: Playground) -> AsyncIterator[PlaygroundTestBot]:
    async with running_bot(pg) as client:
        yield client


async def test_bot_registers_commands_and_sees_the_guild_when_connected(pg: Playground, bot: PlaygroundTestBot):
    assert {c["name"] for c in pg.state.commands.values()} == {"imagine", "tools", "style", "Describe"}
    guild = bot.get_guild(int(pg.state.guild_id))
    assert guild is not None
    assert {c.name for c in guild.text_channels} == {"general", "images", "batch"}
    assert bot.user is not None and str(bot.user.id) == pg.state.app_id
    assert pg.gateway.identifies[0]["intents"] == bot.intents.value


async def test_slash_command_with_attachment_defers_and_follows_up_when_run(pg: Playground, bot: PlaygroundTestBot):
    alice = pg.driver("alice")
    ref = make_png(8, (1, 2, 3))
    run = await alice.slash("imagine", {"prompt": "a red fox", "image": Upload("ref.png", ref)})
    assert await run.wait_ack() == 5
    grid = await alice.wait_for_message(lambda m: m.attachments and not m.is_loading)
    assert grid.id == run.interaction.original_id  # the first follow-up replaces the "thinking" message
    assert grid.content == "**a red fox** (job 1)"
    assert grid.attachments[0]["filename"] == "grid.png"
    assert alice.attachment_bytes(grid.attachments[0]).startswith(b"\x89PNG")
    assert grid.attachments[0]["width"] == 256
    assert grid.embeds[0]["title"] == "a red fox"
    assert grid.embeds[0]["image"]["url"] == grid.attachments[0]["url"]  # attachment:// resolved
    assert grid.custom_ids() == ["peel:v:1:1", "peel:v:1:2"]
    assert bot.received_bytes == [ref]  # the bot downloaded the attachment from the playground's CDN

    click = await alice.click(grid, label="V2")
    assert await click.wait_ack() == 6
    thread_id = grid.id  # a thread started from a message shares its id
    variation = await alice.wait_for_message(lambda m: m.attachments, channel=thread_id)
    assert variation.content == "Variation 2 of job 1"
    notice = await alice.wait_for_message(lambda m: m.is_ephemeral)
    assert notice.content == f"Variation 2 posted in <#{thread_id}>"
    assert notice not in pg.driver("bob").messages()  # ephemeral: only alice sees it
    assert not [r for r in pg.state.requests if " -> 4" in r or " -> 5" in r], pg.state.requests


async def test_modal_select_reaction_and_thread_reply_reach_the_bot_when_used(pg: Playground, bot: PlaygroundTestBot):
    alice = pg.driver("alice")
    run = await alice.slash("tools")
    assert await run.wait_ack() == 4
    tools = run.response()
    assert tools is not None

    opened = await alice.click(tools, label="Remix")
    assert await opened.wait_ack() == 9
    assert opened.modal is not None and opened.modal["title"] == "Remix"
    submitted = await alice.submit_modal(opened, {"remix_prompt": "a blue fox"})
    assert await submitted.wait_ack() == 4
    await alice.wait_for_message(lambda m: m.content == "Remixing with: a blue fox")

    picked = await alice.select(tools, "tools:ratio", ["16:9"])
    assert await picked.wait_ack() == 7
    await alice.wait_for_message(lambda m: m.content == "Aspect ratio set to 16:9")

    await alice.react(tools, "🍌")
    await alice.wait_until(lambda: bot.reactions)
    assert bot.reactions == [("🍌", int(alice.user_id))]

    thread = pg.state.create_thread(pg.state.channel_named("general")["id"], "chat", owner_id=alice.user_id)
    await alice.wait_until(lambda: bot.get_channel(int(thread["id"])))
    await alice.send(thread["id"], "make it blue")
    reply = await alice.wait_for_message(lambda m: m.author_id == pg.state.app_id, channel=thread["id"])
    assert reply.content == "edit: make it blue"


async def test_discord_py_raises_invalid_form_body_when_content_is_too_long(pg: Playground, bot: PlaygroundTestBot):
    channel = bot.get_channel(int(pg.state.channel_named("general")["id"]))
    assert isinstance(channel, discord.TextChannel)
    with pytest.raises(discord.HTTPException) as caught:
        await channel.send("x" * 2001)
    assert (caught.value.status, caught.value.code) == (400, 50035)
    assert "In content: Must be 2000 or fewer in length." in caught.value.text


async def test_discord_py_waits_out_the_edit_rate_limit_when_editing_fast():
    async with Playground(edit_rate_limit=2, edit_rate_window_s=0.2) as pg, running_bot(pg) as bot:
        channel = bot.get_channel(int(pg.state.channel_named("general")["id"]))
        assert isinstance(channel, discord.TextChannel)
        message = await channel.send("0%")
        started = asyncio.get_running_loop().time()
        for pct in range(1, 6):
            message = await message.edit(content=f"{pct * 20}%")
        assert pg.state.messages[str(message.id)]["content"] == "100%"
        assert asyncio.get_running_loop().time() - started >= 0.35  # 5 edits at 2 per 0.2 s need 2 resets
        statuses = [r.rsplit(" ", 1)[1] for r in pg.state.requests if r.startswith("PATCH")]
        # discord.py reads X-RateLimit-Remaining: 0 and waits for the reset instead of hitting a 429.
        assert statuses == ["200"] * 5
        assert bot.http._buckets


async def test_discord_py_gets_unknown_interaction_when_it_answers_after_three_seconds():
    clock = FakeClock()
    async with Playground(clock=clock) as pg, running_bot(pg) as bot:
        errors: list[int] = []

        @app_commands.command(name="slow", description="answers too late")
        async def slow(interaction: discord.Interaction) -> None:
            clock.now += 3.5  # the handler "took" 3.5 s before its first response
            try:
                await interaction.response.send_message("late")
            except discord.NotFound as exc:
                errors.append(exc.code)

        bot.tree.add_command(slow)
        await bot.tree.sync()
        run = await pg.driver().slash("slow")
        await pg.driver().wait_until(lambda: errors)
        assert errors == [10062]
        assert run.interaction.failed and not run.interaction.acked
        with pytest.raises(AssertionError, match="no response within the deadline"):
            await run.wait_ack()


async def test_auto_sharded_bot_finds_the_gateway_through_gateway_bot_when_connecting(pg: Playground):
    client = commands.AutoShardedBot(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.05)
    with pg.discord_py():
        await client.login(pg.token)
        task = asyncio.create_task(client.connect(reconnect=False))
        try:
            await asyncio.wait_for(client.wait_until_ready(), 10)
            assert client.shard_count == 1
            assert client.get_guild(int(pg.state.guild_id)) is not None
            assert any(r.startswith("GET /api/v10/gateway/bot -> 200") for r in pg.state.requests)
        finally:
            await client.close()
            await asyncio.wait_for(task, 5)


async def test_bot_resumes_its_session_and_keeps_working_when_asked_to_reconnect(
    pg: Playground, bot: PlaygroundTestBot
):
    resumed: list[bool] = []

    async def on_resumed() -> None:
        resumed.append(True)

    bot.add_listener(on_resumed)
    alice = pg.driver("alice")
    await pg.gateway.request_reconnect()  # op 7, as Discord sends before maintenance
    await alice.wait_until(lambda: resumed)
    run = await alice.slash("tools")
    assert await run.wait_ack() == 4
    assert len(pg.gateway.sessions) == 1  # the same session, resumed rather than identified again
    assert len(pg.gateway.identifies) == 1


async def test_autocomplete_choices_come_from_the_bot_when_typing(pg: Playground, bot: PlaygroundTestBot):
    alice = pg.driver("alice")
    typed = await alice.autocomplete("style", "name", {"name": "w"})
    assert await typed.wait_ack() == 8
    assert [c["value"] for c in typed.choices or []] == ["watercolor", "woodcut", "wireframe"]
    run = await alice.slash("style", {"name": "woodcut"})
    assert await run.wait_ack() == 4
    reply = run.response()
    assert reply is not None and reply.is_ephemeral and reply.content == "Style: woodcut"


async def test_dynamic_button_still_works_when_clicked_after_the_bot_restarted(pg: Playground):
    alice = pg.driver("alice")
    async with running_bot(pg):
        run = await alice.slash("imagine", {"prompt": "a cat"})
        grid = await alice.wait_for_message(lambda m: m.attachments and not m.is_loading)
        assert run.interaction.original_id == grid.id
    assert pg.gateway.connected == 0
    async with running_bot(pg) as restarted:
        assert restarted.jobs == 0  # nothing in memory: the button's custom id carries the job
        click = await alice.click(grid, label="V1")
        assert await click.wait_ack() == 6
        variation = await alice.wait_for_message(lambda m: m.attachments, channel=grid.id)
        assert variation.content == "Variation 1 of job 1"
    assert len(pg.gateway.identifies) == 2


async def test_message_context_menu_reaches_the_bot_with_its_target_when_run(pg: Playground, bot: PlaygroundTestBot):
    alice = pg.driver("alice")
    note = await alice.send("general", "bananas are berries")
    run = await alice.context_menu("Describe", message=note)
    assert await run.wait_ack() == 4
    reply = run.response()
    assert reply is not None and reply.content == "That message says 'bananas are berries'"
