"""The playground's channels: threads, renaming, archiving and deleting channels, DMs, and application commands."""

from __future__ import annotations

from local.discord.messages import MessageWorld
from local.discord.records import (
    DM,
    GUILD_TEXT,
    MAX_CHANNEL_NAME,
    PUBLIC_THREAD,
    THREAD_TYPES,
    length_error,
    now_iso,
    required_error,
    unknown_error,
)
from local.discord.rules import JSON, ApiError


class ChannelWorld(MessageWorld):
    """The guild with its messages, and the channels, threads, DMs and commands they live in."""

    # ---------------------------------------------------------------- threads
    def create_thread(
        self,
        parent_id: str,
        name: str,
        *,
        owner_id: str,
        message_id: str | None = None,
        thread_type: int = PUBLIC_THREAD,
        auto_archive_duration: int = 1440,
    ) -> JSON:
        """Create a thread (from a message, sharing its id, or standalone) and dispatch THREAD_CREATE."""
        parent = self.channels.get(parent_id)
        if parent is None:
            raise ApiError(404, 10003, "Unknown Channel")
        if parent["type"] != GUILD_TEXT:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        if not 1 <= len(name) <= MAX_CHANNEL_NAME:
            raise ApiError(400, 50035, "Invalid Form Body", {"name": {"_errors": [length_error(1, 100)]}})
        starter = self.find_message(parent_id, message_id) if message_id is not None else None
        if message_id is not None and message_id in self.channels:
            raise ApiError(400, 160004, "A thread has already been created for this message")
        tid = message_id or self.ids.next()
        stamp = now_iso()
        thread: JSON = {
            "id": tid,
            "guild_id": self.guild_id,
            "parent_id": parent_id,
            "owner_id": owner_id,
            "name": name,
            "type": thread_type,
            "last_message_id": None,
            "message_count": 0,
            "member_count": 1,
            "rate_limit_per_user": 0,
            "flags": 0,
            "total_message_sent": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": auto_archive_duration,
                "archive_timestamp": stamp,
                "locked": False,
                "create_timestamp": stamp,
            },
            "member": {"id": tid, "user_id": owner_id, "join_timestamp": stamp, "flags": 0},
        }
        self.channels[tid] = thread
        self.channel_messages[tid] = []
        if starter is not None:
            starter["thread"] = thread
            self.emit("MESSAGE_UPDATE", starter, intent=1 << 9)
        self.emit("THREAD_CREATE", {**thread, "newly_created": True}, intent=1)
        return thread

    def edit_channel(self, channel: JSON, changes: JSON) -> JSON:
        """Rename a channel or thread, or archive/lock a thread; dispatch CHANNEL_UPDATE or THREAD_UPDATE."""
        if "name" in changes:
            name = str(changes["name"] or "")
            if not 1 <= len(name) <= MAX_CHANNEL_NAME:
                raise ApiError(400, 50035, "Invalid Form Body", {"name": {"_errors": [length_error(1, 100)]}})
            channel["name"] = name
        if "topic" in changes and channel["type"] == GUILD_TEXT:
            channel["topic"] = changes["topic"]
        metadata = channel.get("thread_metadata")
        if metadata is not None:
            for key in ("archived", "locked", "auto_archive_duration"):
                if key in changes:
                    metadata[key] = changes[key]
            if "archived" in changes:
                metadata["archive_timestamp"] = now_iso()
        is_thread = channel["type"] in THREAD_TYPES
        self.emit("THREAD_UPDATE" if is_thread else "CHANNEL_UPDATE", channel, intent=1)
        return channel

    def delete_channel(self, channel: JSON) -> JSON:
        """Delete a channel or thread with its messages (and a channel's threads); dispatch the delete event.

        Discord answers with the deleted channel and fires THREAD_DELETE for a thread, CHANNEL_DELETE otherwise;
        later calls on it get 404 with code 10003 Unknown Channel
        (https://discord.com/developers/docs/resources/channel#deleteclose-channel,
        https://discord.com/developers/docs/topics/gateway-events#thread-delete).
        """
        children = [c for c in self.channels.values() if c.get("parent_id") == channel["id"]]
        for child in children:
            if child["type"] in THREAD_TYPES:
                self.delete_channel(child)
        self.channels.pop(channel["id"], None)
        for mid in self.channel_messages.pop(channel["id"], []):
            self.messages.pop(mid, None)
            self.visible_to.pop(mid, None)
        if channel["type"] in THREAD_TYPES:
            data = {k: channel[k] for k in ("id", "guild_id", "parent_id", "type")}
            self.emit("THREAD_DELETE", data, intent=1)
        else:
            self.emit("CHANNEL_DELETE", channel, intent=1)
        return channel

    def open_dm(self, user_id: str) -> JSON:
        """Return (creating once) the DM channel between the bot and a user."""
        if user_id not in self.users:
            raise ApiError(400, 50035, "Invalid Form Body", {"recipient_id": {"_errors": [unknown_error("user")]}})
        for channel in self.channels.values():
            if channel["type"] == DM and channel["recipients"][0]["id"] == user_id:
                return channel
        cid = self.ids.next()
        channel = {"id": cid, "type": DM, "recipients": [self.users[user_id]], "last_message_id": None, "flags": 0}
        self.channels[cid] = channel
        self.channel_messages[cid] = []
        self.touch()
        return channel

    # --------------------------------------------------------------- commands
    def set_commands(self, commands: list[JSON], guild_id: str | None = None) -> list[JSON]:
        """Bulk-overwrite the global (or one guild's) commands, keeping the ids of unchanged names."""
        if guild_id is not None and guild_id != self.guild_id:
            raise ApiError(404, 10004, "Unknown Guild")
        old = {(c["name"], c.get("type", 1)): c for c in self.commands.values() if c.get("guild_id") == guild_id}
        kept = {cid: c for cid, c in self.commands.items() if c.get("guild_id") != guild_id}
        out: list[JSON] = []
        for spec in commands:
            if not spec.get("name"):
                raise ApiError(400, 50035, "Invalid Form Body", {"0": {"name": {"_errors": [required_error()]}}})
            prev = old.get((spec["name"], spec.get("type", 1)))
            cmd = {
                "type": 1,
                "description": "",
                "options": [],
                **spec,
                "id": prev["id"] if prev else self.ids.next(),
                "application_id": self.app_id,
                "version": self.ids.next(),
                "default_member_permissions": spec.get("default_member_permissions"),
            }
            if guild_id is not None:
                cmd["guild_id"] = guild_id
            kept[cmd["id"]] = cmd
            out.append(cmd)
        self.commands = kept
        self.emit("PLAYGROUND_COMMANDS", {"commands": list(self.commands.values())}, gateway=False)
        return out

    def find_command(self, command_id: str, guild_id: str | None) -> JSON:
        """Return one global (or one guild's) command by id.

        Raises:
            ApiError: 404/10063 Unknown application command.
        """
        if guild_id is not None and guild_id != self.guild_id:
            raise ApiError(404, 10004, "Unknown Guild")
        cmd = self.commands.get(command_id)
        if cmd is None or cmd.get("guild_id") != guild_id:
            raise ApiError(404, 10063, "Unknown application command")
        return cmd

    def edit_command(self, command_id: str, guild_id: str | None, changes: JSON) -> JSON:
        """Edit one command: the fields given replace the old ones, the id stays, the version moves on."""
        cmd = self.find_command(command_id, guild_id)
        fixed = ("id", "application_id", "guild_id", "type", "version")
        cmd.update({k: v for k, v in changes.items() if k not in fixed}, version=self.ids.next())
        self.emit("PLAYGROUND_COMMANDS", {"commands": list(self.commands.values())}, gateway=False)
        return cmd

    def delete_command(self, command_id: str, guild_id: str | None) -> None:
        """Delete one command."""
        del self.commands[self.find_command(command_id, guild_id)["id"]]
        self.emit("PLAYGROUND_COMMANDS", {"commands": list(self.commands.values())}, gateway=False)

    def command_named(self, name: str) -> JSON | None:
        """Return the chat-input command called ``name`` (guild commands win, as in Discord's client)."""
        found = [c for c in self.commands.values() if c["name"] == name and c.get("type", 1) == 1]
        found.sort(key=lambda c: c.get("guild_id") is None)
        return found[0] if found else None
