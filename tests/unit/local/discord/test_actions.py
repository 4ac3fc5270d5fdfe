"""User actions refuse what Discord's client would not let a person do, and build Discord's interaction data."""

from __future__ import annotations

import re
from typing import Any

import pytest

from local.discord import Upload, actions
from local.discord.rules import ApiError
from local.discord.state import APPLICATION_COMMAND, PlaygroundState

COMMANDS: list[dict[str, Any]] = [
    {
        "name": "imagine",
        "description": "draw",
        "options": [
            {"type": 3, "name": "prompt", "description": "p", "required": True},
            {"type": 4, "name": "count", "description": "c"},
            {"type": 10, "name": "weight", "description": "w"},
            {"type": 5, "name": "fast", "description": "f"},
            {"type": 6, "name": "for", "description": "u"},
            {"type": 7, "name": "where", "description": "ch"},
            {"type": 8, "name": "role", "description": "r"},
            {"type": 11, "name": "image", "description": "i"},
            {"type": 3, "name": "ratio", "description": "r", "choices": [{"name": "square", "value": "1:1"}]},
        ],
    },
    {
        "name": "group",
        "description": "g",
        "options": [
            {
                "type": 1,
                "name": "list",
                "description": "l",
                "options": [{"type": 4, "name": "page", "description": "p"}],
            },
            {
                "type": 2,
                "name": "admin",
                "description": "a",
                "options": [{"type": 1, "name": "purge", "description": "p", "options": []}],
            },
        ],
    },
]


@pytest.fixture
def state() -> PlaygroundState:
    world = PlaygroundState()
    world.set_commands(COMMANDS)
    return world


def alice(state: PlaygroundState) -> str:
    return str(state.user_named("alice")["id"])


def general(state: PlaygroundState) -> str:
    return str(state.channel_named("general")["id"])


def test_options_are_typed_from_the_registered_command_when_given_as_strings(state: PlaygroundState):
    options = {
        "prompt": "fox",
        "count": "3",
        "weight": "0.5",
        "fast": "true",
        "for": "bob",
        "where": "images",
        "role": "Admin",
        "image": Upload("ref.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 8 + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")),
        "ratio": "1:1",
    }
    interaction = actions.run_command(state, alice(state), general(state), "imagine", options)
    data = interaction.payload["data"]
    values = {o["name"]: (o["type"], o["value"]) for o in data["options"]}
    bob = state.user_named("bob")["id"]
    assert values["count"] == (4, 3)
    assert values["weight"] == (10, 0.5)
    assert values["fast"] == (5, True)
    assert values["for"] == (6, bob)
    assert values["where"] == (7, state.channel_named("images")["id"])
    assert values["role"] == (8, state.roles["Admin"]["id"])
    attachment = data["resolved"]["attachments"][values["image"][1]]
    assert (attachment["filename"], attachment["width"], attachment["height"]) == ("ref.png", 2, 3)
    assert data["resolved"]["users"][bob]["username"] == "bob"
    assert "permissions" in data["resolved"]["members"][bob]
    assert interaction.payload["member"]["user"]["id"] == alice(state)
    assert interaction.payload["attachment_size_limit"] == state.upload_limit


@pytest.mark.parametrize(
    ("name", "options", "error"),
    [
        ("nope", {}, "no command /nope"),
        ("imagine", {}, "option 'prompt' is required"),
        ("imagine", {"prompt": "x", "colour": "red"}, "unknown option 'colour'"),
        ("imagine", {"prompt": "x", "count": "many"}, "option 'count'"),
        ("imagine", {"prompt": "x", "ratio": "2:1"}, "must be one of ['square']"),
        ("imagine", {"prompt": "x", "image": "not a file"}, "needs a file"),
        ("imagine", {"prompt": Upload("a.png", b"")}, "is not an attachment"),
        ("imagine", {"prompt": "x", "for": "nobody"}, "option 'for'"),
        ("group", {}, "needs a subcommand"),
        ("group nope", {}, "has no subcommand 'nope'"),
    ],
)
def test_command_is_refused_when_discord_would_not_send_it(
    state: PlaygroundState, name: str, options: dict[str, object], error: str
):
    with pytest.raises(actions.ActionError, match=re.escape(error)):
        actions.run_command(state, alice(state), general(state), name, options)


def test_subcommands_nest_their_options_when_run_by_path(state: PlaygroundState):
    data = actions.run_command(state, alice(state), general(state), "group list", {"page": 2}).payload["data"]
    assert data["options"] == [{"name": "list", "type": 1, "options": [{"name": "page", "type": 4, "value": 2}]}]
    data = actions.run_command(state, alice(state), general(state), "group admin purge").payload["data"]
    assert data["options"][0]["options"][0] == {"name": "purge", "type": 1, "options": []}


def test_autocomplete_marks_the_focused_option_when_typing(state: PlaygroundState):
    interaction = actions.autocomplete(state, alice(state), general(state), "imagine", {"prompt": "fo"}, "prompt")
    assert interaction.type == 4
    assert interaction.payload["data"]["options"] == [{"name": "prompt", "type": 3, "value": "fo", "focused": True}]


def bot_message(state: PlaygroundState, components: list[dict[str, Any]]) -> str:
    msg = state.create_message(general(state), state.bot_user, {"content": "m", "components": components})
    return str(msg["id"])


def row(*components: dict[str, Any]) -> dict[str, Any]:
    return {"type": 1, "components": list(components)}


def test_click_carries_the_whole_message_when_a_button_is_pressed(state: PlaygroundState):
    mid = bot_message(state, [row({"type": 2, "style": 1, "label": "Go", "custom_id": "go"})])
    interaction = actions.click(state, alice(state), mid, "go")
    assert interaction.payload["data"] == {"custom_id": "go", "component_type": 2}
    assert interaction.payload["message"]["components"][0]["components"][0]["custom_id"] == "go"


@pytest.mark.parametrize(
    ("component", "custom_id", "error"),
    [
        ({"type": 2, "style": 1, "label": "x", "custom_id": "off", "disabled": True}, "off", "is disabled"),
        ({"type": 2, "style": 1, "label": "x", "custom_id": "a"}, "b", "has no component 'b'"),
        ({"type": 3, "custom_id": "s", "options": [{"label": "a", "value": "a"}]}, "s", "is not a button"),
    ],
)
def test_click_is_refused_when_the_button_cannot_be_pressed(
    state: PlaygroundState, component: dict[str, Any], custom_id: str, error: str
):
    mid = bot_message(state, [row(component)])
    with pytest.raises(actions.ActionError, match=re.escape(error)):
        actions.click(state, alice(state), mid, custom_id)


def test_select_is_refused_when_values_are_not_offered_or_too_many(state: PlaygroundState):
    menu = {"type": 3, "custom_id": "s", "options": [{"label": "a", "value": "a"}, {"label": "b", "value": "b"}]}
    mid = bot_message(state, [row(menu)])
    with pytest.raises(actions.ActionError, match="has no options"):
        actions.select(state, alice(state), mid, "s", ["z"])
    with pytest.raises(actions.ActionError, match="takes 1 to 1 values"):
        actions.select(state, alice(state), mid, "s", ["a", "b"])
    interaction = actions.select(state, alice(state), mid, "s", ["b"])
    assert interaction.payload["data"] == {"custom_id": "s", "component_type": 3, "values": ["b"]}


def test_ephemeral_message_is_hidden_from_other_users_and_click_refused_when_not_theirs(state: PlaygroundState):
    interaction = actions.run_command(state, alice(state), general(state), "imagine", {"prompt": "x"})
    body = {"type": 4, "data": {"content": "secret", "flags": 64, "components": [row(_button("b"))]}}
    state.respond(interaction.id, interaction.token, body, {})
    bob = str(state.user_named("bob")["id"])
    assert [m["content"] for m in state.messages_in(general(state), alice(state))] == ["secret"]
    assert state.messages_in(general(state), bob) == []
    with pytest.raises(actions.ActionError, match="no message"):
        actions.click(state, bob, str(interaction.original_id), "b")


def _button(custom_id: str) -> dict[str, Any]:
    return {"type": 2, "style": 1, "label": custom_id, "custom_id": custom_id}


def opened_modal(state: PlaygroundState, components: list[dict[str, Any]]) -> str:
    interaction = actions.run_command(state, alice(state), general(state), "imagine", {"prompt": "x"})
    state.respond(
        interaction.id,
        interaction.token,
        {"type": 9, "data": {"custom_id": "m", "title": "T", "components": components}},
        {},
    )
    return interaction.id


def test_modal_submit_mirrors_the_modal_layout_when_submitted(state: PlaygroundState):
    text = {"type": 4, "custom_id": "p", "style": 1, "label": "P", "required": True}
    label = {"type": 18, "label": "Notes", "component": {"type": 4, "custom_id": "n", "style": 2, "required": False}}
    iid = opened_modal(state, [row(text), label])
    submitted = actions.submit_modal(state, alice(state), iid, {"p": "blue"})
    data = submitted.payload["data"]
    assert data["custom_id"] == "m"
    assert data["components"][0]["components"][0] == {"type": 4, "id": 0, "custom_id": "p", "value": "blue"}
    assert data["components"][1]["component"]["value"] == ""
    assert submitted.type == 5


@pytest.mark.parametrize(
    ("values", "user", "error"),
    [
        ({}, "alice", "field 'p' is required"),
        ({"p": "x" * 11}, "alice", "takes 2 to 10 characters"),
        ({"q": "x"}, "alice", "has no fields"),
        ({"p": "ok"}, "bob", "only the user who opened"),
    ],
)
def test_modal_submit_is_refused_when_fields_are_invalid(
    state: PlaygroundState, values: dict[str, str], user: str, error: str
):
    text = {"type": 4, "custom_id": "p", "style": 1, "label": "P", "min_length": 2, "max_length": 10}
    iid = opened_modal(state, [row(text)])
    with pytest.raises(actions.ActionError, match=re.escape(error)):
        actions.submit_modal(state, str(state.user_named(user)["id"]), iid, values)


def test_modal_submit_is_refused_when_no_modal_was_opened(state: PlaygroundState):
    interaction = state.start_interaction(APPLICATION_COMMAND, alice(state), general(state), {"name": "imagine"})
    with pytest.raises(actions.ActionError, match="opened no modal"):
        actions.submit_modal(state, alice(state), interaction.id, {})


def test_user_message_is_a_reply_when_it_references_another(state: PlaygroundState):
    first = actions.send_message(state, alice(state), general(state), "hi")
    reply = actions.send_message(state, alice(state), general(state), "again", reply_to=first["id"])
    assert reply["type"] == 19
    assert reply["referenced_message"]["content"] == "hi"
    with pytest.raises(ApiError) as caught:
        actions.send_message(state, alice(state), general(state), "x", reply_to="1")
    assert caught.value.code == 50035


def test_user_upload_is_refused_when_over_the_limit(state: PlaygroundState):
    with pytest.raises(actions.ActionError, match="upload limit"):
        actions.send_message(
            state, alice(state), general(state), "", files=[Upload("a.bin", b"\0" * (state.upload_limit + 1))]
        )


def test_reactions_count_each_user_once_when_added_and_removed(state: PlaygroundState):
    mid = str(actions.send_message(state, alice(state), general(state), "hi")["id"])
    bob = str(state.user_named("bob")["id"])
    assert actions.react(state, alice(state), mid, "🍌")
    assert not actions.react(state, alice(state), mid, "🍌")
    assert actions.react(state, bob, mid, "🍌")
    assert state.messages[mid]["reactions"][0]["count"] == 2
    assert actions.react(state, bob, mid, "🍌", add=False)
    assert actions.react(state, alice(state), mid, "🍌", add=False)
    assert state.messages[mid]["reactions"] == []


def test_context_menu_carries_the_target_when_run_on_a_message_or_user(state: PlaygroundState):
    state.set_commands([*COMMANDS, {"name": "Vary", "type": 3}, {"name": "Profile", "type": 2}])
    mid = str(actions.send_message(state, alice(state), general(state), "pic")["id"])
    on_message = actions.context_menu(state, alice(state), "Vary", message_id=mid)
    assert on_message.payload["data"]["target_id"] == mid
    assert on_message.payload["data"]["resolved"]["messages"][mid]["content"] == "pic"
    bob = str(state.user_named("bob")["id"])
    on_user = actions.context_menu(state, alice(state), "Profile", target_user_id=bob)
    assert on_user.payload["data"]["resolved"]["users"][bob]["username"] == "bob"
    with pytest.raises(actions.ActionError, match="no message command"):
        actions.context_menu(state, alice(state), "Profile", message_id=mid)
    with pytest.raises(actions.ActionError, match="no user 1"):
        actions.context_menu(state, alice(state), "Profile", target_user_id="1")
