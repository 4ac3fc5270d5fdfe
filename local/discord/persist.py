"""The playground's world on disk, so a restart of ``make run`` keeps the page's history and the bot's threads.

A bot keeps channel, thread and message ids in its own store (Peel's groups are threads); a playground that forgot
them at every start would show an empty guild to a bot that still points at its threads. With a data directory,
:class:`WorldFile` loads the world at start and saves it after changes (at most once per ``SAVE_DELAY_S``, and at
stop). The layout::

    <data dir>/world.json        ids, users, roles, channels and threads, messages, reactions, commands
    <data dir>/files/<id>        each kept attachment's bytes (written once: an attachment never changes)

Saved: the application and guild ids (so the bot's user and guild stay the same), users, roles, member roles,
channels and threads, the newest ``MAX_MESSAGES_PER_CHANNEL`` messages of each channel, who sees each ephemeral
message, who reacted with what, the registered commands, and the attachments of the kept messages, newest first,
up to ``MAX_FILE_BYTES`` (an older one past that loses its bytes, and its link answers 404 as a deleted
attachment does). Not saved: interactions (their tokens outlive no restart worth keeping: 15 minutes), rate-limit
buckets and gateway sessions, which a real Discord does not keep across a client's reconnect either.

Writes are atomic (a temporary file, then ``os.replace``). A ``world.json`` that cannot be read as a world is set
aside as ``world.json.damaged-<time>`` with a warning, and the playground starts with a fresh world.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from local.discord.records import Event, StoredFile

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from local.discord.rules import JSON
    from local.discord.state import PlaygroundState

log = logging.getLogger(__name__)

FORMAT = 1
SAVE_DELAY_S = 1.0
MAX_MESSAGES_PER_CHANNEL = 1_000  # five times what the page shows (``view.HISTORY``)
MAX_FILE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Saved:
    """A world read from disk and checked, before it is put into a state (its links still name the old address)."""

    base_url: str
    app_id: str
    guild_id: str
    users: dict[str, JSON]
    roles: dict[str, JSON]
    member_roles: dict[str, list[str]]
    channels: dict[str, JSON]
    messages: list[JSON]
    visible_to: dict[str, str]
    reactors: dict[tuple[str, str], list[str]]
    commands: dict[str, JSON]
    files: dict[str, StoredFile]


class WorldFile:
    """Loads a playground's world from a directory and keeps saving it there."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "world.json"
        self.files_dir = directory / "files"
        self._state: PlaygroundState | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._saving: asyncio.Task[None] | None = None
        self._dirty = False
        # Each kept message's JSON, encoded again only after an event about it: a save under load then costs the
        # messages that changed, not the whole history (3,000 messages on the loop: ~80 ms at first, ~12 ms after one
        # change).
        self._encoded: dict[str, str] = {}
        self._stale: set[str] = set()

    # ------------------------------------------------------------------ load
    def read(self) -> Saved | None:
        """Return the saved world, or None when there is none or it is damaged (then set aside and logged)."""
        if not self.path.exists():
            return None
        try:
            return self._parse(json.loads(self.path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
            with contextlib.suppress(OSError):
                self.path.replace(aside)
            log.warning("playground world %s is damaged (%s); set aside as %s, starting fresh", self.path, exc, aside)
            return None

    def _parse(self, world: Any) -> Saved:
        """Check a loaded world's shape and build it; any error means a damaged file."""
        if not isinstance(world, dict) or world.get("format") != FORMAT:
            raise ValueError(f"not a playground world of format {FORMAT}")
        users = {str(k): dict(v) for k, v in world["users"].items()}
        messages = [dict(m) for m in world["messages"]]
        if not all(isinstance(m.get("id"), str) and isinstance(m.get("channel_id"), str) for m in messages):
            raise ValueError("a message without its id or channel")
        files: dict[str, StoredFile] = {}
        for aid, meta in world["files"].items():
            blob = self.files_dir / str(aid)
            if blob.is_file():
                files[str(aid)] = StoredFile(blob.read_bytes(), str(meta["filename"]), str(meta["content_type"]))
        app_id = str(world["app_id"])
        if app_id not in users:
            raise ValueError("the bot's own user is missing")
        return Saved(
            base_url=str(world.get("base_url") or ""),
            app_id=app_id,
            guild_id=str(world["guild_id"]),
            users=users,
            roles={str(k): dict(v) for k, v in world["roles"].items()},
            member_roles={str(k): [str(r) for r in v] for k, v in world["member_roles"].items()},
            channels={str(k): dict(v) for k, v in world["channels"].items()},
            messages=messages,
            visible_to={str(k): str(v) for k, v in (world.get("visible_to") or {}).items()},
            reactors={(str(mid), str(key)): [str(u) for u in users] for mid, key, users in world.get("reactors") or []},
            commands={str(k): dict(v) for k, v in (world.get("commands") or {}).items()},
            files=files,
        )

    @staticmethod
    def restore(state: PlaygroundState, saved: Saved) -> None:
        """Put a saved world into ``state``, its attachment links moved to the state's current address."""
        messages = saved.messages
        if saved.base_url and saved.base_url != state.base_url:
            # Links are absolute (as Discord's CDN links are); the port of a restarted playground may differ.
            text = json.dumps(messages).replace(f"{saved.base_url}/cdn/", f"{state.base_url}/cdn/")
            messages = json.loads(text)
        state.app_id, state.guild_id = saved.app_id, saved.guild_id
        state.users = saved.users
        state.bot_user = state.users[state.app_id]
        state.roles, state.member_roles, state.channels = saved.roles, saved.member_roles, saved.channels
        state.messages = {m["id"]: m for m in messages}
        state.channel_messages = {cid: [] for cid in state.channels}
        for message in messages:
            state.channel_messages.setdefault(message["channel_id"], []).append(message["id"])
        state.visible_to, state.reactors = saved.visible_to, saved.reactors
        state.commands, state.files = saved.commands, dict(saved.files)
        newest = max(int(x) for x in (*state.messages, *state.channels, *state.files, state.app_id))
        state.ids.at_least(newest)

    # ------------------------------------------------------------------ save
    def watch(self, state: PlaygroundState) -> None:
        """Save ``state`` after every change, at most once per ``SAVE_DELAY_S``."""
        self._state = state
        self._unsubscribe = state.subscribe(self._changed)
        self._dirty = True  # a fresh world is written once too: its guild and bot ids are fixed from the first start

    def _changed(self, event: Event) -> None:
        self._dirty = True
        self._stale.update(_messages_of(event))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(SAVE_DELAY_S, self._start_save)

    def _start_save(self) -> None:
        self._timer = None
        if self._saving is not None and not self._saving.done():
            self._timer = asyncio.get_running_loop().call_later(SAVE_DELAY_S, self._start_save)
            return
        self._saving = asyncio.get_running_loop().create_task(self.save())

    async def save(self) -> None:
        """Write the world now (its JSON taken on the loop, so it is one consistent moment, and written off it)."""
        if self._state is None:
            return
        self._dirty = False
        for mid in self._stale:
            self._encoded.pop(mid, None)
        self._stale.clear()
        world, files = snapshot(self._state, self._encoded)
        try:
            await asyncio.to_thread(self._write, world, files)
        except OSError:
            log.warning("playground world not saved to %s", self.path, exc_info=True)

    async def close(self) -> None:
        """Stop watching and write what changed since the last save."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._saving is not None:
            await asyncio.gather(self._saving, return_exceptions=True)
        if self._dirty:
            await self.save()

    def _write(self, world: str, files: dict[str, StoredFile]) -> None:
        self.files_dir.mkdir(parents=True, exist_ok=True)
        for aid, stored in files.items():
            blob = self.files_dir / aid
            if not blob.exists():
                _atomic_write(blob, stored.data)
        _atomic_write(self.path, world.encode("utf-8"))
        for blob in self.files_dir.iterdir():  # attachments no kept message holds any more
            if blob.name not in files and not blob.name.endswith(".tmp"):
                blob.unlink(missing_ok=True)


def _messages_of(event: Event) -> list[str]:
    """Return the ids of the messages an event changed (the events that change a message name it)."""
    if event.name in ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE"):
        return [str(event.data["id"])]
    if event.name.startswith("MESSAGE_REACTION_"):
        return [str(event.data["message_id"])]
    if event.name == "MESSAGE_DELETE_BULK":
        return [str(mid) for mid in event.data["ids"]]
    return []


def snapshot(state: PlaygroundState, encoded: dict[str, str] | None = None) -> tuple[str, dict[str, StoredFile]]:
    """Return the world's JSON and the attachments it keeps, bounded as the module's docstring says.

    ``encoded`` caches each message's JSON by id (the caller drops the entries of changed messages); it is cut
    to the kept messages, so it never holds more than the saved world.
    """
    kept: list[JSON] = []
    for in_channel in state.channel_messages.values():
        kept.extend(state.messages[mid] for mid in in_channel[-MAX_MESSAGES_PER_CHANNEL:] if mid in state.messages)
    kept.sort(key=lambda m: int(m["id"]))
    files: dict[str, StoredFile] = {}
    budget = MAX_FILE_BYTES
    for message in reversed(kept):  # the newest attachments first
        for attachment in message.get("attachments") or []:
            stored = state.files.get(str(attachment["id"]))
            if stored is not None and len(stored.data) <= budget:
                files[str(attachment["id"])] = stored
                budget -= len(stored.data)
    ids = {m["id"] for m in kept}
    world = {
        "format": FORMAT,
        "base_url": state.base_url,
        "app_id": state.app_id,
        "guild_id": state.guild_id,
        "users": state.users,
        "roles": state.roles,
        "member_roles": state.member_roles,
        "channels": state.channels,
        "visible_to": {mid: uid for mid, uid in state.visible_to.items() if mid in ids},
        "reactors": [[mid, key, users] for (mid, key), users in state.reactors.items() if mid in ids],
        "commands": state.commands,
        "files": {aid: {"filename": f.filename, "content_type": f.content_type} for aid, f in files.items()},
    }
    cache = {} if encoded is None else encoded
    for mid in [mid for mid in cache if mid not in ids]:
        del cache[mid]
    parts = []
    for message in kept:
        if message["id"] not in cache:
            cache[message["id"]] = json.dumps(message, separators=(",", ":"))
        parts.append(cache[message["id"]])
    head = json.dumps(world, separators=(",", ":"))  # an object: "messages" goes in before its closing brace
    return f'{head[:-1]},"messages":[{",".join(parts)}]}}', files


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.tmp")
    with tmp.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
