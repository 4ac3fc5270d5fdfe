"""The page's HTTP API and event socket: the same actions the driver uses, over the wire."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from local.discord import Playground
from tests.fakes.playground_bot import make_png

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture
async def pg() -> AsyncIterator[Playground]:
    async with Playground() as server:
        server.state.set_commands(
            [
                {
                    "name": "imagine",
                    "description": "d",
                    "options": [
                        {"type": 3, "name": "prompt", "description": "p", "required": True, "autocomplete": True},
                        {"type": 11, "name": "image", "description": "i"},
                    ],
                }
            ]
        )
        yield server


@pytest.fixture
async def http(pg: Playground) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=pg.url) as session:
        yield session


async def post(http: aiohttp.ClientSession, action: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    async with http.post(f"/playground/api/{action}", json=body) as resp:
        data: dict[str, Any] = await resp.json()
        assert resp.status == status, data
        return data


async def test_command_with_a_file_runs_as_the_page_user_when_posted_as_multipart(
    pg: Playground, http: aiohttp.ClientSession
):
    general = pg.state.channel_named("general")["id"]
    form = aiohttp.FormData(quote_fields=False)
    body = {
        "user": "bob",
        "channel_id": general,
        "name": "imagine",
        "options": {"prompt": "owl"},
        "file_options": ["image"],
    }
    form.add_field("payload_json", json.dumps(body))
    form.add_field("files[0]", make_png(4), filename="owl.png", content_type="image/png")
    async with http.post("/playground/api/command", data=form) as resp:
        iid = (await resp.json())["interaction_id"]
    interaction = pg.state.interactions[iid]
    assert interaction.user_id == pg.state.user_named("bob")["id"]
    (attachment,) = interaction.payload["data"]["resolved"]["attachments"].values()
    assert (attachment["filename"], attachment["content_type"]) == ("owl.png", "image/png")


async def test_action_error_is_a_400_with_the_reason_when_refused(pg: Playground, http: aiohttp.ClientSession):
    general = pg.state.channel_named("general")["id"]
    data = await post(http, "command", {"channel_id": general, "name": "imagine", "options": {}}, status=400)
    assert data["error"] == "option 'prompt' is required"
    data = await post(http, "thread", {"channel_id": "1", "name": "x"}, status=400)
    assert "threads start from a text channel" in data["error"]


async def test_autocomplete_returns_the_bots_choices_when_it_answers(pg: Playground, http: aiohttp.ClientSession):
    general = pg.state.channel_named("general")["id"]

    async def bot_answers() -> None:
        interaction = await pg.driver().wait_until(lambda: next(iter(pg.state.interactions.values()), None))
        assert interaction is not None
        choices = [{"name": "a fox", "value": "a fox"}]
        pg.state.respond(interaction.id, interaction.token, {"type": 8, "data": {"choices": choices}}, {})

    answer = asyncio.create_task(bot_answers())
    body = {"channel_id": general, "name": "imagine", "options": {"prompt": "fo"}, "focused": "prompt"}
    data = await post(http, "autocomplete", body)
    await answer
    assert data == {"choices": [{"name": "a fox", "value": "a fox"}]}


async def test_page_actions_change_the_world_and_push_events_when_used(pg: Playground, http: aiohttp.ClientSession):
    state = pg.state
    general = state.channel_named("general")["id"]
    buttons = {"type": 1, "components": [{"type": 2, "style": 1, "label": "Go", "custom_id": "go"}]}
    menu = {"type": 1, "components": [{"type": 3, "custom_id": "s", "options": [{"label": "A", "value": "a"}]}]}
    bot_msg = state.create_message(general, state.bot_user, {"content": "pick", "components": [buttons, menu]})
    async with http.ws_connect("/playground/ws") as ws:
        sent = await post(http, "message", {"channel_id": general, "content": "hello", "reply_to": bot_msg["id"]})
        event = json.loads((await ws.receive(timeout=5)).data)
        assert (event["t"], event["d"]["content"]) == ("MESSAGE_CREATE", "hello")
        assert state.messages[sent["message_id"]]["referenced_message"]["id"] == bot_msg["id"]

        clicked = await post(http, "click", {"message_id": bot_msg["id"], "custom_id": "go"})
        picked = await post(http, "select", {"message_id": bot_msg["id"], "custom_id": "s", "values": ["a"]})
        assert state.interactions[clicked["interaction_id"]].payload["data"]["custom_id"] == "go"
        assert state.interactions[picked["interaction_id"]].payload["data"]["values"] == ["a"]

        assert (await post(http, "react", {"message_id": bot_msg["id"], "emoji": "🍌"}))["changed"] is True
        thread = await post(http, "thread", {"channel_id": general, "message_id": bot_msg["id"], "name": "t"})
        assert thread["thread_id"] == bot_msg["id"]

        modal = {
            "custom_id": "m",
            "title": "T",
            "components": [{"type": 1, "components": [{"type": 4, "custom_id": "p", "style": 1, "label": "P"}]}],
        }
        source = state.interactions[clicked["interaction_id"]]
        state.respond(source.id, source.token, {"type": 9, "data": modal}, {})
        submitted = await post(http, "modal", {"interaction_id": source.id, "values": {"p": "blue"}})
        assert state.interactions[submitted["interaction_id"]].type == 5

    async with http.get("/playground/api/state", params={"user": "alice"}) as resp:
        snapshot = await resp.json()
    msgs = snapshot["messages"][general]
    assert [m["content"] for m in msgs] == ["pick", "hello"]
    assert msgs[0]["reactions"][0]["users"] == [state.user_named("alice")["id"]]
    assert any(c["id"] == bot_msg["id"] for c in snapshot["channels"])  # the new thread
    assert snapshot["commands"][0]["name"] == "imagine"


async def test_static_files_are_served_and_unknown_ones_are_404_when_requested(http: aiohttp.ClientSession):
    async with http.get("/static/app.js") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/javascript"
    async with http.get("/static/style.css") as resp:
        assert resp.content_type == "text/css"
    async with http.get("/static/nope.js") as resp:
        assert resp.status == 404
