"""What a person can do in the playground, shared by the browser page and the Python test driver.

Each action checks what Discord's own client would refuse (unknown command, missing required option, disabled
button, a modal that was never opened) and then becomes a dispatch: INTERACTION_CREATE, MESSAGE_CREATE or
MESSAGE_REACTION_ADD/REMOVE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from local.discord.state import (
    APPLICATION_COMMAND,
    AUTOCOMPLETE,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    Interaction,
    PlaygroundState,
    Upload,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from local.discord.rules import JSON

SUB_COMMAND, SUB_COMMAND_GROUP, STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = (
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
)
BUTTON = 2
TEXT_INPUT = 4
LABEL = 18


class ActionError(ValueError):
    """A user action Discord's client would not allow (the reason is shown to the person or the test)."""


def _infer_type(value: object) -> int:
    if isinstance(value, Upload):
        return ATTACHMENT
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return NUMBER
    return STRING


def _role_named(state: PlaygroundState, name: str) -> JSON | None:
    """Return a role of the guild by name or id (None: no such role)."""
    return next((r for r in state.roles.values() if name in (r["name"], r["id"])), None)


def _coerce(state: PlaygroundState, spec: JSON | None, name: str, value: object) -> tuple[int, Any]:
    """Return (option type, wire value) for one option, converting browser strings to the declared type."""
    otype = int(spec["type"]) if spec else _infer_type(value)
    if isinstance(value, Upload):
        if otype != ATTACHMENT:
            raise ActionError(f"option {name!r} is not an attachment")
        return otype, value
    try:
        if otype == INTEGER:
            return otype, int(str(value))
        if otype == NUMBER:
            return otype, float(str(value))
        if otype == BOOLEAN:
            return otype, value if isinstance(value, bool) else str(value).lower() in ("true", "1", "yes", "on")
        if otype == MENTIONABLE and (role := _role_named(state, str(value))) is not None:
            # A mentionable option takes a user or a role (option type 9, MENTIONABLE:
            # https://discord.com/developers/docs/interactions/application-commands#application-command-object-application-command-option-type).
            return otype, role["id"]
        if otype in (USER, MENTIONABLE):
            return otype, state.user_named(str(value))["id"]
        if otype == CHANNEL:
            return otype, state.channel_named(str(value))["id"]
        if otype == ROLE:
            roles = {r["name"]: r["id"] for r in state.roles.values()}
            return otype, roles.get(str(value), str(value))
    except (ValueError, KeyError) as exc:
        raise ActionError(f"option {name!r}: {exc}") from exc
    if otype == ATTACHMENT:
        raise ActionError(f"option {name!r} needs a file")
    return otype, str(value)


def _build_options(
    state: PlaygroundState,
    specs: list[JSON],
    values: Mapping[str, object],
    channel_id: str,
    resolved: JSON,
    focused: str | None,
) -> list[JSON]:
    by_name = {s["name"]: s for s in specs}
    out: list[JSON] = []
    for required in specs:
        if required.get("required") and required["name"] not in values and required["name"] != focused:
            raise ActionError(f"option {required['name']!r} is required")
    for name, raw in values.items():
        spec: JSON | None = by_name.get(name)
        if specs and spec is None:
            raise ActionError(f"unknown option {name!r}; options are {sorted(by_name)}")
        otype, value = _coerce(state, spec, name, raw)
        choices = (spec or {}).get("choices")
        if choices and name != focused and value not in [c["value"] for c in choices]:
            raise ActionError(f"option {name!r} must be one of {[c['name'] for c in choices]}")
        option: JSON = {"name": name, "type": otype}
        if isinstance(value, Upload):
            attachment = state.store_file(channel_id, value, ephemeral=True)
            resolved.setdefault("attachments", {})[attachment["id"]] = attachment
            value = attachment["id"]
        elif otype == MENTIONABLE and value not in state.users:  # a role: resolved as roles are
            resolved.setdefault("roles", {})[value] = _role_named(state, str(value))
        elif otype in (USER, MENTIONABLE):
            resolved.setdefault("users", {})[value] = state.users[value]
            resolved.setdefault("members", {})[value] = {
                k: v for k, v in state.member(value, with_permissions=True).items() if k != "user"
            }
        elif otype == CHANNEL:
            channel = state.channels[value]
            resolved.setdefault("channels", {})[value] = {
                k: channel.get(k) for k in ("id", "name", "type", "parent_id", "thread_metadata") if k in channel
            } | {"permissions": "2248473465835073"}
        elif otype == ROLE:
            role = next((r for r in state.roles.values() if r["id"] == value), None)
            if role is not None:
                resolved.setdefault("roles", {})[value] = role
        option["value"] = value
        if name == focused:
            option["focused"] = True
        out.append(option)
    return out


def command_data(
    state: PlaygroundState,
    name: str,
    options: Mapping[str, object],
    channel_id: str,
    *,
    focused: str | None = None,
) -> JSON:
    """Build the ``data`` of a CHAT_INPUT interaction; ``name`` may name a subcommand (``"group sub"``)."""
    parts = name.split()
    command = state.command_named(parts[0])
    if command is None:
        known = sorted({c["name"] for c in state.commands.values()})
        raise ActionError(f"no command /{parts[0]} is registered (registered: {known})")
    resolved: JSON = {}
    specs: list[JSON] = list(command.get("options") or [])
    chain: list[JSON] = []
    for part in parts[1:]:
        sub = next((s for s in specs if s["name"] == part and s["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)), None)
        if sub is None:
            raise ActionError(f"/{parts[0]} has no subcommand {part!r}")
        chain.append(sub)
        specs = list(sub.get("options") or [])
    if any(s["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP) for s in specs):
        raise ActionError(f"/{name} needs a subcommand: {[s['name'] for s in specs]}")
    leaf = _build_options(state, specs, options, channel_id, resolved, focused)
    for sub in reversed(chain):
        leaf = [{"name": sub["name"], "type": sub["type"], "options": leaf}]
    data: JSON = {"id": command["id"], "name": command["name"], "type": 1, "options": leaf}
    if resolved:
        data["resolved"] = resolved
    if command.get("guild_id"):
        data["guild_id"] = command["guild_id"]
    return data


def run_command(
    state: PlaygroundState, user_id: str, channel_id: str, name: str, options: Mapping[str, object] | None = None
) -> Interaction:
    """Run a slash command as ``user_id`` in a channel or thread."""
    data = command_data(state, name, options or {}, channel_id)
    return state.start_interaction(APPLICATION_COMMAND, user_id, channel_id, data)


USER_COMMAND, MESSAGE_COMMAND = 2, 3


def context_menu(
    state: PlaygroundState, user_id: str, name: str, *, message_id: str | None = None, target_user_id: str | None = None
) -> Interaction:
    """Run a message (``message_id``) or user (``target_user_id``) context-menu command, as "Apps" does."""
    kind = MESSAGE_COMMAND if message_id is not None else USER_COMMAND
    command = next((c for c in state.commands.values() if c["name"] == name and c.get("type") == kind), None)
    if command is None:
        raise ActionError(f"no {'message' if kind == MESSAGE_COMMAND else 'user'} command {name!r} is registered")
    data: JSON = {"id": command["id"], "name": name, "type": kind}
    if message_id is not None:
        msg = state.messages.get(message_id)
        if msg is None or not state.visible(msg, user_id):
            raise ActionError(f"no message {message_id}")
        data["target_id"] = message_id
        data["resolved"] = {"messages": {message_id: msg}}
        channel_id = str(msg["channel_id"])
    else:
        if target_user_id not in state.users:
            raise ActionError(f"no user {target_user_id}")
        member = {k: v for k, v in state.member(target_user_id, with_permissions=True).items() if k != "user"}
        data["target_id"] = target_user_id
        data["resolved"] = {"users": {target_user_id: state.users[target_user_id]}, "members": {target_user_id: member}}
        channel_id = str(state.channel_named("general")["id"])
    if command.get("guild_id"):
        data["guild_id"] = command["guild_id"]
    return state.start_interaction(APPLICATION_COMMAND, user_id, channel_id, data)


def autocomplete(
    state: PlaygroundState, user_id: str, channel_id: str, name: str, options: Mapping[str, object], focused: str
) -> Interaction:
    """Ask the bot for autocomplete choices of the option ``focused``."""
    data = command_data(state, name, options, channel_id, focused=focused)
    return state.start_interaction(AUTOCOMPLETE, user_id, channel_id, data)


def iter_components(components: list[JSON]) -> list[JSON]:
    """Return every component of a message, nested ones included, in display order."""
    out: list[JSON] = []
    for comp in components:
        out.append(comp)
        for key in ("components", "accessory", "component"):
            child = comp.get(key)
            if isinstance(child, list):
                out.extend(iter_components(child))
            elif isinstance(child, dict):
                out.extend(iter_components([child]))
    return out


def _component(state: PlaygroundState, user_id: str, message_id: str, custom_id: str) -> tuple[JSON, JSON]:
    msg = state.messages.get(message_id)
    if msg is None or not state.visible(msg, user_id):
        raise ActionError(f"no message {message_id}")
    comp = next((c for c in iter_components(msg["components"]) if c.get("custom_id") == custom_id), None)
    if comp is None:
        ids = [c["custom_id"] for c in iter_components(msg["components"]) if "custom_id" in c]
        raise ActionError(f"message {message_id} has no component {custom_id!r} (it has {ids})")
    if comp.get("disabled"):
        raise ActionError(f"component {custom_id!r} is disabled")
    return msg, comp


def click(state: PlaygroundState, user_id: str, message_id: str, custom_id: str) -> Interaction:
    """Click a button; the interaction carries the whole message, as DynamicItem needs."""
    msg, comp = _component(state, user_id, message_id, custom_id)
    if comp.get("type") != BUTTON:
        raise ActionError(f"component {custom_id!r} is not a button")
    data = {"custom_id": custom_id, "component_type": BUTTON}
    return state.start_interaction(MESSAGE_COMPONENT, user_id, msg["channel_id"], data, message=msg)


def select(state: PlaygroundState, user_id: str, message_id: str, custom_id: str, values: list[str]) -> Interaction:
    """Pick values from a select menu."""
    msg, comp = _component(state, user_id, message_id, custom_id)
    ctype = int(comp.get("type", 0))
    low, high = int(comp.get("min_values", 1)), int(comp.get("max_values", 1))
    if not low <= len(values) <= high:
        raise ActionError(f"select {custom_id!r} takes {low} to {high} values")
    if ctype == 3:
        allowed = [o["value"] for o in comp.get("options", [])]
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ActionError(f"select {custom_id!r} has no options {bad}; it has {allowed}")
    data: JSON = {"custom_id": custom_id, "component_type": ctype, "values": values}
    return state.start_interaction(MESSAGE_COMPONENT, user_id, msg["channel_id"], data, message=msg)


def _modal_inputs(components: list[JSON]) -> list[JSON]:
    return [c for c in iter_components(components) if c.get("type") == TEXT_INPUT]


def submit_modal(state: PlaygroundState, user_id: str, interaction_id: str, values: Mapping[str, str]) -> Interaction:
    """Submit the modal the bot opened in answer to ``interaction_id``."""
    source = state.interactions.get(interaction_id)
    if source is None or source.modal is None:
        raise ActionError(f"interaction {interaction_id} opened no modal")
    if source.user_id != user_id:
        raise ActionError("only the user who opened a modal can submit it")
    modal = source.modal
    inputs = _modal_inputs(modal.get("components") or [])
    known = {c["custom_id"] for c in inputs}
    unknown = set(values) - known
    if unknown:
        raise ActionError(f"modal has no fields {sorted(unknown)}; it has {sorted(known)}")
    rows: list[JSON] = []
    for top in modal.get("components") or []:
        for field in _modal_inputs([top]):
            value = values.get(field["custom_id"], field.get("value") or "")
            if field.get("required", True) and not value:
                raise ActionError(f"modal field {field['custom_id']!r} is required")
            low, high = int(field.get("min_length", 0)), int(field.get("max_length", 4000))
            if value and not low <= len(value) <= high:
                raise ActionError(f"modal field {field['custom_id']!r} takes {low} to {high} characters")
            submitted = {"type": TEXT_INPUT, "id": field.get("id", 0), "custom_id": field["custom_id"], "value": value}
            if top.get("type") == LABEL:
                rows.append({"type": LABEL, "id": top.get("id", 0), "component": submitted})
            else:
                rows.append({"type": 1, "id": top.get("id", 0), "components": [submitted]})
    data = {"custom_id": modal["custom_id"], "components": rows}
    message = source.payload.get("message")
    current = state.messages.get(message["id"]) if message else None
    return state.start_interaction(MODAL_SUBMIT, user_id, source.channel_id, data, message=current)


def send_message(
    state: PlaygroundState,
    user_id: str,
    channel_id: str,
    content: str,
    *,
    files: list[Upload] | None = None,
    reply_to: str | None = None,
) -> JSON:
    """Post a message as a user (a reply when ``reply_to`` is a message id)."""
    payload: JSON = {"content": content}
    if reply_to is not None:
        payload["message_reference"] = {"message_id": reply_to}
    uploads = dict(enumerate(files or []))
    if sum(len(u.data) for u in uploads.values()) > state.upload_limit:
        raise ActionError(f"files are larger than the {state.upload_limit} byte upload limit")
    return state.create_message(channel_id, state.users[user_id], payload, uploads)


def react(state: PlaygroundState, user_id: str, message_id: str, emoji: str, *, add: bool = True) -> bool:
    """Add (or remove) a user's reaction to a message."""
    msg = state.messages.get(message_id)
    if msg is None or not state.visible(msg, user_id):
        raise ActionError(f"no message {message_id}")
    return state.react(msg, emoji, user_id, add=add)
