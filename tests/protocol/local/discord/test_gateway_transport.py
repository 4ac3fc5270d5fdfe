"""The playground's gateway as Discord runs it: the URL's query, transport compression, client frames, READY,
GUILD_CREATE and the Discord-shaped token (https://discord.com/developers/docs/events/gateway)."""

from __future__ import annotations

import asyncio
import base64
import json
import zlib
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
import pytest
from backports import zstd

from local.discord import Playground
from tests.protocol.local.discord.ws import closed_with, text_frame

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

GUILD_PRESENCES = 1 << 8
GATEWAY_PRESENCE_LIMITED = 1 << 13  # the application flag that enables GUILD_PRESENCES for a bot in < 100 servers
Z_SYNC_FLUSH = b"\x00\x00\xff\xff"


@pytest.fixture
async def pg() -> AsyncIterator[Playground]:
    async with Playground() as server:
        yield server


def url(pg: Playground, query: str) -> str:
    return f"{pg.gateway_url}/?{query}"


def identify(pg: Playground, intents: int = 0, **extra: Any) -> dict[str, Any]:
    return {"op": 2, "d": {"token": pg.token, "intents": intents, "properties": {}, **extra}}


async def ready_and_guild(pg: Playground, http: aiohttp.ClientSession, **extra: Any) -> list[dict[str, Any]]:
    intents = extra.pop("intents", 0)
    async with http.ws_connect(url(pg, "v=10&encoding=json")) as ws:
        await text_frame(ws)
        await ws.send_json(identify(pg, intents, **extra))
        return [await text_frame(ws), await text_frame(ws)]


# ------------------------------------------------------------------ compression


async def test_discord_py_with_its_default_settings_connects_over_zlib_stream_when_started(pg: Playground):
    client = discord.Client(intents=discord.Intents.default())  # compress=zlib-stream, as discord.py asks by default
    ready = asyncio.Event()
    client.event(_set_on_ready(ready))
    with pg.discord_py():
        await client.login(pg.token)
        task = asyncio.create_task(client.connect(reconnect=False))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            assert client.user is not None and str(client.user.id) == pg.state.app_id
            assert client.get_guild(int(pg.state.guild_id)) is not None
            assert pg.gateway.compressions == ["zlib-stream"]
        finally:
            await client.close()
            await asyncio.wait_for(task, 5)


def _set_on_ready(ready: asyncio.Event) -> Callable[[], Any]:
    async def on_ready() -> None:
        ready.set()

    return on_ready


async def test_zlib_stream_sends_binary_frames_of_one_zlib_context_when_asked(
    pg: Playground, http: aiohttp.ClientSession
):
    inflate = zlib.decompressobj()

    async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.BINARY, msg
        assert msg.data.endswith(Z_SYNC_FLUSH)
        frame: dict[str, Any] = json.loads(inflate.decompress(msg.data))
        return frame

    async with http.ws_connect(url(pg, "v=10&encoding=json&compress=zlib-stream")) as ws:
        assert (await receive(ws))["op"] == 10
        await ws.send_bytes(json.dumps(identify(pg)).encode())  # a binary frame from the client is read too
        assert [(await receive(ws))["t"] for _ in range(2)] == ["READY", "GUILD_CREATE"]
        await ws.send_bytes(json.dumps({"op": 1, "d": 2}).encode())
        assert (await receive(ws))["op"] == 11


async def test_zstd_stream_sends_binary_frames_of_one_zstd_stream_when_asked(
    pg: Playground, http: aiohttp.ClientSession
):
    decompressor = zstd.ZstdDecompressor()

    async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.BINARY, msg
        frame: dict[str, Any] = json.loads(decompressor.decompress(msg.data))
        return frame

    async with http.ws_connect(url(pg, "v=10&encoding=json&compress=zstd-stream")) as ws:
        assert (await receive(ws))["op"] == 10
        await ws.send_json(identify(pg))
        assert [(await receive(ws))["t"] for _ in range(2)] == ["READY", "GUILD_CREATE"]


async def test_uncompressed_connection_gets_text_frames_when_compress_is_not_asked(
    pg: Playground, http: aiohttp.ClientSession
):
    async with http.ws_connect(url(pg, "v=10&encoding=json")) as ws:
        assert (await text_frame(ws))["op"] == 10


async def test_unknown_transport_compression_is_refused_when_asked(pg: Playground, http: aiohttp.ClientSession):
    async with http.ws_connect(url(pg, "v=10&encoding=json&compress=gzip")) as ws:
        assert await closed_with(ws) == 4000


# ------------------------------------------------------------------ the URL's query


@pytest.mark.parametrize("version", ["9", "10"])
async def test_available_api_versions_are_accepted_when_connecting(
    pg: Playground, http: aiohttp.ClientSession, version: str
):
    async with http.ws_connect(url(pg, f"v={version}&encoding=json")) as ws:
        assert (await text_frame(ws))["op"] == 10
        await ws.send_json(identify(pg))
        assert (await text_frame(ws))["d"]["v"] == int(version)


@pytest.mark.parametrize("query", ["v=8&encoding=json", "v=11&encoding=json", "encoding=json"])
async def test_unavailable_api_version_is_closed_with_4012_when_connecting(
    pg: Playground, http: aiohttp.ClientSession, query: str
):
    async with http.ws_connect(url(pg, query)) as ws:
        assert await closed_with(ws) == 4012


@pytest.mark.parametrize("query", ["v=10&encoding=etf", "v=10&encoding=xml", "v=10"])
async def test_encoding_other_than_json_is_closed_with_4002_when_connecting(
    pg: Playground, http: aiohttp.ClientSession, query: str
):
    async with http.ws_connect(url(pg, query)) as ws:
        assert await closed_with(ws) == 4002


# ------------------------------------------------------------------ client payloads


@pytest.mark.parametrize("payload", ["not json", "[1, 2]"])
async def test_payload_that_is_not_a_json_object_is_closed_with_4002_when_sent(
    pg: Playground, http: aiohttp.ClientSession, payload: str
):
    async with http.ws_connect(url(pg, "v=10&encoding=json")) as ws:
        await text_frame(ws)
        await ws.send_str(payload)
        assert await closed_with(ws) == 4002


async def test_unknown_opcode_is_closed_with_4001_when_sent(pg: Playground, http: aiohttp.ClientSession):
    async with http.ws_connect(url(pg, "v=10&encoding=json")) as ws:
        await text_frame(ws)
        await ws.send_json({"op": 5, "d": None})  # 5 is not a client opcode
        assert await closed_with(ws) == 4001


async def test_second_identify_is_closed_with_4005_when_sent(pg: Playground, http: aiohttp.ClientSession):
    async with http.ws_connect(url(pg, "v=10&encoding=json")) as ws:
        await text_frame(ws)
        await ws.send_json(identify(pg))
        await ws.send_json(identify(pg))
        assert await closed_with(ws) == 4005


# ------------------------------------------------------------------ READY and GUILD_CREATE


async def test_ready_has_every_documented_field_and_no_shard_when_identify_sent_none(
    pg: Playground, http: aiohttp.ClientSession
):
    ready, _ = await ready_and_guild(pg, http)
    data = ready["d"]
    assert {"v", "user", "guilds", "session_id", "resume_gateway_url", "application"} <= set(data)
    assert "shard" not in data
    assert data["guilds"] == [{"id": pg.state.guild_id, "unavailable": True}]
    assert data["application"] == {"id": pg.state.app_id, "flags": pg.state.app_flags}
    assert data["user"]["id"] == pg.state.app_id and data["user"]["bot"] is True


async def test_ready_echoes_the_shard_when_identify_sent_one(pg: Playground, http: aiohttp.ClientSession):
    ready, _ = await ready_and_guild(pg, http, shard=[0, 1])
    assert ready["d"]["shard"] == [0, 1]


GUILD_FIELDS = {
    "id", "name", "icon", "splash", "discovery_splash", "owner_id", "afk_channel_id", "afk_timeout",
    "verification_level", "default_message_notifications", "explicit_content_filter", "roles", "emojis",
    "features", "mfa_level", "application_id", "system_channel_id", "system_channel_flags", "rules_channel_id",
    "vanity_url_code", "description", "banner", "premium_tier", "preferred_locale", "public_updates_channel_id",
    "nsfw_level", "premium_progress_bar_enabled", "safety_alerts_channel_id", "incidents_data",
}  # fmt: skip
GUILD_CREATE_FIELDS = {
    "joined_at", "large", "member_count", "voice_states", "members", "channels", "threads", "presences",
    "stage_instances", "guild_scheduled_events", "soundboard_sounds",
}  # fmt: skip


async def test_guild_create_has_the_guild_object_and_every_extra_field_when_identified(
    pg: Playground, http: aiohttp.ClientSession
):
    _, guild = await ready_and_guild(pg, http)
    assert guild["t"] == "GUILD_CREATE"
    assert set(guild["d"]) >= GUILD_FIELDS | GUILD_CREATE_FIELDS
    assert guild["d"]["member_count"] == len(pg.state.member_roles)


async def test_guild_create_lists_only_the_bot_as_member_when_it_lacks_guild_presences(
    pg: Playground, http: aiohttp.ClientSession
):
    _, guild = await ready_and_guild(pg, http)
    assert [m["user"]["id"] for m in guild["d"]["members"]] == [pg.state.app_id]
    pg.state.app_flags |= GATEWAY_PRESENCE_LIMITED  # a privileged intent the application must have enabled
    _, guild = await ready_and_guild(pg, http, intents=GUILD_PRESENCES)
    assert len(guild["d"]["members"]) == len(pg.state.member_roles)


async def test_get_guild_has_the_guild_object_without_the_gateway_only_fields_when_asked(
    pg: Playground, http: aiohttp.ClientSession
):
    headers = {"Authorization": f"Bot {pg.token}"}
    async with http.get(f"{pg.api_base}/guilds/{pg.state.guild_id}", headers=headers) as resp:
        guild = await resp.json()
    assert set(guild) >= GUILD_FIELDS
    assert not set(guild) & GUILD_CREATE_FIELDS


# ------------------------------------------------------------------ the token


async def test_default_token_is_shaped_as_discords_and_names_the_bot_when_issued(
    pg: Playground, http: aiohttp.ClientSession
):
    user_id, timestamp, mac = pg.token.split(".")
    assert base64.urlsafe_b64decode(user_id + "=" * (-len(user_id) % 4)).decode() == pg.state.app_id
    assert len(timestamp) == 6 and len(mac) == 27
    async with http.get(pg.api_base + "/users/@me", headers={"Authorization": f"Bot {pg.token}"}) as resp:
        assert resp.status == 200
    ready, _ = await ready_and_guild(pg, http)
    assert ready["t"] == "READY"
