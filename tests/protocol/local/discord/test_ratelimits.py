"""Each rate limit the playground enforces: accepted at the limit, 429 one past it, with Discord's headers and body.

The limits and their sources are in :mod:`local.discord.ratelimit`; a fake clock moves time instead of sleeping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from local.discord import Playground
from local.discord.ratelimit import Limit
from local.discord.state import APPLICATION_COMMAND, Interaction
from tests.fakes.playground_bot import FakeClock

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from multidict import CIMultiDictProxy


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def pg(clock: FakeClock) -> AsyncIterator[Playground]:
    async with Playground(clock=clock) as server:
        yield server


@pytest.fixture
async def http(pg: Playground) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bot {pg.token}"}
    async with aiohttp.ClientSession(base_url=pg.api_base + "/", headers=headers) as session:
        yield session


Answer = tuple[int, Any, "CIMultiDictProxy[str]"]


async def call(http: aiohttp.ClientSession, method: str, path: str, **kw: Any) -> Answer:
    async with http.request(method, path, **kw) as resp:
        body = await resp.json() if resp.status != 204 else None
        return resp.status, body, resp.headers


def channel(pg: Playground, name: str = "general") -> str:
    return str(pg.state.channel_named(name)["id"])


def assert_route_429(answer: Answer, retry_after: float) -> None:
    """Discord's 429 for a route's limit: body, ``Retry-After``, scope ``user``, ``Via``, no global flag."""
    status, body, headers = answer
    assert status == 429
    assert body == {
        "message": "You are being rate limited.",
        "retry_after": pytest.approx(retry_after),
        "global": False,
    }
    assert headers["X-RateLimit-Scope"] == "user"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["Retry-After"]
    assert headers["Via"]  # discord.py treats a 429 without Via as a Cloudflare ban
    assert "X-RateLimit-Global" not in headers


def remaining(answers: list[Answer]) -> list[int]:
    return [int(headers["X-RateLimit-Remaining"]) for _, _, headers in answers]


async def test_message_sends_are_limited_to_five_per_five_seconds_per_channel(
    pg: Playground, http: aiohttp.ClientSession, clock: FakeClock
):
    path = f"channels/{channel(pg)}/messages"
    sent = [await call(http, "POST", path, json={"content": f"{i}"}) for i in range(5)]
    assert [status for status, _, _ in sent] == [200] * 5
    assert remaining(sent) == [4, 3, 2, 1, 0]
    assert {headers["X-RateLimit-Limit"] for _, _, headers in sent} == {"5"}
    clock.now += 1.0
    assert_route_429(await call(http, "POST", path, json={"content": "6"}), retry_after=4.0)
    assert len(pg.state.messages_in(channel(pg))) == 5
    other = await call(http, "POST", f"channels/{channel(pg, 'images')}/messages", json={"content": "elsewhere"})
    assert other[0] == 200  # the bucket is kept per channel (the top-level resource) ...
    assert other[2]["X-RateLimit-Bucket"] == sent[0][2]["X-RateLimit-Bucket"]  # ... under one route bucket hash
    clock.now += 4.0
    assert (await call(http, "POST", path, json={"content": "6"}))[0] == 200


async def test_reactions_are_limited_to_one_per_quarter_second_per_channel(
    pg: Playground, http: aiohttp.ClientSession, clock: FakeClock
):
    _, msg, _ = await call(http, "POST", f"channels/{channel(pg)}/messages", json={"content": "vote"})
    base = f"channels/{channel(pg)}/messages/{msg['id']}/reactions"
    first = await call(http, "PUT", f"{base}/%E2%9C%85/@me")
    assert (first[0], first[2]["X-RateLimit-Limit"], first[2]["X-RateLimit-Remaining"]) == (204, "1", "0")
    assert_route_429(await call(http, "PUT", f"{base}/%E2%9D%8C/@me"), retry_after=0.25)
    clock.now += 0.25
    assert (await call(http, "DELETE", f"{base}/%E2%9C%85/@me"))[0] == 204


async def test_thread_creation_is_limited_to_five_per_five_seconds_per_channel(
    pg: Playground, http: aiohttp.ClientSession, clock: FakeClock
):
    path = f"channels/{channel(pg)}/threads"
    made = [await call(http, "POST", path, json={"name": f"t{i}", "type": 11}) for i in range(5)]
    assert [status for status, _, _ in made] == [201] * 5
    assert_route_429(await call(http, "POST", path, json={"name": "t5", "type": 11}), retry_after=5.0)
    clock.now += 5.0
    assert (await call(http, "POST", path, json={"name": "t5", "type": 11}))[0] == 201


def start_command(pg: Playground) -> Interaction:
    pg.state.set_commands([{"name": "imagine", "description": "d", "options": []}])
    alice = pg.state.user_named("alice")["id"]
    return pg.state.start_interaction(APPLICATION_COMMAND, alice, channel(pg), {"name": "imagine", "type": 1})


async def test_followups_are_limited_to_five_per_two_seconds_per_webhook_token(
    pg: Playground, http: aiohttp.ClientSession, clock: FakeClock
):
    interaction = start_command(pg)
    callback = await call(
        http, "POST", f"interactions/{interaction.id}/{interaction.token}/callback?with_response=true", json={"type": 5}
    )
    assert callback[0] == 200
    assert callback[2]["X-RateLimit-Limit"] == "5"  # the interaction-callback bucket
    webhook = f"webhooks/{pg.state.app_id}/{interaction.token}"
    sent = [await call(http, "POST", webhook, json={"content": f"{i}"}) for i in range(5)]
    assert [status for status, _, _ in sent] == [200] * 5
    assert remaining(sent) == [4, 3, 2, 1, 0]
    assert_route_429(await call(http, "POST", webhook, json={"content": "6"}), retry_after=2.0)
    clock.now += 2.0
    assert (await call(http, "POST", webhook, json={"content": "6"}))[0] == 200


async def test_webhook_edits_count_against_their_channels_edits_and_answer_with_the_tighter_bucket(
    pg: Playground, http: aiohttp.ClientSession, clock: FakeClock
):
    interaction = start_command(pg)
    await call(
        http, "POST", f"interactions/{interaction.id}/{interaction.token}/callback?with_response=true", json={"type": 5}
    )
    _, msg, _ = await call(http, "POST", f"channels/{channel(pg)}/messages", json={"content": "0"})
    for i in range(4):
        status, _, _ = await call(
            http, "PATCH", f"channels/{channel(pg)}/messages/{msg['id']}", json={"content": f"{i}"}
        )
        assert status == 200
    original = f"webhooks/{pg.state.app_id}/{interaction.token}/messages/@original"
    status, _, headers = await call(http, "PATCH", original, json={"content": "done"})
    assert (status, headers["X-RateLimit-Remaining"]) == (200, "0")  # the channel's fifth edit, the token's first
    assert_route_429(await call(http, "PATCH", original, json={"content": "again"}), retry_after=5.0)


async def test_global_limit_is_fifty_requests_per_second_and_skips_interaction_routes(
    pg: Playground, http: aiohttp.ClientSession, clock: FakeClock
):
    answers = [await call(http, "GET", "users/@me") for _ in range(50)]
    assert {status for status, _, _ in answers} == {200}
    status, body, headers = await call(http, "GET", f"channels/{channel(pg)}")
    assert status == 429
    assert body == {"message": "You are being rate limited.", "retry_after": pytest.approx(1.0), "global": True}
    assert (headers["X-RateLimit-Global"], headers["X-RateLimit-Scope"], headers["Retry-After"]) == (
        "true",
        "global",
        "1",
    )
    assert headers["Via"]
    interaction = start_command(pg)  # "Interaction endpoints are not bound to the bot's Global Rate Limit"
    callback = await call(
        http, "POST", f"interactions/{interaction.id}/{interaction.token}/callback?with_response=true", json={"type": 5}
    )
    assert callback[0] == 200
    clock.now += 1.0
    assert (await call(http, "GET", f"channels/{channel(pg)}"))[0] == 200


@pytest.mark.parametrize("path", ["users/@me", "guilds/{gid}", "channels/{cid}/messages/1"])
async def test_every_route_answers_with_rate_limit_headers(pg: Playground, http: aiohttp.ClientSession, path: str):
    status, _, headers = await call(http, "GET", path.format(gid=pg.state.guild_id, cid=channel(pg)))
    assert status in (200, 404)
    for name in ("Limit", "Remaining", "Reset", "Reset-After", "Bucket"):
        assert headers[f"X-RateLimit-{name}"]
    assert "X-RateLimit-Scope" not in headers  # sent on 429s only


@pytest.mark.parametrize(
    ("knobs", "limit", "retry_after"),
    [
        ({"rate_limits": {"message-create": Limit(2, 1.0)}}, 2, 1.0),
        ({"rate_window_scale": 0.1}, 5, 0.5),
    ],
)
async def test_limits_are_settable_when_a_test_needs_other_values(
    clock: FakeClock, knobs: Mapping[str, Any], limit: int, retry_after: float
):
    async with Playground(clock=clock, **knobs) as pg:
        headers = {"Authorization": f"Bot {pg.token}"}
        async with aiohttp.ClientSession(base_url=pg.api_base + "/", headers=headers) as http:
            path = f"channels/{channel(pg)}/messages"
            sent = [await call(http, "POST", path, json={"content": "x"}) for _ in range(limit)]
            assert [status for status, _, _ in sent] == [200] * limit
            assert_route_429(await call(http, "POST", path, json={"content": "x"}), retry_after=retry_after)


def test_unknown_bucket_names_are_refused_when_overridden():
    with pytest.raises(ValueError, match="message-creat"):
        Playground(rate_limits={"message-creat": Limit(1, 1.0)})
