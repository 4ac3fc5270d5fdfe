"""Each rule the playground enforces rejects a request the way Discord does: same status, code and field errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from local.discord import Playground
from local.discord.state import APPLICATION_COMMAND, Interaction
from tests.fakes.playground_bot import FakeClock

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def pg(clock: FakeClock) -> AsyncIterator[Playground]:
    async with Playground(clock=clock, upload_limit=1000, edit_rate_limit=5, edit_rate_window_s=5.0) as server:
        yield server


@pytest.fixture
async def http(pg: Playground) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bot {pg.token}"}
    async with aiohttp.ClientSession(base_url=pg.api_base + "/", headers=headers) as session:
        yield session


def general(pg: Playground) -> str:
    return str(pg.state.channel_named("general")["id"])


async def call(http: aiohttp.ClientSession, method: str, path: str, **kw: Any) -> tuple[int, Any, Any]:
    async with http.request(method, path.lstrip("/"), **kw) as resp:
        assert resp.headers.get("Content-Type") == "application/json" or resp.status == 204
        body = await resp.json() if resp.status != 204 else None
        return resp.status, body, resp.headers


def field_error(body: dict[str, Any], *path: str) -> str:
    node = body["errors"]
    for part in path:
        node = node[part]
    return str(node["_errors"][0]["code"])


def button(custom_id: str) -> dict[str, Any]:
    return {"type": 2, "style": 1, "label": "b", "custom_id": custom_id}


def link(url: str) -> dict[str, Any]:
    return {"type": 2, "style": 5, "label": "Full size", "url": url}


def select(n: int, *, text: str = "o") -> dict[str, Any]:
    options = [{"label": text, "value": f"{i}"} for i in range(n)]
    return {"type": 3, "custom_id": "s", "options": options}


def row(*components: dict[str, Any]) -> dict[str, Any]:
    return {"type": 1, "components": list(components)}


INVALID_MESSAGES = [
    pytest.param({"content": "x" * 2001}, ("content",), "BASE_TYPE_MAX_LENGTH", id="content-2001"),
    pytest.param(
        {"content": "x", "components": [{"type": 1, "components": [button(f"b{r}")]} for r in range(6)]},
        ("components",),
        "BASE_TYPE_MAX_LENGTH",
        id="six-action-rows",
    ),
    pytest.param(
        {"content": "x", "components": [{"type": 1, "components": [button(f"b{i}") for i in range(6)]}]},
        ("components", "0", "components"),
        "BASE_TYPE_MAX_LENGTH",
        id="six-buttons-in-a-row",
    ),
    pytest.param(
        {"content": "x", "components": [{"type": 1, "components": [button("c" * 101)]}]},
        ("components", "0", "components", "0", "custom_id"),
        "BASE_TYPE_MAX_LENGTH",
        id="custom-id-101",
    ),
    pytest.param(
        {"content": "x", "components": [{"type": 1, "components": [button("same"), button("same")]}]},
        ("components", "0", "components", "1", "custom_id"),
        "COMPONENT_CUSTOM_ID_DUPLICATED",
        id="duplicate-custom-id",
    ),
    pytest.param({"embeds": [{"title": "t" * 257}]}, ("embeds", "0", "title"), "BASE_TYPE_MAX_LENGTH", id="title"),
    pytest.param(
        {"embeds": [{"description": "d" * 4097}]}, ("embeds", "0", "description"), "BASE_TYPE_MAX_LENGTH", id="desc"
    ),
    pytest.param(
        {"embeds": [{"fields": [{"name": "n", "value": "v" * 1025}]}]},
        ("embeds", "0", "fields", "0", "value"),
        "BASE_TYPE_MAX_LENGTH",
        id="field-value",
    ),
    pytest.param(
        {"embeds": [{"description": "d" * 4000}, {"description": "d" * 2001}]},
        ("embeds",),
        "MAX_EMBED_SIZE_EXCEEDED",
        id="embeds-total-6001",
    ),
    pytest.param({"embeds": [{"title": "t"}] * 11}, ("embeds",), "BASE_TYPE_MAX_LENGTH", id="eleven-embeds"),
    pytest.param(
        {"embeds": [{"fields": [{"name": "n", "value": "v"}] * 26}]},
        ("embeds", "0", "fields"),
        "BASE_TYPE_MAX_LENGTH",
        id="26-fields",
    ),
    pytest.param(
        {"embeds": [{"fields": [{"name": "n" * 257, "value": "v"}]}]},
        ("embeds", "0", "fields", "0", "name"),
        "BASE_TYPE_MAX_LENGTH",
        id="field-name",
    ),
    pytest.param(
        {"embeds": [{"footer": {"text": "f" * 2049}}]},
        ("embeds", "0", "footer", "text"),
        "BASE_TYPE_MAX_LENGTH",
        id="footer",
    ),
    pytest.param(
        {"embeds": [{"author": {"name": "a" * 257}}]},
        ("embeds", "0", "author", "name"),
        "BASE_TYPE_MAX_LENGTH",
        id="author",
    ),
    pytest.param(
        {"content": "x", "attachments": [{"id": i, "filename": f"{i}.png"} for i in range(11)]},
        ("attachments",),
        "BASE_TYPE_MAX_LENGTH",
        id="eleven-attachments",
    ),
    pytest.param(
        {"content": "x", "components": [row({**button("b"), "label": "l" * 81})]},
        ("components", "0", "components", "0", "label"),
        "BASE_TYPE_MAX_LENGTH",
        id="label-81",
    ),
    pytest.param(
        {"content": "x", "components": [row(link("https://e.com/" + "u" * 499))]},
        ("components", "0", "components", "0", "url"),
        "BASE_TYPE_MAX_LENGTH",
        id="link-url-513",
    ),
    pytest.param(
        {"content": "x", "components": [row({**link("https://e.com"), "custom_id": "c"})]},
        ("components", "0", "components", "0", "custom_id"),
        "BUTTON_COMPONENT_CUSTOM_ID_NOT_ALLOWED",
        id="link-with-custom-id",
    ),
    pytest.param(
        {"content": "x", "components": [row({"type": 2, "style": 5, "label": "l"})]},
        ("components", "0", "components", "0", "url"),
        "BASE_TYPE_REQUIRED",
        id="link-without-url",
    ),
    pytest.param(
        {"content": "x", "components": [row({**button("b"), "url": "https://e.com"})]},
        ("components", "0", "components", "0", "url"),
        "BUTTON_COMPONENT_URL_NOT_ALLOWED",
        id="url-on-a-non-link",
    ),
    pytest.param(
        {"content": "x", "components": [row({"type": 2, "style": 1, "label": "l"})]},
        ("components", "0", "components", "0", "custom_id"),
        "BASE_TYPE_REQUIRED",
        id="button-without-custom-id",
    ),
    pytest.param(
        {"content": "x", "components": [row({"type": 2, "style": 1, "custom_id": "c"})]},
        ("components", "0", "components", "0", "label"),
        "BUTTON_COMPONENT_LABEL_OR_EMOJI_REQUIRED",
        id="button-without-label-or-emoji",
    ),
    pytest.param(
        {"content": "x", "components": [row(select(26))]},
        ("components", "0", "components", "0", "options"),
        "BASE_TYPE_MAX_LENGTH",
        id="26-options",
    ),
    pytest.param(
        {"content": "x", "components": [row(select(0))]},
        ("components", "0", "components", "0", "options"),
        "BASE_TYPE_MIN_LENGTH",
        id="no-options",
    ),
    pytest.param(
        {"content": "x", "components": [row(select(1, text="o" * 101))]},
        ("components", "0", "components", "0", "options", "0", "label"),
        "BASE_TYPE_MAX_LENGTH",
        id="option-label-101",
    ),
    pytest.param(
        {"content": "x", "components": [row({**select(1), "placeholder": "p" * 151})]},
        ("components", "0", "components", "0", "placeholder"),
        "BASE_TYPE_MAX_LENGTH",
        id="placeholder-151",
    ),
    pytest.param(
        {"content": "x", "components": [row({**select(1), "max_values": 26})]},
        ("components", "0", "components", "0", "max_values"),
        "NUMBER_TYPE_MAX",
        id="max-values-26",
    ),
    pytest.param(
        {"content": "x", "allowed_mentions": {"parse": ["users", "channels"]}},
        ("allowed_mentions", "parse", "1"),
        "BASE_TYPE_CHOICES",
        id="unknown-mention-type",
    ),
    pytest.param(
        {"content": "x", "allowed_mentions": {"parse": ["roles"], "roles": ["1"]}},
        ("allowed_mentions",),
        "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
        id="roles-parse-and-list",
    ),
]


@pytest.mark.parametrize(("payload", "path", "code"), INVALID_MESSAGES)
async def test_message_is_rejected_with_invalid_form_body_when_over_a_limit(
    pg: Playground, http: aiohttp.ClientSession, payload: dict[str, Any], path: tuple[str, ...], code: str
):
    status, body, _ = await call(http, "POST", f"channels/{general(pg)}/messages", json=payload)
    assert (status, body["code"], body["message"]) == (400, 50035, "Invalid Form Body")
    assert field_error(body, *path) == code
    assert pg.state.messages_in(general(pg)) == []


async def test_message_is_accepted_when_exactly_at_the_limits(pg: Playground, http: aiohttp.ClientSession):
    rows = [{"type": 1, "components": [button(f"{r}-{i}".ljust(100, "x")) for i in range(5)]} for r in range(5)]
    payload = {"content": "x" * 2000, "embeds": [{"title": "t" * 256, "description": "d" * 3744}], "components": rows}
    status, body, _ = await call(http, "POST", f"channels/{general(pg)}/messages", json=payload)
    assert status == 200, body
    assert body["content"] == "x" * 2000


async def test_components_are_accepted_when_exactly_at_their_limits(pg: Playground, http: aiohttp.ClientSession):
    full_link = link("https://e.com/" + "u" * 498)
    assert len(full_link["url"]) == 512
    options = [{"label": "o" * 100, "value": f"{i}".ljust(100, "v"), "description": "d" * 100} for i in range(25)]
    payload = {
        "content": "x",
        "components": [
            row(
                {**button("b"), "label": "l" * 80},
                full_link,
                {"type": 2, "style": 2, "custom_id": "e", "emoji": {"name": "🔄"}},
            ),
            row(
                {
                    "type": 3,
                    "custom_id": "s",
                    "options": options,
                    "placeholder": "p" * 150,
                    "min_values": 0,
                    "max_values": 25,
                }
            ),
        ],
        "embeds": [
            {
                "fields": [{"name": "n", "value": "v" * 200}] * 25,
                "footer": {"text": "f" * 150},
                "author": {"name": "a" * 256},
            }
        ],
        "allowed_mentions": {"parse": ["roles", "users", "everyone"]},
    }
    status, body, _ = await call(http, "POST", f"channels/{general(pg)}/messages", json=payload)
    assert status == 200, body
    assert body["components"][0]["components"][1]["url"] == full_link["url"]


async def test_mentions_are_resolved_only_when_allowed_mentions_permit_them(
    pg: Playground, http: aiohttp.ClientSession
):
    alice = pg.state.user_named("alice")["id"]
    content = f"@everyone look, <@{alice}>"
    _, plain, _ = await call(http, "POST", f"channels/{general(pg)}/messages", json={"content": content})
    assert ([u["id"] for u in plain["mentions"]], plain["mention_everyone"]) == ([alice], True)
    none = {"content": content, "allowed_mentions": {"parse": []}}
    _, silent, _ = await call(http, "POST", f"channels/{general(pg)}/messages", json=none)
    assert (silent["mentions"], silent["mention_everyone"]) == ([], False)
    users = {"content": content, "allowed_mentions": {"parse": [], "users": [alice]}}
    _, pinged, _ = await call(http, "POST", f"channels/{general(pg)}/messages", json=users)
    assert ([u["id"] for u in pinged["mentions"]], pinged["mention_everyone"]) == ([alice], False)
    assert pg.state.messages[silent["id"]]["mention_everyone"] is False


async def test_empty_message_is_rejected_when_it_has_nothing_to_show(pg: Playground, http: aiohttp.ClientSession):
    status, body, _ = await call(http, "POST", f"channels/{general(pg)}/messages", json={"content": ""})
    assert (status, body["code"]) == (400, 50006)


def upload_form(payload: dict[str, Any], size: int) -> aiohttp.FormData:
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("payload_json", __import__("json").dumps(payload), content_type="application/json")
    form.add_field("files[0]", b"\0" * size, filename="big.bin", content_type="application/octet-stream")
    return form


async def test_upload_is_rejected_with_40005_when_over_the_size_limit(pg: Playground, http: aiohttp.ClientSession):
    spec = {"content": "f", "attachments": [{"id": 0, "filename": "big.bin"}]}
    status, body, _ = await call(http, "POST", f"channels/{general(pg)}/messages", data=upload_form(spec, 1001))
    assert (status, body["code"], body["message"]) == (413, 40005, "Request entity too large")
    status, body, _ = await call(http, "POST", f"channels/{general(pg)}/messages", data=upload_form(spec, 1000))
    assert status == 200
    assert body["attachments"][0]["size"] == 1000


def start_command(pg: Playground) -> Interaction:
    pg.state.set_commands([{"name": "imagine", "description": "d", "options": []}])
    alice = pg.state.user_named("alice")["id"]
    return pg.state.start_interaction(APPLICATION_COMMAND, alice, general(pg), {"name": "imagine", "type": 1})


async def test_first_response_is_rejected_with_10062_when_after_three_seconds(
    pg: Playground, http: aiohttp.ClientSession, clock: FakeClock
):
    interaction = start_command(pg)
    clock.now += 3.01
    status, body, _ = await call(
        http, "POST", f"interactions/{interaction.id}/{interaction.token}/callback", json={"type": 5}
    )
    assert (status, body["code"]) == (404, 10062)


async def test_second_response_is_rejected_with_40060_when_already_acknowledged(
    pg: Playground, http: aiohttp.ClientSession, clock: FakeClock
):
    interaction = start_command(pg)
    clock.now += 2.9
    path = f"interactions/{interaction.id}/{interaction.token}/callback"
    status, body, _ = await call(http, "POST", path, params={"with_response": "true"}, json={"type": 5})
    assert status == 200
    assert body["interaction"]["response_message_loading"] is True
    status, body, _ = await call(http, "POST", path, json={"type": 4, "data": {"content": "again"}})
    assert (status, body["code"]) == (400, 40060)


async def test_callback_type_is_rejected_when_it_does_not_fit_the_interaction(
    pg: Playground, http: aiohttp.ClientSession
):
    interaction = start_command(pg)
    path = f"interactions/{interaction.id}/{interaction.token}/callback"
    status, body, _ = await call(http, "POST", path, json={"type": 6})  # DEFERRED_UPDATE needs a component
    assert (status, body["code"]) == (400, 50035)
    assert field_error(body, "type") == "BASE_TYPE_CHOICES"


async def test_modal_is_rejected_when_its_title_is_too_long(pg: Playground, http: aiohttp.ClientSession):
    interaction = start_command(pg)
    rows = [{"type": 1, "components": [{"type": 4, "custom_id": "p", "label": "P", "style": 1}]}]
    modal = {"type": 9, "data": {"custom_id": "m", "title": "t" * 46, "components": rows}}
    status, body, _ = await call(
        http, "POST", f"interactions/{interaction.id}/{interaction.token}/callback", json=modal
    )
    assert (status, body["code"]) == (400, 50035)
    assert field_error(body, "data", "title") == "BASE_TYPE_MAX_LENGTH"


async def test_followup_is_rejected_when_the_token_is_older_than_15_minutes(
    pg: Playground, http: aiohttp.ClientSession, clock: FakeClock
):
    interaction = start_command(pg)
    await call(http, "POST", f"interactions/{interaction.id}/{interaction.token}/callback", json={"type": 5})
    webhook = f"webhooks/{pg.state.app_id}/{interaction.token}"
    clock.now += 14 * 60
    status, _, _ = await call(http, "PATCH", f"{webhook}/messages/@original", json={"content": "still fine"})
    assert status == 200
    clock.now += 61
    status, body, _ = await call(http, "POST", webhook, json={"content": "too late"})
    assert (status, body["code"]) == (401, 50027)


async def test_followup_is_rejected_with_10015_when_not_acknowledged_yet(pg: Playground, http: aiohttp.ClientSession):
    interaction = start_command(pg)
    status, body, _ = await call(http, "POST", f"webhooks/{pg.state.app_id}/{interaction.token}", json={"content": "x"})
    assert (status, body["code"]) == (404, 10015)


async def test_rapid_edits_are_rate_limited_with_429_and_discord_headers_when_over_five_per_window(
    pg: Playground, http: aiohttp.ClientSession, clock: FakeClock
):
    _, msg, _ = await call(http, "POST", f"channels/{general(pg)}/messages", json={"content": "0%"})
    path = f"channels/{general(pg)}/messages/{msg['id']}"
    remaining = []
    for pct in range(1, 6):
        status, _, headers = await call(http, "PATCH", path, json={"content": f"{pct}0%"})
        assert status == 200
        remaining.append(int(headers["X-RateLimit-Remaining"]))
        assert headers["X-RateLimit-Limit"] == "5"
        assert headers["X-RateLimit-Bucket"]
    assert remaining == [4, 3, 2, 1, 0]
    clock.now += 1.0
    status, body, headers = await call(http, "PATCH", path, json={"content": "60%"})
    assert status == 429
    assert body["retry_after"] == pytest.approx(4.0)
    assert body["global"] is False
    assert headers["Via"]  # discord.py treats a 429 without Via as a Cloudflare ban
    assert headers["Retry-After"] == "4"
    assert pg.state.messages[msg["id"]]["content"] == "50%"
    clock.now += 4.0
    status, _, _ = await call(http, "PATCH", path, json={"content": "60%"})
    assert status == 200


async def test_rest_call_is_rejected_with_401_when_the_token_is_wrong(pg: Playground):
    async with (
        aiohttp.ClientSession(headers={"Authorization": "Bot nope"}) as http,
        http.get(pg.api_base + "/users/@me") as resp,
    ):
        assert resp.status == 401
        assert (await resp.json())["message"] == "401: Unauthorized"


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("GET", "channels/1/messages/2", 10003),
        ("POST", "channels/1/messages", 10003),
        ("GET", "channels/{general}/messages/2", 10008),
        ("GET", "guilds/1", 10004),
        ("POST", "interactions/1/nope/callback", 10062),
    ],
)
async def test_unknown_objects_are_404_with_discord_codes_when_missing(
    pg: Playground, http: aiohttp.ClientSession, method: str, path: str, code: int
):
    kw = {"json": {"content": "x"}} if method == "POST" else {}
    status, body, _ = await call(http, method, path.format(general=general(pg)), **kw)
    assert (status, body["code"]) == (404, code)


async def test_thread_is_rejected_with_160004_when_the_message_already_has_one(
    pg: Playground, http: aiohttp.ClientSession
):
    _, msg, _ = await call(http, "POST", f"channels/{general(pg)}/messages", json={"content": "grid"})
    path = f"channels/{general(pg)}/messages/{msg['id']}/threads"
    status, thread, _ = await call(http, "POST", path, json={"name": "job 1"})
    assert status == 201
    assert thread["id"] == msg["id"]
    status, body, _ = await call(http, "POST", path, json={"name": "job 1"})
    assert (status, body["code"]) == (400, 160004)


def text_input(**fields: Any) -> dict[str, Any]:
    return {"type": 4, "custom_id": "p", "label": "Prompt", "style": 2, **fields}


@pytest.mark.parametrize(
    ("field", "at_limit", "past_limit", "code"),
    [
        ("label", "l" * 45, "l" * 46, "BASE_TYPE_MAX_LENGTH"),
        ("placeholder", "p" * 100, "p" * 101, "BASE_TYPE_MAX_LENGTH"),
        ("value", "v" * 4000, "v" * 4001, "BASE_TYPE_MAX_LENGTH"),
        ("min_length", 4000, 4001, "NUMBER_TYPE_MAX"),
        ("max_length", 1, 0, "NUMBER_TYPE_MIN"),
    ],
)
async def test_modal_text_input_is_accepted_at_its_limit_and_rejected_past_it(
    pg: Playground, http: aiohttp.ClientSession, field: str, at_limit: object, past_limit: object, code: str
):
    for value, status_wanted in ((past_limit, 400), (at_limit, 200)):
        interaction = start_command(pg)
        modal = {
            "type": 9,
            "data": {"custom_id": "m", "title": "t" * 45, "components": [row(text_input(**{field: value}))]},
        }
        status, body, _ = await call(
            http, "POST", f"interactions/{interaction.id}/{interaction.token}/callback?with_response=true", json=modal
        )
        assert status == status_wanted, body
        if status == 400:
            assert body["code"] == 50035
            assert field_error(body, "data", "components", "0", "components", "0", field) == code


async def test_modal_label_component_is_checked_like_a_text_input_row(pg: Playground, http: aiohttp.ClientSession):
    interaction = start_command(pg)
    label = {"type": 18, "label": "l" * 46, "component": text_input(value="v" * 4001)}
    modal = {"type": 9, "data": {"custom_id": "m", "title": "t", "components": [label]}}
    status, body, _ = await call(
        http, "POST", f"interactions/{interaction.id}/{interaction.token}/callback", json=modal
    )
    assert (status, body["code"]) == (400, 50035)
    assert field_error(body, "data", "components", "0", "label") == "BASE_TYPE_MAX_LENGTH"
    assert field_error(body, "data", "components", "0", "component", "value") == "BASE_TYPE_MAX_LENGTH"
