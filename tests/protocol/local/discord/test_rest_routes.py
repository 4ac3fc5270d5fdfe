"""REST routes a bot calls beyond the main flow: history, deletes, reactions, DMs, guild data, commands, webhooks."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from local.discord import Playground, actions

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture
async def pg() -> AsyncIterator[Playground]:
    # A tenth of Discord's rate-limit windows: `call` waits them out from the headers, as a library does.
    async with Playground(rate_window_scale=0.1) as server:
        yield server


@pytest.fixture
async def http(pg: Playground) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bot {pg.token}"}
    async with aiohttp.ClientSession(base_url=pg.api_base + "/", headers=headers) as session:
        yield session


async def call(http: aiohttp.ClientSession, method: str, path: str, status: int = 200, **kw: Any) -> Any:
    async with http.request(method, path, **kw) as resp:
        body = await resp.json() if resp.status != 204 else None
        assert resp.status == status, body
        if resp.headers.get("X-RateLimit-Remaining") == "0":
            await asyncio.sleep(float(resp.headers["X-RateLimit-Reset-After"]))
        return body


async def test_history_pages_newest_first_when_listed(pg: Playground, http: aiohttp.ClientSession):
    general = pg.state.channel_named("general")["id"]
    ids = [(await call(http, "POST", f"channels/{general}/messages", json={"content": str(i)}))["id"] for i in range(5)]
    newest = await call(http, "GET", f"channels/{general}/messages", params={"limit": "2"})
    assert [m["content"] for m in newest] == ["4", "3"]
    before = await call(http, "GET", f"channels/{general}/messages", params={"before": ids[2]})
    assert [m["content"] for m in before] == ["1", "0"]
    after = await call(http, "GET", f"channels/{general}/messages", params={"after": ids[2], "limit": "1"})
    assert [m["content"] for m in after] == ["3"]
    assert (await call(http, "GET", f"channels/{general}/messages/{ids[0]}"))["content"] == "0"
    await call(http, "DELETE", f"channels/{general}/messages/{ids[0]}", status=204)
    await call(http, "GET", f"channels/{general}/messages/{ids[0]}", status=404)


async def test_bot_cannot_edit_a_users_message_when_it_is_not_the_author(pg: Playground, http: aiohttp.ClientSession):
    general = pg.state.channel_named("general")["id"]
    mine = actions.send_message(pg.state, pg.state.user_named("alice")["id"], general, "hi")
    body = await call(http, "PATCH", f"channels/{general}/messages/{mine['id']}", status=403, json={"content": "x"})
    assert body["code"] == 50005


async def test_bot_reactions_are_added_listed_and_removed_when_requested(pg: Playground, http: aiohttp.ClientSession):
    general = pg.state.channel_named("general")["id"]
    msg = await call(http, "POST", f"channels/{general}/messages", json={"content": "vote"})
    base = f"channels/{general}/messages/{msg['id']}/reactions/%E2%9C%85"
    await call(http, "PUT", f"{base}/@me", status=204)
    assert pg.state.messages[msg["id"]]["reactions"][0]["me"] is True
    users = await call(http, "GET", base)
    assert [u["id"] for u in users] == [pg.state.app_id]
    await call(http, "DELETE", f"{base}/@me", status=204)
    assert pg.state.messages[msg["id"]]["reactions"] == []


async def test_dm_channel_is_created_once_and_accepts_messages_when_opened(pg: Playground, http: aiohttp.ClientSession):
    alice = pg.state.user_named("alice")["id"]
    dm = await call(http, "POST", "users/@me/channels", json={"recipient_id": alice})
    again = await call(http, "POST", "users/@me/channels", json={"recipient_id": alice})
    assert dm["id"] == again["id"] and dm["type"] == 1
    msg = await call(http, "POST", f"channels/{dm['id']}/messages", json={"content": "your job is done"})
    assert "guild_id" not in msg
    assert [m.content for m in pg.driver("alice").messages(dm["id"])] == ["your job is done"]
    await call(http, "POST", "users/@me/channels", status=400, json={"recipient_id": "1"})


async def test_guild_data_is_served_when_fetched(pg: Playground, http: aiohttp.ClientSession):
    gid = pg.state.guild_id
    assert (await call(http, "GET", f"guilds/{gid}"))["owner_id"] == pg.state.user_named("admin")["id"]
    assert {c["name"] for c in await call(http, "GET", f"guilds/{gid}/channels")} == {"general", "images", "batch"}
    admin = pg.state.user_named("admin")["id"]
    assert (await call(http, "GET", f"guilds/{gid}/members/{admin}"))["roles"] == [pg.state.roles["Admin"]["id"]]
    await call(http, "GET", f"guilds/{gid}/members/1", status=404)
    assert {r["name"] for r in await call(http, "GET", f"guilds/{gid}/roles")} == {"@everyone", "Admin", "Member"}
    assert (await call(http, "GET", f"users/{admin}"))["username"] == "admin"
    await call(http, "GET", "users/1", status=404)
    assert (await call(http, "GET", "gateway"))["url"] == pg.gateway_url
    assert pg.state.permissions_of(admin) != pg.state.permissions_of(pg.state.user_named("alice")["id"])


async def test_commands_keep_their_ids_when_overwritten_and_upserted(pg: Playground, http: aiohttp.ClientSession):
    app, gid = pg.state.app_id, pg.state.guild_id
    first = await call(http, "PUT", f"applications/{app}/commands", json=[{"name": "imagine", "description": "d"}])
    again = await call(http, "PUT", f"applications/{app}/commands", json=[{"name": "imagine", "description": "d2"}])
    assert first[0]["id"] == again[0]["id"]
    created = await call(http, "POST", f"applications/{app}/guilds/{gid}/commands", status=201, json={"name": "batch"})
    assert created["guild_id"] == gid
    assert [c["name"] for c in await call(http, "GET", f"applications/{app}/guilds/{gid}/commands")] == ["batch"]
    assert [c["name"] for c in await call(http, "GET", f"applications/{app}/commands")] == ["imagine"]
    await call(http, "PUT", f"applications/{app}/commands", status=400, json={"name": "not a list"})
    await call(http, "GET", "applications/1/commands", status=404)
    await call(http, "PUT", f"applications/{app}/guilds/1/commands", status=404, json=[])


async def test_followups_are_fetched_edited_posted_in_threads_and_deleted_when_asked(
    pg: Playground, http: aiohttp.ClientSession
):
    pg.state.set_commands([{"name": "imagine", "description": "d"}])
    run = await pg.driver().slash("imagine")
    answer = {"type": 4, "data": {"content": "ok"}}
    await call(http, "POST", f"interactions/{run.id}/{run.token}/callback", params={"with_response": "1"}, json=answer)
    hook = f"webhooks/{pg.state.app_id}/{run.token}"
    assert (await call(http, "GET", f"{hook}/messages/@original"))["content"] == "ok"
    general = pg.state.channel_named("general")["id"]
    thread = pg.state.create_thread(general, "t", owner_id=pg.state.app_id)
    await call(http, "PUT", f"channels/{thread['id']}/thread-members/@me", status=204)
    await call(http, "PUT", f"channels/{general}/thread-members/@me", status=400)
    posted = await call(http, "POST", hook, params={"thread_id": thread["id"]}, json={"content": "in thread"})
    assert posted["channel_id"] == thread["id"]
    edited = await call(http, "PATCH", f"{hook}/messages/{posted['id']}", json={"content": "edited"})
    assert edited["edited_timestamp"] is not None
    await call(http, "GET", f"{hook}/messages/1", status=404)
    await call(http, "DELETE", f"{hook}/messages/{posted['id']}", status=204)
    await call(http, "GET", f"webhooks/1/{run.token}/messages/@original", status=404)
    await call(http, "POST", f"channels/{general}/typing", status=204)


async def test_attachments_are_kept_by_id_and_replaced_when_a_message_is_edited(
    pg: Playground, http: aiohttp.ClientSession
):
    general = pg.state.channel_named("general")["id"]

    def form(payload: dict[str, Any], *files: tuple[str, bytes]) -> aiohttp.FormData:
        data = aiohttp.FormData(quote_fields=False)
        data.add_field("payload_json", __import__("json").dumps(payload))
        for i, (name, blob) in enumerate(files):
            data.add_field(f"files[{i}]", blob, filename=name)
        return data

    spec = {"content": "v1", "attachments": [{"id": 0, "filename": "a.txt"}, {"id": 1, "filename": "b.txt"}]}
    msg = await call(http, "POST", f"channels/{general}/messages", data=form(spec, ("a.txt", b"A"), ("b.txt", b"B")))
    keep = msg["attachments"][0]
    edit = {"attachments": [{"id": keep["id"]}, {"id": 0, "filename": "c.txt"}]}
    edited = await call(http, "PATCH", f"channels/{general}/messages/{msg['id']}", data=form(edit, ("c.txt", b"C")))
    assert [a["filename"] for a in edited["attachments"]] == ["a.txt", "c.txt"]
    async with aiohttp.ClientSession() as cdn, cdn.get(edited["attachments"][1]["url"]) as resp:
        assert (await resp.read(), resp.content_type) == (b"C", "text/plain")
    bad = {"content": "x", "attachments": [{"id": 5, "filename": "nope"}]}
    body = await call(http, "POST", f"channels/{general}/messages", status=400, data=form(bad, ("x.txt", b"x")))
    assert body["code"] == 50035
    body = await call(
        http,
        "POST",
        f"channels/{general}/messages",
        status=400,
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert body["code"] == 50109


async def test_unknown_route_is_a_discord_404_when_called(http: aiohttp.ClientSession):
    body = await call(http, "GET", "nope/nope", status=404)
    assert body == {"message": "404: Not Found", "code": 0}


async def test_thread_is_renamed_and_archived_when_patched(pg: Playground, http: aiohttp.ClientSession):
    general = pg.state.channel_named("general")["id"]
    thread = pg.state.create_thread(general, "job 1", owner_id=pg.state.app_id)
    edited = await call(http, "PATCH", f"channels/{thread['id']}", json={"name": "job 1 (done)", "archived": True})
    assert edited["name"] == "job 1 (done)"
    assert edited["thread_metadata"]["archived"] is True
    body = await call(http, "PATCH", f"channels/{general}", status=400, json={"name": ""})
    assert body["code"] == 50035
    assert (await call(http, "PATCH", f"channels/{general}", json={"topic": "t"}))["topic"] == "t"


async def test_a_third_rename_within_ten_minutes_is_429_while_other_edits_go(
    pg: Playground, http: aiohttp.ClientSession
):
    now = [1000.0]
    pg.rest.name_changes._clock = lambda: now[0]  # the limit's own clock, moved by hand
    general = pg.state.channel_named("general")["id"]
    thread = pg.state.create_thread(general, "job", owner_id=pg.state.app_id)
    path = f"channels/{thread['id']}"
    assert (await call(http, "PATCH", path, json={"name": "one"}))["name"] == "one"
    now[0] += 100
    assert (await call(http, "PATCH", path, json={"name": "two"}))["name"] == "two"
    body = await call(http, "PATCH", path, status=429, json={"name": "three"})
    assert body == {"message": "You are being rate limited.", "retry_after": 500.0, "global": False}
    assert (await call(http, "PATCH", path, json={"archived": True}))["name"] == "two"  # not a name change
    assert (await call(http, "PATCH", path, json={"name": "two"}))["name"] == "two"  # the same name changes nothing
    now[0] += 500  # ten minutes after the first rename
    assert (await call(http, "PATCH", path, json={"name": "three"}))["name"] == "three"


@pytest.mark.parametrize(
    ("allowed", "mentioned", "everyone"),
    [
        (None, ["alice", "bob"], True),  # no allowed_mentions: Discord parses every mention
        ({"parse": []}, [], False),
        ({"parse": ["users"]}, ["alice", "bob"], False),
        ({"parse": [], "users": ["{bob}"]}, ["bob"], False),
        ({"parse": ["everyone"]}, [], True),
    ],
    ids=["absent", "none", "parse-users", "listed-user", "parse-everyone"],
)
async def test_message_mentions_follow_allowed_mentions_when_content_names_users(
    pg: Playground, http: aiohttp.ClientSession, allowed: dict[str, Any] | None, mentioned: list[str], everyone: bool
):
    general = pg.state.channel_named("general")["id"]
    ids = {name: pg.state.user_named(name)["id"] for name in ("alice", "bob")}
    payload: dict[str, Any] = {"content": f"<@{ids['alice']}> <@!{ids['bob']}> @everyone"}
    if allowed is not None:
        users = [ids["bob"] for _ in allowed.get("users", [])]
        payload["allowed_mentions"] = {**allowed, **({"users": users} if users else {})}
    msg = await call(http, "POST", f"channels/{general}/messages", json=payload)
    assert [u["username"] for u in msg["mentions"]] == mentioned
    assert msg["mention_everyone"] is everyone
    edited = await call(http, "PATCH", f"channels/{general}/messages/{msg['id']}", json=payload)
    assert [u["username"] for u in edited["mentions"]] == mentioned


async def test_message_is_refused_when_allowed_mentions_parse_users_and_list_them(
    pg: Playground, http: aiohttp.ClientSession
):
    general = pg.state.channel_named("general")["id"]
    bob = pg.state.user_named("bob")["id"]
    payload = {"content": f"<@{bob}>", "allowed_mentions": {"parse": ["users"], "users": [bob]}}
    body = await call(http, "POST", f"channels/{general}/messages", status=400, json=payload)
    assert body["code"] == 50035


async def test_deleted_thread_answers_unknown_channel_and_dispatches_thread_delete_when_deleted(
    pg: Playground, http: aiohttp.ClientSession
):
    general = pg.state.channel_named("general")["id"]
    thread = pg.state.create_thread(general, "batch", owner_id=pg.state.app_id)
    posted = await call(http, "POST", f"channels/{thread['id']}/messages", json={"content": "progress"})
    seen: list[tuple[str, dict[str, Any]]] = []
    pg.state.subscribe(lambda event: seen.append((event.name, event.data)))

    deleted = await call(http, "DELETE", f"channels/{thread['id']}")

    assert deleted["id"] == thread["id"]
    expected = {"id": thread["id"], "guild_id": pg.state.guild_id, "parent_id": general, "type": thread["type"]}
    assert ("THREAD_DELETE", expected) in seen
    unknown = {"message": "Unknown Channel", "code": 10003}
    edit = await call(http, "PATCH", f"channels/{thread['id']}/messages/{posted['id']}", 404, json={"content": "x"})
    assert edit == unknown
    assert await call(http, "POST", f"channels/{thread['id']}/messages", 404, json={"content": "x"}) == unknown
    assert await call(http, "DELETE", f"channels/{thread['id']}", 404) == unknown
    assert posted["id"] not in pg.state.messages
    assert pg.state.channel_named("general")["id"] == general  # the parent stays
