"""The playground's world: one guild, its channels, threads, users, messages, files, commands and interactions.

Everything is kept as Discord wire JSON, because that is what both the bot (over REST and the gateway) and the
browser page consume. Every change goes through a method here, which emits an :class:`Event`; the gateway sessions
and the browser sockets subscribe to those events, and waiters (the test driver) wake up on every change.

User actions (a slash command, a click, a modal submit, a reaction, a message) are methods too, so the browser page
and the Python driver produce exactly the same dispatches.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import mimetypes
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from local.discord.rules import JSON, ApiError, check_message, check_modal
from storage.imageformat import PNG_SIGNATURE

log = logging.getLogger(__name__)

DISCORD_EPOCH_MS = 1_420_070_400_000
MIB = 1024 * 1024
DEFAULT_UPLOAD_LIMIT = 10 * MIB
DEFAULT_TOKEN = "playground-bot-token"  # noqa: S105 - a public, local-only default, printed at start
ALL_PERMISSIONS = str((1 << 51) - 1)
EVERYONE_PERMISSIONS = "2248473465835073"  # Discord's default @everyone permission set
ADMINISTRATOR = "8"

# Interaction types
PING, APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 1, 2, 3, 4, 5
# Interaction callback types
PONG, CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE = 1, 4, 5, 6, 7
AUTOCOMPLETE_RESULT, MODAL = 8, 9
# Message flags
EPHEMERAL, LOADING = 64, 128
# Channel types
GUILD_TEXT, DM, PUBLIC_THREAD, PRIVATE_THREAD = 0, 1, 11, 12
THREAD_TYPES = frozenset({10, PUBLIC_THREAD, PRIVATE_THREAD})
MAX_CHANNEL_NAME = 100

_MENTION = re.compile(r"<@!?(\d+)>")
_MENTION_EVERYONE = re.compile(r"@(everyone|here)\b")


def now_iso() -> str:
    """Return the current time as Discord's ISO 8601 timestamp."""
    return datetime.now(UTC).isoformat()


class Snowflakes:
    """Strictly increasing Discord snowflakes, so ids sort in creation order like Discord's."""

    def __init__(self) -> None:
        self._last = 0
        self._counter = itertools.count()

    def next(self) -> str:
        """Return a new snowflake id as a string."""
        value = ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (next(self._counter) & 0xFFF)
        self._last = max(value, self._last + 1)
        return str(self._last)


@dataclass(frozen=True, slots=True)
class Event:
    """One change in the world.

    ``gateway`` says whether the bot receives it as a dispatch; ``visible_to`` restricts an ephemeral message to
    one user's view; ``intent`` is the gateway intent bit the bot needs to receive it.
    """

    name: str
    data: JSON
    gateway: bool = True
    visible_to: str | None = None
    intent: int = 0


Listener = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class StoredFile:
    """An attachment's bytes, served from the playground's CDN path."""

    data: bytes
    filename: str
    content_type: str


@dataclass(frozen=True, slots=True)
class Upload:
    """A file a user or the bot uploads."""

    filename: str
    data: bytes
    content_type: str | None = None
    description: str | None = None


@dataclass(slots=True)
class Interaction:
    """One interaction and what the bot has answered so far."""

    id: str
    token: str
    type: int
    user_id: str
    channel_id: str
    payload: JSON
    created_at: float
    acked: bool = False
    failed: bool = False
    callback_type: int | None = None
    callback: JSON | None = None
    ack_latency_s: float | None = None
    original_id: str | None = None
    modal: JSON | None = None
    choices: list[JSON] | None = None
    followed_up: bool = False
    followups: list[str] = field(default_factory=list)


class PlaygroundState:
    """The in-memory Discord world shared by the REST routes, the gateway, the browser page and the driver."""

    def __init__(
        self,
        *,
        base_url: str = "http://127.0.0.1",
        upload_limit: int = DEFAULT_UPLOAD_LIMIT,
        interaction_deadline_s: float = 3.0,
        token_lifetime_s: float = 15 * 60,
        clock: Callable[[], float] = time.monotonic,
        bot_name: str = "Peel",
    ) -> None:
        self.base_url = base_url
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

    def guild_payload(self) -> JSON:
        """Return the GUILD_CREATE payload."""
        channels = [c for c in self.channels.values() if c["type"] not in THREAD_TYPES and c["type"] != DM]
        threads = [c for c in self.channels.values() if c["type"] in THREAD_TYPES]
        members = [self.member(uid) for uid in self.member_roles]
        return {
            "id": self.guild_id,
            "name": "Peel Playground",
            "icon": None,
            "owner_id": self.owner_id,
            "unavailable": False,
            "member_count": len(members),
            "large": False,
            "features": [],
            "emojis": [],
            "stickers": [],
            "roles": list(self.roles.values()),
            "channels": channels,
            "threads": threads,
            "members": members,
            "voice_states": [],
            "presences": [],
            "joined_at": "2026-01-01T00:00:00+00:00",
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "afk_timeout": 300,
            "max_members": 500000,
            "premium_subscription_count": 0,
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

    # ------------------------------------------------------------------ files
    def attachment_url(self, channel_id: str, attachment_id: str, filename: str) -> str:
        """Return the CDN URL of an attachment."""
        return f"{self.base_url}/cdn/attachments/{channel_id}/{attachment_id}/{filename}"

    def store_file(self, channel_id: str, upload: Upload, *, ephemeral: bool = False) -> JSON:
        """Keep an uploaded file and return its attachment object."""
        aid = self.ids.next()
        # Like Discord, trust the file name over a generic part type (discord.py sends application/octet-stream).
        content_type = upload.content_type
        if not content_type or content_type == "application/octet-stream":
            content_type = mimetypes.guess_type(upload.filename)[0] or "application/octet-stream"
        self.files[aid] = StoredFile(upload.data, upload.filename, content_type)
        url = self.attachment_url(channel_id, aid, upload.filename)
        out: JSON = {
            "id": aid,
            "filename": upload.filename,
            "size": len(upload.data),
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
        }
        if upload.description:
            out["description"] = upload.description
        size = _image_size(upload.data)
        if size is not None:
            out["width"], out["height"] = size
        if ephemeral:
            out["ephemeral"] = True
        return out

    def _attachments(self, channel_id: str, payload: JSON, files: dict[int, Upload], keep: list[JSON]) -> list[JSON]:
        """Turn ``attachments`` specs plus ``files[n]`` parts into attachment objects (keeping existing ones by id)."""
        specs = payload.get("attachments")
        if specs is None:
            # Uploads without an attachments list (allowed by Discord) keep their part order.
            return keep + [self.store_file(channel_id, up) for _, up in sorted(files.items())]
        existing = {a["id"]: a for a in keep}
        out: list[JSON] = []
        for spec in specs:
            sid = str(spec.get("id"))
            if sid in existing:
                out.append(existing[sid])
                continue
            upload = files.get(int(sid)) if sid.isdigit() else None
            if upload is None:
                raise ApiError(
                    400, 50035, "Invalid Form Body", {"attachments": {"_errors": [_unknown_attachment(sid)]}}
                )
            name = spec.get("filename") or upload.filename
            out.append(
                self.store_file(channel_id, Upload(name, upload.data, upload.content_type, spec.get("description")))
            )
        return out

    # --------------------------------------------------------------- messages
    def visible(self, message: JSON, viewer_id: str | None) -> bool:
        """Say whether ``viewer_id`` sees a message (ephemeral messages are seen by one user only)."""
        owner = self.visible_to.get(message["id"])
        return owner is None or owner == viewer_id

    def messages_in(self, channel_id: str, viewer_id: str | None = None) -> list[JSON]:
        """Return a channel's messages, oldest first, as ``viewer_id`` sees them."""
        ids = self.channel_messages.get(channel_id, [])
        return [
            self.messages[mid] for mid in ids if mid in self.messages and self.visible(self.messages[mid], viewer_id)
        ]

    def create_message(
        self,
        channel_id: str,
        author: JSON,
        payload: JSON,
        files: dict[int, Upload] | None = None,
        *,
        message_type: int = 0,
        webhook: bool = False,
        interaction: Interaction | None = None,
        loading: bool = False,
    ) -> JSON:
        """Validate and store a new message, then dispatch MESSAGE_CREATE."""
        channel = self.channels.get(channel_id)
        if channel is None:
            raise ApiError(404, 10003, "Unknown Channel")
        files = files or {}
        if not loading:
            check_message(payload, has_files=bool(files))
        flags = int(payload.get("flags") or 0) & (EPHEMERAL | 4 | 4096 | 32768)  # ephemeral, no embeds, silent, v2
        if loading:
            flags |= LOADING
        mid = self.ids.next()
        msg: JSON = {
            "id": mid,
            "channel_id": channel_id,
            "author": author,
            "content": payload.get("content") or "",
            "timestamp": now_iso(),
            "edited_timestamp": None,
            "tts": bool(payload.get("tts")),
            **self._mentions(payload),
            "mention_roles": [],
            "attachments": self._attachments(channel_id, payload, files, []),
            "embeds": payload.get("embeds") or [],
            "components": payload.get("components") or [],
            "reactions": [],
            "pinned": False,
            "type": message_type,
            "flags": flags,
            "nonce": payload.get("nonce"),
        }
        if channel["type"] != DM:
            msg["guild_id"] = self.guild_id
            if not author.get("bot") or not webhook:
                msg["member"] = {k: v for k, v in self.member(author["id"]).items() if k != "user"}
        if webhook:
            msg["webhook_id"] = self.app_id
            msg["application_id"] = self.app_id
        if interaction is not None:
            msg["interaction_metadata"] = {
                "id": interaction.id,
                "type": interaction.type,
                "user": self.users[interaction.user_id],
                "authorizing_integration_owners": {"0": self.guild_id},
            }
            if interaction.type == APPLICATION_COMMAND:
                # The deprecated ``interaction`` field still carries the command name, which clients display.
                msg["interaction"] = {
                    "id": interaction.id,
                    "type": interaction.type,
                    "name": _command_path(interaction.payload["data"]),
                    "user": self.users[interaction.user_id],
                }
            if interaction.type == MESSAGE_COMPONENT and "message" in interaction.payload:
                msg["interaction_metadata"]["interacted_message_id"] = interaction.payload["message"]["id"]
        reference = payload.get("message_reference")
        if isinstance(reference, dict) and reference.get("message_id"):
            target = self.messages.get(str(reference["message_id"]))
            if target is None and reference.get("fail_if_not_exists", True):
                raise ApiError(
                    400,
                    50035,
                    "Invalid Form Body",
                    {
                        "message_reference": {
                            "_errors": [{"code": "REPLIES_UNKNOWN_MESSAGE", "message": "Unknown message"}]
                        }
                    },
                )
            if target is not None:
                msg["message_reference"] = {
                    "type": 0,
                    "message_id": target["id"],
                    "channel_id": target["channel_id"],
                    "guild_id": self.guild_id,
                }
                msg["referenced_message"] = {k: v for k, v in target.items() if k != "referenced_message"}
                if message_type == 0:
                    msg["type"] = 19  # REPLY
        _resolve_attachment_urls(msg)
        self.messages[mid] = msg
        self.channel_messages.setdefault(channel_id, []).append(mid)
        channel["last_message_id"] = mid
        if channel["type"] in THREAD_TYPES:
            channel["message_count"] = channel.get("message_count", 0) + 1
            channel["total_message_sent"] = channel.get("total_message_sent", 0) + 1
        visible_to = interaction.user_id if interaction is not None and flags & EPHEMERAL else None
        if visible_to is not None:
            self.visible_to[mid] = visible_to
        self.emit(
            "MESSAGE_CREATE",
            msg,
            gateway=visible_to is None,
            visible_to=visible_to,
            intent=(1 << 12) if channel["type"] == DM else (1 << 9),
        )
        return msg

    def _mentions(self, payload: JSON) -> JSON:
        """Return who a message's content mentions, as `allowed_mentions` lets it (Discord's allowed mentions).

        Without `allowed_mentions` every mention in the content counts; with it, a user counts only when `parse`
        holds "users" or `users` names them, and `@everyone`/`@here` only when `parse` holds "everyone".
        See https://discord.com/developers/docs/resources/message#allowed-mentions-object.
        """
        content = payload.get("content") or ""
        allowed = payload.get("allowed_mentions")
        if allowed is None:
            parse, listed = {"users", "everyone"}, set()
        else:
            parse, listed = set(allowed.get("parse") or ()), {str(u) for u in allowed.get("users") or ()}
            if "users" in parse and listed:
                raise ApiError(
                    400,
                    50035,
                    "Invalid Form Body",
                    {
                        "allowed_mentions": {
                            "_errors": [
                                {
                                    "code": "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                                    "message": 'parse:["users"] and users: [ids...] are mutually exclusive.',
                                }
                            ]
                        }
                    },
                )
        users = [
            self.users[uid]
            for uid in dict.fromkeys(_MENTION.findall(content))
            if uid in self.users and ("users" in parse or uid in listed)
        ]
        return {"mentions": users, "mention_everyone": "everyone" in parse and bool(_MENTION_EVERYONE.search(content))}

    def edit_message(self, msg: JSON, payload: JSON, files: dict[int, Upload] | None = None) -> JSON:
        """Validate and apply an edit (content, embeds, components, attachments, flags), then MESSAGE_UPDATE."""
        files = files or {}
        check_message(payload, has_files=bool(files), require_body=False)
        changes: JSON = {}
        for key in ("content", "embeds", "components"):
            if key in payload:
                changes[key] = payload[key] if payload[key] is not None else ("" if key == "content" else [])
        if "attachments" in payload or files:
            changes["attachments"] = self._attachments(msg["channel_id"], payload, files, msg["attachments"])
        if "content" in changes:
            changes.update(self._mentions({**payload, "content": changes["content"]}))
        msg.update(changes)
        _resolve_attachment_urls(msg)
        if payload.get("flags") is not None:
            msg["flags"] = (msg["flags"] & EPHEMERAL) | (int(payload["flags"]) & ~EPHEMERAL)
        msg["flags"] &= ~LOADING
        msg["edited_timestamp"] = now_iso()
        visible_to = self.visible_to.get(msg["id"])
        self.emit("MESSAGE_UPDATE", msg, gateway=visible_to is None, visible_to=visible_to, intent=1 << 9)
        return msg

    def delete_message(self, msg: JSON) -> None:
        """Delete a message and dispatch MESSAGE_DELETE."""
        self.messages.pop(msg["id"], None)
        visible_to = self.visible_to.pop(msg["id"], None)
        data = {"id": msg["id"], "channel_id": msg["channel_id"], "guild_id": self.guild_id}
        self.emit("MESSAGE_DELETE", data, gateway=visible_to is None, visible_to=visible_to, intent=1 << 9)

    def find_message(self, channel_id: str, message_id: str) -> JSON:
        """Return a message of a channel, or raise Discord's 10003 Unknown Channel / 10008 Unknown Message."""
        if channel_id not in self.channels:
            raise ApiError(404, 10003, "Unknown Channel")
        msg = self.messages.get(message_id)
        if msg is None or msg["channel_id"] != channel_id:
            raise ApiError(404, 10008, "Unknown Message")
        return msg

    # -------------------------------------------------------------- reactions
    @staticmethod
    def emoji_key(emoji: str) -> str:
        """Return the key Discord uses in reaction routes: ``name`` or ``name:id``."""
        return emoji.strip("<>").removeprefix("a:").removeprefix(":")

    def react(self, msg: JSON, emoji: str, user_id: str, *, add: bool = True) -> bool:
        """Add or remove one user's reaction; return whether anything changed."""
        key = self.emoji_key(emoji)
        name, _, eid = key.partition(":")
        users = self.reactors.setdefault((msg["id"], key), [])
        if (user_id in users) == add:
            return False
        if add:
            users.append(user_id)
        else:
            users.remove(user_id)
        emoji_obj: JSON = {"id": eid or None, "name": name}
        reactions = [r for r in msg["reactions"] if self.emoji_key(_emoji_str(r["emoji"])) != key]
        if users:
            reactions.append(
                {
                    "emoji": emoji_obj,
                    "count": len(users),
                    "count_details": {"burst": 0, "normal": len(users)},
                    "me": self.app_id in users,
                    "me_burst": False,
                    "burst_colors": [],
                    "burst_count": 0,
                }
            )
        msg["reactions"] = reactions
        data: JSON = {
            "user_id": user_id,
            "channel_id": msg["channel_id"],
            "message_id": msg["id"],
            "guild_id": self.guild_id,
            "emoji": emoji_obj,
            "burst": False,
            "type": 0,
        }
        if add:
            data["member"] = self.member(user_id)
            data["message_author_id"] = msg["author"]["id"]
        self.emit("MESSAGE_REACTION_ADD" if add else "MESSAGE_REACTION_REMOVE", data, intent=1 << 10)
        return True

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
            raise ApiError(400, 50035, "Invalid Form Body", {"name": {"_errors": [_length_error(1, 100)]}})
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
                raise ApiError(400, 50035, "Invalid Form Body", {"name": {"_errors": [_length_error(1, 100)]}})
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
            raise ApiError(400, 50035, "Invalid Form Body", {"recipient_id": {"_errors": [_unknown("user")]}})
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
                raise ApiError(400, 50035, "Invalid Form Body", {"0": {"name": {"_errors": [_required()]}}})
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

    def command_named(self, name: str) -> JSON | None:
        """Return the chat-input command called ``name`` (guild commands win, as in Discord's client)."""
        found = [c for c in self.commands.values() if c["name"] == name and c.get("type", 1) == 1]
        found.sort(key=lambda c: c.get("guild_id") is None)
        return found[0] if found else None

    # ----------------------------------------------------------- interactions
    def start_interaction(
        self, itype: int, user_id: str, channel_id: str, data: JSON, *, message: JSON | None = None
    ) -> Interaction:
        """Create an interaction as a user action and dispatch INTERACTION_CREATE."""
        channel = self.channels.get(channel_id)
        if channel is None:
            raise KeyError(f"no channel {channel_id}")
        iid = self.ids.next()
        token = f"aW50ZXJhY3Rpb246{iid}:{self.ids.next()}"
        payload: JSON = {
            "id": iid,
            "application_id": self.app_id,
            "type": itype,
            "data": data,
            "channel_id": channel_id,
            "channel": channel,
            "token": token,
            "version": 1,
            "app_permissions": ALL_PERMISSIONS,
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": self.upload_limit,
        }
        if channel["type"] == DM:
            payload["user"] = self.users[user_id]
            payload["context"] = 1
            payload["authorizing_integration_owners"] = {"1": user_id}
        else:
            payload["guild_id"] = self.guild_id
            payload["guild"] = {"id": self.guild_id, "locale": "en-US", "features": []}
            payload["guild_locale"] = "en-US"
            payload["member"] = self.member(user_id, with_permissions=True)
            payload["context"] = 0
            payload["authorizing_integration_owners"] = {"0": self.guild_id}
        if message is not None:
            payload["message"] = message
        interaction = Interaction(iid, token, itype, user_id, channel_id, payload, self.clock())
        self.interactions[iid] = interaction
        self._by_token[token] = iid
        self.emit("INTERACTION_CREATE", payload, visible_to=user_id)
        self._schedule_deadline(interaction)
        return interaction

    def _schedule_deadline(self, interaction: Interaction) -> None:
        """Mark the interaction failed ("This interaction failed") if nothing answers within the deadline."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        def check() -> None:
            if not interaction.acked and not interaction.failed:
                interaction.failed = True
                self.emit(
                    "PLAYGROUND_INTERACTION_FAILED",
                    {"id": interaction.id, "user_id": interaction.user_id, "channel_id": interaction.channel_id},
                    gateway=False,
                    visible_to=interaction.user_id,
                )

        loop.call_later(self.interaction_deadline_s + 0.05, check)

    def interaction_by_token(self, token: str) -> Interaction:
        """Return the live interaction of a webhook token, or raise what Discord answers."""
        iid = self._by_token.get(token)
        if iid is None:
            raise ApiError(404, 10015, "Unknown Webhook")
        interaction = self.interactions[iid]
        if self.clock() - interaction.created_at > self.token_lifetime_s:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return interaction

    def respond(self, interaction_id: str, token: str, body: JSON, files: dict[int, Upload]) -> JSON:
        """Apply an interaction callback and return the InteractionCallbackResponse body.

        Raises:
            ApiError: 10062 for unknown, expired or late (past the deadline) interactions, 40060 when it was
                already acknowledged, 50035 for an invalid callback type or body.
        """
        interaction = self.interactions.get(interaction_id)
        if interaction is None or interaction.token != token:
            raise ApiError(404, 10062, "Unknown interaction")
        latency = self.clock() - interaction.created_at
        if interaction.acked:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        if latency > self.interaction_deadline_s:
            interaction.failed = True
            raise ApiError(404, 10062, "Unknown interaction")
        ctype = body.get("type")
        data = body.get("data") or {}
        allowed = _CALLBACKS_FOR.get(interaction.type, frozenset())
        if ctype not in allowed:
            raise ApiError(400, 50035, "Invalid Form Body", {"type": {"_errors": [_choice_error(allowed)]}})
        msg: JSON | None = None
        if ctype in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE):
            message_type = 20 if interaction.type == APPLICATION_COMMAND else 0
            msg = self.create_message(
                interaction.channel_id,
                self.bot_user,
                data,
                files,
                message_type=message_type,
                webhook=True,
                interaction=interaction,
                loading=ctype == DEFERRED_CHANNEL_MESSAGE,
            )
            interaction.original_id = msg["id"]
        elif ctype in (DEFERRED_UPDATE, UPDATE_MESSAGE):
            source = interaction.payload.get("message")
            target = self.messages.get(source["id"]) if source else None
            if target is None:
                raise ApiError(404, 10008, "Unknown Message")
            if ctype == UPDATE_MESSAGE:
                self.edit_message(target, data, files)
            interaction.original_id = target["id"]
            msg = target
        elif ctype == MODAL:
            check_modal(data)
            interaction.modal = data
            self.emit(
                "PLAYGROUND_MODAL",
                {"interaction_id": interaction.id, "user_id": interaction.user_id, "modal": data},
                gateway=False,
                visible_to=interaction.user_id,
            )
        elif ctype == AUTOCOMPLETE_RESULT:
            interaction.choices = list(data.get("choices") or [])
        interaction.acked = True
        interaction.callback_type = ctype
        interaction.callback = body
        interaction.ack_latency_s = latency
        self.emit(
            "PLAYGROUND_INTERACTION_ACK",
            {"id": interaction.id, "type": ctype, "user_id": interaction.user_id},
            gateway=False,
            visible_to=interaction.user_id,
        )
        out: JSON = {
            "interaction": {
                "id": interaction.id,
                "type": interaction.type,
                "response_message_id": interaction.original_id,
                "response_message_loading": ctype == DEFERRED_CHANNEL_MESSAGE,
                "response_message_ephemeral": bool(msg and msg["flags"] & EPHEMERAL),
            }
        }
        if msg is not None and ctype in (CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, UPDATE_MESSAGE):
            out["resource"] = {"type": ctype, "message": msg}
        return out

    def followup(self, token: str, body: JSON, files: dict[int, Upload], *, thread_id: str | None = None) -> JSON:
        """Send an interaction follow-up; the first one after a "thinking" defer replaces the loading message."""
        interaction = self.interaction_by_token(token)
        if not interaction.acked:
            raise ApiError(404, 10015, "Unknown Webhook")
        original = self.messages.get(interaction.original_id or "")
        if original is not None and original["flags"] & LOADING and not interaction.followed_up and thread_id is None:
            interaction.followed_up = True
            return self.edit_message(original, body, files)
        interaction.followed_up = True
        msg = self.create_message(
            thread_id or interaction.channel_id,
            self.bot_user,
            body,
            files,
            webhook=True,
            interaction=interaction,
        )
        interaction.followups.append(msg["id"])
        return msg

    def webhook_message(self, token: str, message_id: str) -> JSON:
        """Return ``@original`` or a follow-up of an interaction, or raise 10008."""
        interaction = self.interaction_by_token(token)
        if message_id == "@original":
            message_id = interaction.original_id or ""
        elif message_id not in (interaction.original_id, *interaction.followups):
            raise ApiError(404, 10008, "Unknown Message")
        msg = self.messages.get(message_id)
        if msg is None:
            raise ApiError(404, 10008, "Unknown Message")
        return msg


_CALLBACKS_FOR: dict[int, frozenset[int]] = {
    APPLICATION_COMMAND: frozenset({CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, MODAL}),
    MESSAGE_COMPONENT: frozenset({CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE, MODAL}),
    AUTOCOMPLETE: frozenset({AUTOCOMPLETE_RESULT}),
    MODAL_SUBMIT: frozenset({CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE}),
}


def _resolve_attachment_urls(msg: JSON) -> None:
    """Point embed images given as ``attachment://name`` at the uploaded attachment, as Discord does."""
    by_name = {a["filename"]: a for a in msg.get("attachments") or []}
    embeds = []
    for embed in msg.get("embeds") or []:
        resolved = dict(embed)
        for key in ("image", "thumbnail"):
            part = embed.get(key)
            url = part.get("url") if isinstance(part, dict) else None
            if isinstance(url, str) and url.startswith("attachment://") and url[13:] in by_name:
                target = by_name[url[13:]]
                resolved[key] = {
                    **part,
                    "url": target["url"],
                    "proxy_url": target["proxy_url"],
                    **{k: target[k] for k in ("width", "height") if k in target},
                }
        embeds.append(resolved)
    msg["embeds"] = embeds


def _command_path(data: JSON) -> str:
    """Return ``name sub ...`` of a command interaction's data."""
    parts = [str(data.get("name", ""))]
    if data.get("type", 1) != 1:  # context-menu commands have no options
        return parts[0]
    options = data.get("options") or []
    while options and options[0].get("type") in (1, 2):
        parts.append(str(options[0]["name"]))
        options = options[0].get("options") or []
    return " ".join(parts)


def _emoji_str(emoji: JSON) -> str:
    return f"{emoji['name']}:{emoji['id']}" if emoji.get("id") else str(emoji.get("name"))


def _unknown_attachment(sid: str) -> JSON:
    return {"code": "ATTACHMENT_NOT_FOUND", "message": f"Attachment {sid} was not found in the request files"}


def _unknown(kind: str) -> JSON:
    return {"code": "UNKNOWN_" + kind.upper(), "message": f"Unknown {kind}"}


def _required() -> JSON:
    return {"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}


def _length_error(low: int, high: int) -> JSON:
    return {"code": "BASE_TYPE_BAD_LENGTH", "message": f"Must be between {low} and {high} in length."}


def _choice_error(allowed: frozenset[int]) -> JSON:
    values = ", ".join(str(v) for v in sorted(allowed))
    return {"code": "BASE_TYPE_CHOICES", "message": f"Value must be one of {{{values}}}."}


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Return (width, height) of a PNG, GIF or JPEG from its header, without decoding it."""
    if data.startswith(PNG_SIGNATURE) and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            length = int.from_bytes(data[i + 2 : i + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2):
                return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
            i += 2 + length
    return None
