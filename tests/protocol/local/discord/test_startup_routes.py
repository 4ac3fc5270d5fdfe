"""The REST routes common libraries call at start-up, answered as Discord documents them: single application
commands, the member list, the gateway routes, and interaction callbacks with and without ``with_response``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from local.discord import Playground

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

GUILD_MEMBERS_LIMITED = 1 << 15


@pytest.fixture
async def pg() -> AsyncIterator[Playground]:
    async with Playground() as server:
        yield server


@pytest.fixture
async def api(pg: Playground) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bot {pg.token}"}
    async with aiohttp.ClientSession(base_url=pg.api_base + "/", headers=headers) as session:
        yield session


async def call(api: aiohttp.ClientSession, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with api.request(method, path, **kw) as resp:
        return resp.status, (await resp.json() if resp.status != 204 else None)


@pytest.mark.parametrize("scope", ["", "guild"])
async def test_one_application_command_is_fetched_edited_and_deleted_when_asked(
    pg: Playground, api: aiohttp.ClientSession, scope: str
):
    gid = pg.state.guild_id if scope else None
    base = f"applications/{pg.state.app_id}/" + (f"guilds/{gid}/" if gid else "") + "commands"
    [cmd] = pg.state.set_commands([{"name": "imagine", "description": "draw"}], gid)
    version = cmd["version"]
    status, got = await call(api, "GET", f"{base}/{cmd['id']}")
    assert (status, got["name"]) == (200, "imagine")
    status, edited = await call(api, "PATCH", f"{base}/{cmd['id']}", json={"description": "paint"})
    assert (status, edited["id"], edited["description"]) == (200, cmd["id"], "paint")
    assert edited["version"] != version
    assert (await call(api, "DELETE", f"{base}/{cmd['id']}"))[0] == 204
    status, body = await call(api, "GET", f"{base}/{cmd['id']}")
    assert (status, body["code"]) == (404, 10063)


async def test_guild_command_is_unknown_when_asked_for_as_global(pg: Playground, api: aiohttp.ClientSession):
    [cmd] = pg.state.set_commands([{"name": "imagine", "description": "draw"}], pg.state.guild_id)
    status, body = await call(api, "GET", f"applications/{pg.state.app_id}/commands/{cmd['id']}")
    assert (status, body["code"]) == (404, 10063)


async def test_member_list_is_refused_with_missing_access_when_the_app_lacks_the_members_intent(
    pg: Playground, api: aiohttp.ClientSession
):
    status, body = await call(api, "GET", f"guilds/{pg.state.guild_id}/members")
    assert (status, body["code"]) == (403, 50001)


async def test_member_list_pages_by_user_id_when_the_app_has_the_members_intent(
    pg: Playground, api: aiohttp.ClientSession
):
    pg.state.app_flags |= GUILD_MEMBERS_LIMITED
    path = f"guilds/{pg.state.guild_id}/members"
    status, first = await call(api, "GET", path)
    assert (status, len(first)) == (200, 1)  # the default limit is 1
    status, rest = await call(api, "GET", path, params={"limit": "1000", "after": first[0]["user"]["id"]})
    assert status == 200
    assert len(rest) == len(pg.state.member_roles) - 1


@pytest.mark.parametrize(("limit", "code"), [("1001", "NUMBER_TYPE_MAX"), ("0", "NUMBER_TYPE_MIN")])
async def test_member_list_limit_outside_1_to_1000_is_refused_when_asked(
    pg: Playground, api: aiohttp.ClientSession, limit: str, code: str
):
    pg.state.app_flags |= GUILD_MEMBERS_LIMITED
    status, body = await call(api, "GET", f"guilds/{pg.state.guild_id}/members", params={"limit": limit})
    assert (status, body["code"]) == (400, 50035)
    assert body["errors"]["limit"]["_errors"][0]["code"] == code


async def test_gateway_bot_has_url_shards_and_session_start_limit_when_asked(
    pg: Playground, api: aiohttp.ClientSession
):
    status, body = await call(api, "GET", "gateway/bot")
    assert status == 200
    assert (body["url"], body["shards"]) == (pg.gateway_url, 1)
    assert set(body["session_start_limit"]) == {"total", "remaining", "reset_after", "max_concurrency"}
    assert set((await call(api, "GET", "gateway"))[1]) == {"url"}


async def start_command(pg: Playground) -> str:
    pg.state.set_commands([{"name": "imagine", "description": "d"}])
    run = await pg.driver().slash("imagine")
    return f"interactions/{run.id}/{run.token}/callback"


async def test_interaction_callback_answers_204_when_with_response_is_not_asked(
    pg: Playground, api: aiohttp.ClientSession
):
    status, body = await call(api, "POST", await start_command(pg), json={"type": 5})
    assert (status, body) == (204, None)


@pytest.mark.parametrize("value", ["true", "True", "1"])
async def test_interaction_callback_answers_the_callback_response_when_with_response_is_true(
    pg: Playground, api: aiohttp.ClientSession, value: str
):
    path = await start_command(pg)
    status, body = await call(api, "POST", path, params={"with_response": value}, json={"type": 5})
    assert status == 200
    assert body["interaction"]["response_message_loading"] is True


async def test_interaction_callback_answers_204_when_with_response_is_false(pg: Playground, api: aiohttp.ClientSession):
    path = await start_command(pg)
    assert (await call(api, "POST", path, params={"with_response": "false"}, json={"type": 5}))[0] == 204


async def test_interaction_callback_is_refused_when_with_response_is_not_a_boolean(
    pg: Playground, api: aiohttp.ClientSession
):
    path = await start_command(pg)
    status, body = await call(api, "POST", path, params={"with_response": "yes"}, json={"type": 5})
    assert (status, body["code"]) == (400, 50035)
    assert body["errors"]["with_response"]["_errors"][0]["code"] == "BOOLEAN_TYPE_CONVERT"
