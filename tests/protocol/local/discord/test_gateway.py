"""The playground's gateway speaks Discord's protocol: HELLO, IDENTIFY/READY, heartbeats, intents, RESUME."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from local.discord import Playground, actions

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

GUILD_MESSAGES = 1 << 9
MESSAGE_CONTENT = 1 << 15


@pytest.fixture
async def pg() -> AsyncIterator[Playground]:
    async with Playground() as server:
        yield server


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    frame: dict[str, Any] = json.loads(msg.data)
    return frame


async def receive_dispatch(ws: aiohttp.ClientWebSocketResponse, name: str) -> dict[str, Any]:
    while True:
        frame = await receive(ws)
        if frame["op"] == 0 and frame["t"] == name:
            return frame


async def identify(pg: Playground, ws: aiohttp.ClientWebSocketResponse, intents: int) -> dict[str, Any]:
    hello = await receive(ws)
    assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] > 0
    await ws.send_json({"op": 2, "d": {"token": pg.token, "intents": intents, "properties": {}}})
    ready = await receive(ws)
    assert ready["t"] == "READY"
    guild = await receive(ws)
    assert guild["t"] == "GUILD_CREATE"
    return ready


def gateway(pg: Playground) -> str:
    return pg.gateway_url + "/?v=10&encoding=json"  # uncompressed text frames; compression is tested apart


async def test_gateway_bot_route_points_at_the_websocket_when_asked(pg: Playground, http: aiohttp.ClientSession):
    async with http.get(pg.api_base + "/gateway/bot", headers={"Authorization": f"Bot {pg.token}"}) as resp:
        body = await resp.json()
    assert body["url"] == pg.gateway_url
    assert body["shards"] == 1
    assert body["session_start_limit"]["max_concurrency"] == 1


async def test_identify_is_closed_with_4004_when_the_token_is_wrong(pg: Playground, http: aiohttp.ClientSession):
    async with http.ws_connect(gateway(pg)) as ws:
        await receive(ws)
        await ws.send_json({"op": 2, "d": {"token": "wrong", "intents": 0, "properties": {}}})
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4004


async def test_heartbeat_is_acknowledged_when_sent(pg: Playground, http: aiohttp.ClientSession):
    async with http.ws_connect(gateway(pg)) as ws:
        await identify(pg, ws, GUILD_MESSAGES)
        await ws.send_json({"op": 1, "d": 2})
        assert (await receive(ws))["op"] == 11


async def test_message_content_is_blanked_when_the_bot_lacks_the_intent(pg: Playground, http: aiohttp.ClientSession):
    alice = pg.state.user_named("alice")["id"]
    channel = pg.state.channel_named("general")["id"]
    async with http.ws_connect(gateway(pg)) as ws:
        await identify(pg, ws, GUILD_MESSAGES)
        actions.send_message(pg.state, alice, channel, "secret")
        assert (await receive_dispatch(ws, "MESSAGE_CREATE"))["d"]["content"] == ""
        actions.send_message(pg.state, alice, channel, f"hey <@{pg.state.app_id}>")
        assert (await receive_dispatch(ws, "MESSAGE_CREATE"))["d"]["content"] == f"hey <@{pg.state.app_id}>"
    async with http.ws_connect(gateway(pg)) as ws:
        await identify(pg, ws, GUILD_MESSAGES | MESSAGE_CONTENT)
        actions.send_message(pg.state, alice, channel, "visible")
        assert (await receive_dispatch(ws, "MESSAGE_CREATE"))["d"]["content"] == "visible"


async def test_resume_replays_the_events_missed_when_disconnected(pg: Playground, http: aiohttp.ClientSession):
    alice = pg.state.user_named("alice")["id"]
    channel = pg.state.channel_named("general")["id"]
    intents = GUILD_MESSAGES | MESSAGE_CONTENT
    async with http.ws_connect(gateway(pg)) as ws:
        ready = await identify(pg, ws, intents)
        actions.send_message(pg.state, alice, channel, "one")
        seen = await receive_dispatch(ws, "MESSAGE_CREATE")
    assert ready["d"]["resume_gateway_url"] == pg.gateway_url
    await pg.driver().wait_until(lambda: pg.gateway.connected == 0)
    actions.send_message(pg.state, alice, channel, "two")  # while the bot is away
    async with http.ws_connect(ready["d"]["resume_gateway_url"] + "/?v=10&encoding=json") as ws:
        await receive(ws)  # HELLO
        resume = {"token": pg.token, "session_id": ready["d"]["session_id"], "seq": seen["s"]}
        await ws.send_json({"op": 6, "d": resume})
        missed = await receive(ws)
        assert (missed["t"], missed["d"]["content"], missed["s"]) == ("MESSAGE_CREATE", "two", seen["s"] + 1)
        assert (await receive(ws))["t"] == "RESUMED"


async def test_resume_is_refused_with_invalid_session_when_unknown(pg: Playground, http: aiohttp.ClientSession):
    async with http.ws_connect(gateway(pg)) as ws:
        await receive(ws)
        await ws.send_json({"op": 6, "d": {"token": pg.token, "session_id": "nope", "seq": 1}})
        frame = await receive(ws)
        assert (frame["op"], frame["d"]) == (9, False)
