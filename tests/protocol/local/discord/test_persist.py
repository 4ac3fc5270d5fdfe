"""The playground's world on disk: a restart over the same data directory keeps it; a damaged file never stops it."""

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest

from local.discord import Playground, Upload
from local.discord import persist as persist_module

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def test_a_restart_over_the_same_data_dir_keeps_guild_channels_threads_messages_files_and_reactions(
    tmp_path: Path,
):
    async with Playground(data_dir=tmp_path) as pg:
        alice = pg.driver("alice")
        first = await alice.send("general", "before the restart", files=[Upload("cat.png", PNG)])
        await alice.react(first, "✅")
        thread = pg.state.create_thread(
            pg.state.channel_named("general")["id"], "kept thread", owner_id=alice.user_id, message_id=first.id
        )
        await alice.send(thread["id"], "in the thread")
        dm = pg.state.open_dm(alice.user_id)
        pg.state.create_message(dm["id"], pg.state.bot_user, {"content": "a DM from the bot"}, {})
        ids = (pg.state.app_id, pg.state.guild_id, first.id, thread["id"])
        old_token = pg.token

    async with Playground(data_dir=tmp_path) as again:
        alice = again.driver("alice")
        assert (again.state.app_id, again.state.guild_id) == ids[:2]
        assert again.token != old_token and again.token.startswith(old_token.split(".")[0])  # the same bot id
        kept = next(m for m in alice.messages("general") if m.id == first.id)
        assert kept.content == "before the restart" and kept.reactions == {"✅": 1} and kept.thread_id == ids[3]
        assert [m.content for m in alice.messages("kept thread")] == ["in the thread"]
        assert [m.content for m in alice.messages(dm["id"])] == ["a DM from the bot"]
        url = kept.attachments[0]["url"]
        assert url.startswith(again.state.base_url)  # the link follows the new port
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200 and await resp.read() == PNG
        newer = await alice.send("general", "after the restart")
        assert int(newer.id) > int(ids[2])


async def test_a_damaged_world_is_set_aside_with_a_warning_and_the_playground_starts_fresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    await asyncio.to_thread((tmp_path / "world.json").write_text, '{"format": 1, "users": [')
    with caplog.at_level(logging.WARNING, logger="local.discord.persist"):
        async with Playground(data_dir=tmp_path) as pg:
            assert pg.driver("alice").messages("general") == []
    assert "damaged" in caplog.text
    names = await asyncio.to_thread(lambda: sorted(p.name.split("-")[0] for p in tmp_path.iterdir()))
    assert names == ["files", "world.json", "world.json.damaged"]  # the fresh world was saved in its place


async def test_the_saved_world_keeps_only_the_newest_messages_of_each_channel_and_their_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(persist_module, "MAX_MESSAGES_PER_CHANNEL", 2)
    async with Playground(data_dir=tmp_path) as pg:
        alice = pg.driver("alice")
        for n in range(4):
            await alice.send("general", f"message {n}", files=[Upload(f"f{n}.png", PNG)])

    async with Playground(data_dir=tmp_path) as again:
        assert [m.content for m in again.driver("alice").messages("general")] == ["message 2", "message 3"]
        assert len(await asyncio.to_thread(lambda: list((tmp_path / "files").iterdir()))) == 2


async def test_a_message_changed_after_a_save_is_saved_changed(tmp_path: Path):
    async with Playground(data_dir=tmp_path) as pg:
        alice = pg.driver("alice")
        sent = await alice.send("general", "first words")
        assert pg.world_file is not None
        await pg.world_file.save()  # encodes the message once
        pg.state.edit_message(pg.state.messages[sent.id], {"content": "edited words"}, {})
        await alice.react(sent, "👍")

    async with Playground(data_dir=tmp_path) as again:
        kept = again.driver("alice").messages("general")[0]
        assert (kept.content, kept.reactions) == ("edited words", {"👍": 1})
