"""The playground's guild: its users, roles, members and permissions, and the events every change emits.

:class:`World` is the base of :class:`~local.discord.state.PlaygroundState`; the messages, channels and
interactions build on it (``local.discord.messages``, ``local.discord.channels``, ``local.discord.interactions``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING

from local.discord.records import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    DEFAULT_UPLOAD_LIMIT,
    DM,
    EVERYONE_PERMISSIONS,
    GUILD_TEXT,
    THREAD_TYPES,
    Event,
    Interaction,
    Listener,
    Snowflakes,
    StoredFile,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from local.discord.rules import JSON

GUILD_PRESENCES = 1 << 8  # https://discord.com/developers/docs/events/gateway#list-of-intents
# GATEWAY_MESSAGE_CONTENT_LIMITED (1 << 19): the Message Content intent as the developer portal enables it for a bot
# in under 100 servers; the gateway takes the intent only with it (or 1 << 18)
# (https://discord.com/developers/docs/resources/application#application-object-application-flags).
APPLICATION_FLAGS = 1 << 19
# GATEWAY_GUILD_MEMBERS (1 << 14) or its _LIMITED form (1 << 15): the Server Members intent, without which Discord
# refuses the member list (https://discord.com/developers/docs/resources/guild#list-guild-members).
GUILD_MEMBERS_FLAGS = (1 << 14) | (1 << 15)


class World:
    """The guild, its people and the event stream; the state every other part of the world reads and changes."""

    def __init__(
        self,
        *,
        base_url: str = "http://127.0.0.1",
        upload_limit: int = DEFAULT_UPLOAD_LIMIT,
        interaction_deadline_s: float = 3.0,
        token_lifetime_s: float = 15 * 60,
        clock: Callable[[], float] = time.monotonic,
        bot_name: str = "Peel",
        app_flags: int = APPLICATION_FLAGS,
    ) -> None:
        self.base_url = base_url
        self.app_flags = app_flags
        self.upload_limit = upload_limit
        self.interaction_deadline_s = interaction_deadline_s
        self.token_lifetime_s = token_lifetime_s
        self.clock = clock
        self.ids = Snowflakes()
        self.app_id = self.ids.next()
        self.guild_id = self.ids.next()
        self.bot_user: JSON = self._user(self.app_id, bot_name.lower(), bot_name, bot=True)
        self.users: dict[str, JSON] = {self.app_id: self.bot_user}
        self.roles: dict[str, JSON] = {}
        self.member_roles: dict[str, list[str]] = {}
        self.channels: dict[str, JSON] = {}
        self.messages: dict[str, JSON] = {}
        self.channel_messages: dict[str, list[str]] = {}
        self.visible_to: dict[str, str] = {}  # ephemeral message id -> the only user who sees it
        self.reactors: dict[tuple[str, str], list[str]] = {}  # (message id, emoji key) -> user ids
        self.files: dict[str, StoredFile] = {}
        self.interactions: dict[str, Interaction] = {}
        self._by_token: dict[str, str] = {}
        self.commands: dict[str, JSON] = {}  # command id -> command
        self.requests: deque[str] = deque(maxlen=500)  # "METHOD path -> status", for failure messages
        self._listeners: list[Listener] = []
        self._changed = asyncio.Event()
        self.version = 0
        self._seed()

    # ------------------------------------------------------------------ world
    @staticmethod
    def _user(uid: str, username: str, global_name: str, *, bot: bool = False) -> JSON:
        user: JSON = {
            "id": uid,
            "username": username,
            "discriminator": "0",
            "global_name": global_name,
            "avatar": None,
            "flags": 0,
            "public_flags": 0,
        }
        if bot:
            user["bot"] = True
        return user

    def _seed(self) -> None:
        everyone: JSON = {"id": self.guild_id, "name": "@everyone", "permissions": EVERYONE_PERMISSIONS, "position": 0}
        admin_role: JSON = {"id": self.ids.next(), "name": "Admin", "permissions": ADMINISTRATOR, "position": 2}
        member_role: JSON = {"id": self.ids.next(), "name": "Member", "permissions": "0", "position": 1}
        for role in (everyone, admin_role, member_role):
            role.update(color=0, colors={"primary_color": 0}, hoist=False, managed=False, mentionable=False, flags=0)
            self.roles[role["name"]] = role
        self.member_roles[self.app_id] = []
        for username, name, roles in (
            ("alice", "Alice", [member_role["id"]]),
            ("bob", "Bob", [member_role["id"]]),
            ("admin", "Admin", [admin_role["id"]]),
        ):
            uid = self.ids.next()
            self.users[uid] = self._user(uid, username, name)
            self.member_roles[uid] = roles
        for position, name in enumerate(("general", "images", "batch")):
            cid = self.ids.next()
            self.channels[cid] = {
                "id": cid,
                "type": GUILD_TEXT,
                "guild_id": self.guild_id,
                "name": name,
                "position": position,
                "permission_overwrites": [],
                "nsfw": False,
                "parent_id": None,
                "topic": None,
                "last_message_id": None,
                "rate_limit_per_user": 0,
            }
            self.channel_messages[cid] = []

    @property
    def owner_id(self) -> str:
        """Return the guild owner's id (the admin user)."""
        return str(self.user_named("admin")["id"])

    def user_named(self, name: str) -> JSON:
        """Return a user by username or id."""
        for user in self.users.values():
            if name in (user["username"], user["id"]):
                return user
        raise KeyError(f"no user {name!r}")

    def channel_named(self, name: str) -> JSON:
        """Return a channel or thread by name or id."""
        if name in self.channels:
            return self.channels[name]
        for channel in self.channels.values():
            if channel.get("name") == name:
                return channel
        raise KeyError(f"no channel {name!r}")

    def member(self, user_id: str, *, with_permissions: bool = False) -> JSON:
        """Return the guild member object of a user."""
        out: JSON = {
            "user": self.users[user_id],
            "roles": list(self.member_roles.get(user_id, [])),
            "joined_at": "2026-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "nick": None,
            "avatar": None,
            "communication_disabled_until": None,
        }
        if with_permissions:
            out["permissions"] = self.permissions_of(user_id)
        return out

    def permissions_of(self, user_id: str) -> str:
        """Return a member's guild permissions (all of them for admins, the owner and the bot)."""
        admin_ids = {r["id"] for r in self.roles.values() if int(r["permissions"]) & 8}
        if user_id in (self.owner_id, self.app_id) or admin_ids & set(self.member_roles.get(user_id, [])):
            return ALL_PERMISSIONS
        value = int(EVERYONE_PERMISSIONS)
        for role in self.roles.values():
            if role["id"] in self.member_roles.get(user_id, []):
                value |= int(role["permissions"])
        return str(value)

    def guild_object(self) -> JSON:
        """Return the guild object, every field Discord always sends and none it sends only in GUILD_CREATE.

        The fields: https://discord.com/developers/docs/resources/guild#guild-object-guild-structure.
        """
        return {
            "id": self.guild_id,
            "name": "Peel Playground",
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": self.owner_id,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": list(self.roles.values()),
            "emojis": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "max_members": 500000,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": None,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "nsfw_level": 0,
            "stickers": [],
            "premium_progress_bar_enabled": False,
            "safety_alerts_channel_id": None,
            "incidents_data": None,
        }

    def guild_channels(self) -> list[JSON]:
        """Return the guild's channels (no threads, no DMs)."""
        return [c for c in self.channels.values() if c["type"] not in THREAD_TYPES and c["type"] != DM]

    def guild_payload(self, intents: int) -> JSON:
        """Return the GUILD_CREATE payload a session with ``intents`` receives.

        The guild object plus the extra fields of https://discord.com/developers/docs/events/gateway-events#guild-create;
        without the GUILD_PRESENCES intent ``members`` and ``presences`` hold only the bot (and members in voice,
        of whom the playground has none), as the warning there says.
        """
        threads = [c for c in self.channels.values() if c["type"] in THREAD_TYPES]
        present = self.member_roles if intents & GUILD_PRESENCES else [self.app_id]
        return {
            **self.guild_object(),
            "joined_at": "2026-01-01T00:00:00+00:00",
            "large": False,
            "unavailable": False,
            "member_count": len(self.member_roles),
            "voice_states": [],
            "members": [self.member(uid) for uid in present],
            "channels": self.guild_channels(),
            "threads": threads,
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    # ----------------------------------------------------------------- events
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every event from now on; return a function that unsubscribes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def emit(
        self, name: str, data: JSON, *, gateway: bool = True, visible_to: str | None = None, intent: int = 0
    ) -> None:
        """Publish one event to every listener and wake every waiter."""
        event = Event(name, data, gateway, visible_to, intent)
        for listener in list(self._listeners):
            listener(event)
        self.touch()

    def touch(self) -> None:
        """Wake everyone waiting for a change."""
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_changed(self, timeout_s: float) -> None:
        """Wait until the next change, or at most ``timeout_s``."""
        changed = self._changed
        try:
            await asyncio.wait_for(changed.wait(), timeout_s)
        except TimeoutError:
            return
