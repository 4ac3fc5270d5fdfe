"""The remote driver acts as a user over the page's HTTP API, for playgrounds in another process."""

from __future__ import annotations

import pytest

from local.discord import Playground, Upload
from local.discord.remote import RemoteActionError, RemoteDriver
from tests.fakes.playground_bot import make_png, running_bot


async def test_remote_driver_runs_commands_clicks_and_submits_modals_when_connected_over_http():
    async with Playground() as pg, running_bot(pg) as bot, RemoteDriver(pg.url, "alice") as alice:
        reference = make_png(8)
        await alice.slash("imagine", {"prompt": "owl", "image": Upload("owl.png", reference, "image/png")})

        found = await alice.wait_for_message(lambda m: m.attachments and not m.is_loading)
        assert bot.received_bytes == [reference]
        await alice.click(found, label="V1")
        await alice.wait_for(lambda msgs: [m for m in msgs if m.content.startswith("Variation 1")], channel=found.id)

        opened = await alice.slash("tools")
        tools = await alice.wait_for_message(lambda m: m.content == "Tools")
        assert (await alice.interaction(opened))["callback_type"] == 4
        remix = await alice.click(tools, "tools:remix")
        modal = (await alice.wait_ack(remix))["modal"]
        assert modal is not None and modal["title"] == "Remix"
        await alice.submit_modal(remix, {"remix_prompt": "a blue owl"})
        await alice.wait_for(lambda msgs: [m for m in msgs if m.content == "Remixing with: a blue owl"])
        await alice.select(tools, "tools:ratio", ["9:16"])
        await alice.wait_for(lambda msgs: [m for m in msgs if m.content == "Aspect ratio set to 9:16"])
        await alice.react(tools.id, "🍌")
        sent = await alice.send("general", "hello", files=[Upload("note.txt", b"hi")])
        assert [m.attachments[0]["filename"] for m in await alice.messages() if m.id == sent] == ["note.txt"]

        with pytest.raises(RemoteActionError, match="no command /nope"):
            await alice.slash("nope")
        with pytest.raises(AssertionError, match="condition not met"):
            await alice.wait_for(lambda msgs: False, timeout=0.1)
