"""The playground's gateway holds a client to Discord's rules: the send limit, heartbeats, the order of opcodes,
intents and privileged intents, and Request Guild Members (op 8), each closed or answered as Discord does
(https://discord.com/developers/docs/events/gateway,
https://discord.com/developers/docs/topics/opcodes-and-status-codes)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import discord
import pytest

from bot.discord_bot import peel_intents
from local.discord import Playground
from local.discord.gateway import GatewayLimits
from local.discord.ratelimit import Limit
from local.discord.world import APPLICATION_FLAGS
from tests.fakes.playground_bot import FakeClock
from tests.protocol.local.discord.ws import closed_with, text_frame

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import aiohttp

GUILD_MEMBERS = 1 << 1
GUILD_PRESENCES = 1 << 8
MESSAGE_CONTENT = 1 << 15
GATEWAY_GUILD_MEMBERS_LIMITED = 1 << 15  # application flag
GATEWAY_PRESENCE_LIMITED = 1 << 13  # application flag
EVERY_INTENT = sum(1 << bit for bit in (*range(17), 20, 21, 24, 25))
PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT
MEMBERS_APP = APPLICATION_FLAGS | GATEWAY_GUILD_MEMBERS_LIMITED | GATEWAY_PRESENCE_LIMITED


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def pg(clock: FakeClock) -> AsyncIterator[Playground]:
    async with Playground(clock=clock, app_flags=MEMBERS_APP) as server:
        yield server


def url(pg: Playground) -> str:
    return pg.gateway_url + "/?v=10&encoding=json"


def identify(pg: Playground, intents: Any = 0) -> dict[str, Any]:
    return {"op": 2, "d": {"token": pg.token, "intents": intents, "properties": {}}}


async def identified(pg: Playground, ws: aiohttp.ClientWebSocketResponse, intents: int = 0) -> dict[str, Any]:
    """Read HELLO, identify, read READY and GUILD_CREATE; return READY."""
    await text_frame(ws)
    await ws.send_json(identify(pg, intents))
    ready = await text_frame(ws)
    assert ready["t"] == "READY", ready
    assert (await text_frame(ws))["t"] == "GUILD_CREATE"
    return ready


async def heartbeat(ws: aiohttp.ClientWebSocketResponse) -> None:
    await ws.send_json({"op": 1, "d": None})
    assert (await text_frame(ws))["op"] == 11


# ------------------------------------------------------------------ 120 events per 60 s per connection


async def test_120_events_in_the_window_are_served_and_the_121st_is_closed_with_4008(
    pg: Playground, http: aiohttp.ClientSession
):
    async with http.ws_connect(url(pg)) as ws:
        await identified(pg, ws)  # event 1
        for _ in range(119):  # events 2-120
            await heartbeat(ws)
        await ws.send_json({"op": 1, "d": None})
        assert await closed_with(ws) == 4008


async def test_the_send_limit_starts_again_when_its_window_has_passed(clock: FakeClock, http: aiohttp.ClientSession):
    limits = GatewayLimits(sends=Limit(3, 60.0))
    async with Playground(clock=clock, gateway_limits=limits) as pg, http.ws_connect(url(pg)) as ws:
        await text_frame(ws)
        for _ in range(3):
            await heartbeat(ws)
        clock.now += 60
        for _ in range(3):
            await heartbeat(ws)
        await ws.send_json({"op": 1, "d": None})
        assert await closed_with(ws) == 4008


async def test_the_send_limit_is_kept_per_connection(clock: FakeClock, http: aiohttp.ClientSession):
    limits = GatewayLimits(sends=Limit(2, 60.0))
    async with Playground(clock=clock, gateway_limits=limits) as pg:
        async with http.ws_connect(url(pg)) as ws:
            await text_frame(ws)
            await heartbeat(ws)
            await heartbeat(ws)
        async with http.ws_connect(url(pg)) as ws:
            await text_frame(ws)
            await heartbeat(ws)
            await heartbeat(ws)


# ------------------------------------------------------------------ heartbeats


def fast_heartbeats(clock: FakeClock) -> Playground:
    return Playground(clock=clock, gateway_limits=GatewayLimits(heartbeat_interval_ms=400))


async def test_hello_says_the_interval_and_a_client_heartbeating_on_time_stays_connected(
    clock: FakeClock, http: aiohttp.ClientSession
):
    async with fast_heartbeats(clock) as pg, http.ws_connect(url(pg)) as ws:
        assert await text_frame(ws) == {"op": 10, "d": {"heartbeat_interval": 400}, "s": None, "t": None}
        for _ in range(6):  # 1.2 s: three intervals, more than the 0.6 s the gateway waits for one heartbeat
            await asyncio.sleep(0.2)
            await heartbeat(ws)


async def test_a_client_that_stops_heartbeating_is_closed_with_4009_and_its_session_dropped(
    clock: FakeClock, http: aiohttp.ClientSession
):
    async with fast_heartbeats(clock) as pg:
        async with http.ws_connect(url(pg)) as ws:
            ready = await identified(pg, ws)
            assert await closed_with(ws) == 4009
        async with http.ws_connect(url(pg)) as ws:
            await text_frame(ws)
            await ws.send_json({"op": 6, "d": {"token": pg.token, "session_id": ready["d"]["session_id"], "seq": 2}})
            assert await text_frame(ws) == {"op": 9, "d": False, "s": None, "t": None}


async def test_the_default_interval_is_discords_and_the_gateway_waits_one_and_a_half_of_it():
    limits = GatewayLimits()
    assert (limits.heartbeat_interval_ms, limits.heartbeat_deadline_s) == (41_250, 61.875)
    assert (limits.sends, limits.member_list) == (Limit(120, 60.0), Limit(1, 30.0))


async def test_a_heartbeat_asked_by_the_gateway_is_answered_by_a_client(pg: Playground, http: aiohttp.ClientSession):
    async with http.ws_connect(url(pg)) as ws:
        await identified(pg, ws)
        pg.gateway.request_heartbeat()
        asked = await text_frame(ws)
        assert (asked["op"], asked["d"]) == (1, 2)  # the session's last sequence number
        await heartbeat(ws)


async def test_discord_py_answers_a_heartbeat_the_gateway_asks_for(clock: FakeClock):
    # An interval of hours: discord.py's own first heartbeat (interval x jitter) cannot come during the test.
    limits = GatewayLimits(heartbeat_interval_ms=10_000_000)
    async with Playground(clock=clock, gateway_limits=limits) as pg:
        client = discord.Client(intents=discord.Intents.default())
        with pg.discord_py():
            await client.login(pg.token)
            task = asyncio.create_task(client.connect(reconnect=False))
            try:
                await pg.wait_for_bot()
                before = pg.gateway.heartbeats
                pg.gateway.request_heartbeat()
                await pg.driver().wait_until(lambda: pg.gateway.heartbeats > before)
            finally:
                await client.close()
                await asyncio.wait_for(task, 5)


# ------------------------------------------------------------------ opcodes before and after IDENTIFY


@pytest.mark.parametrize("op", [1, 2, 6])
async def test_heartbeat_identify_and_resume_are_served_before_identify(
    pg: Playground, http: aiohttp.ClientSession, op: int
):
    payloads = {1: {"op": 1, "d": None}, 2: identify(pg), 6: {"op": 6, "d": {"token": pg.token, "session_id": "x"}}}
    async with http.ws_connect(url(pg)) as ws:
        await text_frame(ws)
        await ws.send_json(payloads[op])
        assert (await text_frame(ws))["op"] in (0, 9, 11)  # READY, Invalid Session (unknown session), ACK


@pytest.mark.parametrize("op", [3, 4, 8])
async def test_other_opcodes_before_identify_are_closed_with_4003(pg: Playground, http: aiohttp.ClientSession, op: int):
    async with http.ws_connect(url(pg)) as ws:
        await text_frame(ws)
        await ws.send_json({"op": op, "d": {"guild_id": pg.state.guild_id, "query": "", "limit": 0}})
        assert await closed_with(ws) == 4003


# ------------------------------------------------------------------ intents


@pytest.mark.parametrize("intents", [EVERY_INTENT, EVERY_INTENT & ~PRIVILEGED, 0])
async def test_known_intents_the_application_enables_are_accepted(
    pg: Playground, http: aiohttp.ClientSession, intents: int
):
    async with http.ws_connect(url(pg)) as ws:
        ready = await identified(pg, ws, intents)
        assert ready["d"]["user"]["id"] == pg.state.app_id


@pytest.mark.parametrize("intents", [None, 1 << 17, 1 << 26, -1, "513", True, 2.5])
async def test_missing_or_invalid_intents_are_closed_with_4013(
    pg: Playground, http: aiohttp.ClientSession, intents: Any
):
    async with http.ws_connect(url(pg)) as ws:
        await text_frame(ws)
        payload = identify(pg, intents)
        if intents is None:
            del payload["d"]["intents"]
        await ws.send_json(payload)
        assert await closed_with(ws) == 4013


@pytest.mark.parametrize(
    ("intent", "flag"), [(GUILD_MEMBERS, 1 << 14), (GUILD_PRESENCES, 1 << 12), (MESSAGE_CONTENT, 1 << 18)]
)
async def test_a_privileged_intent_is_accepted_only_when_the_application_enables_it_else_4014(
    http: aiohttp.ClientSession, intent: int, flag: int
):
    async with Playground(app_flags=flag) as pg, http.ws_connect(url(pg)) as ws:
        await identified(pg, ws, intent)
    async with Playground(app_flags=0) as pg, http.ws_connect(url(pg)) as ws:
        await text_frame(ws)
        await ws.send_json(identify(pg, intent))
        assert await closed_with(ws) == 4014


async def test_discord_py_asking_for_message_content_the_application_lacks_is_refused_as_peel_explains():
    async with Playground(app_flags=0) as pg:
        client = discord.Client(intents=peel_intents())
        with pg.discord_py():
            await client.login(pg.token)
            try:
                with pytest.raises(discord.PrivilegedIntentsRequired):  # as Peel connects: reconnect=True
                    await asyncio.wait_for(client.connect(reconnect=True), 10)
            finally:
                await client.close()


# ------------------------------------------------------------------ Request Guild Members (op 8)


def request(pg: Playground, **fields: Any) -> dict[str, Any]:
    return {"op": 8, "d": {"guild_id": pg.state.guild_id, **fields}}


async def chunk(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    out = await text_frame(ws)
    assert out["t"] == "GUILD_MEMBERS_CHUNK", out
    data: dict[str, Any] = out["d"]
    return data


async def test_the_whole_member_list_comes_in_one_chunk_with_the_nonce_when_the_intent_is_held(
    pg: Playground, http: aiohttp.ClientSession
):
    async with http.ws_connect(url(pg)) as ws:
        await identified(pg, ws, GUILD_MEMBERS)
        await ws.send_json(request(pg, query="", limit=0, nonce="n" * 32))
        data = await chunk(ws)
    assert {m["user"]["id"] for m in data["members"]} == set(pg.state.member_roles)
    assert (data["guild_id"], data["chunk_index"], data["chunk_count"], data["nonce"]) == (
        pg.state.guild_id, 0, 1, "n" * 32,
    )  # fmt: skip
    assert "not_found" not in data and "presences" not in data


async def test_a_list_over_1000_members_comes_in_chunks_of_1000(pg: Playground, http: aiohttp.ClientSession):
    for n in range(1001):
        uid = pg.state.ids.next()
        pg.state.users[uid] = {**pg.state.users[pg.state.user_named("alice")["id"]], "id": uid, "username": f"u{n}"}
        pg.state.member_roles[uid] = []
    async with http.ws_connect(url(pg)) as ws:
        await identified(pg, ws, GUILD_MEMBERS)
        await ws.send_json(request(pg, query="", limit=0))
        chunks = [await chunk(ws), await chunk(ws)]
    assert [(c["chunk_index"], c["chunk_count"]) for c in chunks] == [(0, 2), (1, 2)]
    assert [len(c["members"]) for c in chunks] == [1000, len(pg.state.member_roles) - 1000]


async def test_the_whole_list_without_guild_members_is_not_answered(pg: Playground, http: aiohttp.ClientSession):
    async with http.ws_connect(url(pg)) as ws:
        await identified(pg, ws, GUILD_PRESENCES)
        await ws.send_json(request(pg, query="", limit=0))
        await heartbeat(ws)  # the next frame is the ACK: no chunk came before it


async def test_a_nonce_over_32_bytes_is_not_echoed(pg: Playground, http: aiohttp.ClientSession):
    async with http.ws_connect(url(pg)) as ws:
        await identified(pg, ws)
        await ws.send_json(request(pg, query="al", limit=10, nonce="n" * 33))
        data = await chunk(ws)
    assert "nonce" not in data
    assert [m["user"]["username"] for m in data["members"]] == ["alice"]


async def test_presences_come_only_with_the_guild_presences_intent(pg: Playground, http: aiohttp.ClientSession):
    alice = pg.state.user_named("alice")["id"]
    for intents, expected in ((GUILD_PRESENCES, [alice]), (0, None)):
        async with http.ws_connect(url(pg)) as ws:
            await identified(pg, ws, intents)
            await ws.send_json(request(pg, user_ids=[alice], presences=True))
            data = await chunk(ws)
        got = [p["user"]["id"] for p in data["presences"]] if "presences" in data else None
        assert got == expected


async def test_100_user_ids_are_answered_with_the_missing_ones_in_not_found(
    pg: Playground, http: aiohttp.ClientSession
):
    alice = pg.state.user_named("alice")["id"]
    missing = [str(10**17 + n) for n in range(99)]
    async with http.ws_connect(url(pg)) as ws:
        await identified(pg, ws)
        await ws.send_json(request(pg, user_ids=[alice, *missing]))
        data = await chunk(ws)
    assert [m["user"]["id"] for m in data["members"]] == [alice]
    assert data["not_found"] == missing


@pytest.mark.parametrize(
    "fields",
    [
        {"user_ids": [str(10**17 + n) for n in range(101)]},  # over 100 user ids
        {},  # neither query nor user_ids
        {"query": ""},  # query without limit
        {"query": "", "limit": -1},
        {"query": 5, "limit": 0},
        {"user_ids": ["not an id"]},
        {"query": "", "limit": 0, "presences": "yes"},
    ],
)
async def test_an_invalid_request_guild_members_payload_is_closed_with_4001(
    pg: Playground, http: aiohttp.ClientSession, fields: dict[str, Any]
):
    async with http.ws_connect(url(pg)) as ws:
        await identified(pg, ws, GUILD_MEMBERS)
        await ws.send_json(request(pg, **fields))
        assert await closed_with(ws) == 4001


async def test_op_8_without_a_guild_id_is_closed_with_4001(pg: Playground, http: aiohttp.ClientSession):
    async with http.ws_connect(url(pg)) as ws:
        await identified(pg, ws, GUILD_MEMBERS)
        await ws.send_json({"op": 8, "d": {"query": "", "limit": 0}})
        assert await closed_with(ws) == 4001


async def test_the_whole_list_asked_again_within_30_s_is_answered_rate_limited(
    pg: Playground, clock: FakeClock, http: aiohttp.ClientSession
):
    async with http.ws_connect(url(pg)) as ws:
        await identified(pg, ws, GUILD_MEMBERS)
        await ws.send_json(request(pg, query="", limit=0))
        await chunk(ws)
        clock.now += 29
        await ws.send_json(request(pg, query="", limit=0, nonce="again"))
        limited = await text_frame(ws)
        assert limited["t"] == "RATE_LIMITED"
        meta = {"guild_id": pg.state.guild_id, "nonce": "again"}
        assert limited["d"] == {"opcode": 8, "retry_after": 1.0, "meta": meta}
        await ws.send_json(request(pg, query="al", limit=1))  # a prefix query is not the whole list: not limited
        await chunk(ws)
        clock.now += 1
        await ws.send_json(request(pg, query="", limit=0))
        await chunk(ws)
