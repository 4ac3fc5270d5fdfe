"""The playground's messages: attachments and files, creating, editing and deleting messages, and reactions."""

from __future__ import annotations

import mimetypes
import re

from local.discord.records import (
    APPLICATION_COMMAND,
    DM,
    EPHEMERAL,
    LOADING,
    MESSAGE_COMPONENT,
    THREAD_TYPES,
    Interaction,
    StoredFile,
    Upload,
    now_iso,
    unknown_attachment_error,
)
from local.discord.rules import JSON, ApiError, check_message
from local.discord.world import World
from storage.imageformat import PNG_SIGNATURE

_MENTION = re.compile(r"<@!?(\d+)>")
_MENTION_EVERYONE = re.compile(r"@(everyone|here)\b")


class MessageWorld(World):
    """The guild with its messages, their attachments and reactions."""

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
                    400, 50035, "Invalid Form Body", {"attachments": {"_errors": [unknown_attachment_error(sid)]}}
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
            check_message(payload, has_files=bool(files), file_count=len(files))
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
        check_message(payload, has_files=bool(files), require_body=False, file_count=len(files))
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
