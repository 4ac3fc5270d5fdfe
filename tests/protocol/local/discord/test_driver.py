"""The driver's views and waits, on a playground that is not serving (no sockets)."""

from __future__ import annotations

import pytest

from local.discord import Message, Playground, Upload


@pytest.fixture
def pg() -> Playground:
    return Playground()


async def test_wait_for_reports_a_transcript_when_the_condition_never_holds(pg: Playground):
    alice = pg.driver()
    await alice.send("general", f"hello <@{pg.state.app_id}>")
    with pytest.raises(AssertionError, match=r"(?s)condition not met within 0.05 s.*#general:.*alice: 'hello"):
        await alice.wait_for(lambda msgs: len(msgs) > 1, timeout=0.05)


async def test_message_view_exposes_buttons_reactions_and_files_when_read(pg: Playground):
    state = pg.state
    general = state.channel_named("general")["id"]
    components = [{"type": 1, "components": [{"type": 2, "style": 1, "label": "U1", "custom_id": "u1"}]}]
    raw = state.create_message(
        general, state.bot_user, {"content": "grid", "components": components}, {0: Upload("g.png", b"png")}
    )
    alice = pg.driver("alice")
    await alice.react(raw["id"], "🍌")
    msg = alice.messages()[0]
    assert isinstance(msg, Message)
    assert (msg.author_id, msg.channel_id, msg.reactions) == (state.app_id, general, {"🍌": 1})
    assert msg.button(label="U1")["custom_id"] == "u1"
    assert msg.thread_id is None and not msg.is_ephemeral and not msg.is_loading
    assert alice.attachment_bytes(msg.attachments[0]) == b"png"
    assert "files=[g.png]" in str(msg) and "ids=['u1']" in str(msg)
    with pytest.raises(LookupError, match="no button"):
        msg.button(label="V1")
    await alice.unreact(msg, "🍌")
    assert alice.messages()[0].reactions == {}
    reply = await pg.driver("bob").send("general", "me too", reply_to=msg)
    assert reply.raw["referenced_message"]["id"] == msg.id
    assert alice.threads() == []
    with pytest.raises(LookupError):
        await alice.click("1", "u1")
