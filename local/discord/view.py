"""What the browser page sees and does: a snapshot of the world for one user, and the page's actions."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from local.discord import actions
from local.discord.state import DM, THREAD_TYPES, PlaygroundState, Upload

if TYPE_CHECKING:
    from local.discord.rules import JSON

HISTORY = 200


def snapshot(state: PlaygroundState, viewer_id: str, *, bot_connected: bool, api_base: str, gateway_url: str) -> JSON:
    """Return the guild, channels, threads, users, commands and recent messages as ``viewer_id`` sees them."""
    channels = [c for c in state.channels.values() if c["type"] != DM or c["recipients"][0]["id"] == viewer_id]
    return {
        "guild": {"id": state.guild_id, "name": "Peel Playground"},
        "me": state.users[viewer_id],
        "bot": state.bot_user,
        "bot_connected": bot_connected,
        "users": [u for u in state.users.values() if not u.get("bot")],
        "roles": list(state.roles.values()),
        "member_roles": state.member_roles,
        "channels": channels,
        "commands": sorted(state.commands.values(), key=lambda c: c["name"]),
        "messages": {
            c["id"]: [_with_reactors(state, m) for m in state.messages_in(c["id"], viewer_id)[-HISTORY:]]
            for c in channels
        },
        "upload_limit": state.upload_limit,
        "api_base": api_base,
        "gateway_url": gateway_url,
    }


def _with_reactors(state: PlaygroundState, message: JSON) -> JSON:
    """Add who reacted to each reaction, so the page can highlight the viewer's own."""
    if not message.get("reactions"):
        return message
    reactions = []
    for reaction in message["reactions"]:
        emoji = reaction["emoji"]
        key = f"{emoji['name']}:{emoji['id']}" if emoji.get("id") else str(emoji["name"])
        reactions.append({**reaction, "users": list(state.reactors.get((message["id"], key), []))})
    return {**message, "reactions": reactions}


def _options(body: JSON, files: dict[int, Upload]) -> dict[str, object]:
    raw = body.get("options") or {}
    if isinstance(raw, str):
        raw = json.loads(raw)
    options: dict[str, object] = {k: v for k, v in raw.items() if v not in (None, "")}
    names = body.get("file_options") or []
    if isinstance(names, str):
        names = json.loads(names)
    for index, upload in files.items():
        if index < len(names):
            options[names[index]] = upload
    return options


async def run_page_action(state: PlaygroundState, name: str, body: JSON, files: dict[int, Upload]) -> JSON:
    """Run one action the page asked for, as the user the page is signed in as."""
    user_id = state.user_named(str(body.get("user") or "alice"))["id"]
    if name == "command":
        channel = str(body["channel_id"])
        interaction = actions.run_command(state, user_id, channel, str(body["name"]), _options(body, files))
        return {"interaction_id": interaction.id}
    if name == "autocomplete":
        interaction = actions.autocomplete(
            state, user_id, str(body["channel_id"]), str(body["name"]), _options(body, files), str(body["focused"])
        )
        deadline = asyncio.get_running_loop().time() + state.interaction_deadline_s
        while interaction.choices is None and not interaction.failed:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            await state.wait_changed(left)
        return {"choices": interaction.choices or []}
    if name == "context":
        mid = body.get("message_id")
        interaction = actions.context_menu(
            state,
            user_id,
            str(body["name"]),
            message_id=str(mid) if mid else None,
            target_user_id=str(body["target_user_id"]) if body.get("target_user_id") else None,
        )
        return {"interaction_id": interaction.id}
    if name == "click":
        interaction = actions.click(state, user_id, str(body["message_id"]), str(body["custom_id"]))
        return {"interaction_id": interaction.id}
    if name == "select":
        picked = [str(v) for v in body.get("values") or []]
        interaction = actions.select(state, user_id, str(body["message_id"]), str(body["custom_id"]), picked)
        return {"interaction_id": interaction.id}
    if name == "modal":
        fields = {str(k): str(v) for k, v in (body.get("values") or {}).items()}
        interaction = actions.submit_modal(state, user_id, str(body["interaction_id"]), fields)
        return {"interaction_id": interaction.id}
    if name == "message":
        reply_to = body.get("reply_to")
        msg = actions.send_message(
            state,
            user_id,
            str(body["channel_id"]),
            str(body.get("content") or ""),
            files=[files[i] for i in sorted(files)],
            reply_to=str(reply_to) if reply_to else None,
        )
        return {"message_id": msg["id"]}
    if name == "react":
        changed = actions.react(
            state, user_id, str(body["message_id"]), str(body["emoji"]), add=bool(body.get("add", True))
        )
        return {"changed": changed}
    if name == "thread":
        mid = body.get("message_id")
        parent = state.channels.get(str(body["channel_id"]))
        if parent is None or parent["type"] in THREAD_TYPES:
            raise actions.ActionError("threads start from a text channel")
        thread = state.create_thread(
            parent["id"], str(body.get("name") or "thread"), owner_id=user_id, message_id=str(mid) if mid else None
        )
        return {"thread_id": thread["id"]}
    raise actions.ActionError(f"unknown action {name}")
