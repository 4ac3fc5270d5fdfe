"""What a Discord event brings to a generation request: its origin (who, which group) and its attached images."""

from typing import Any

import discord

from bot.app.generation_types import GenerationError, Origin
from bot.core.models import GroupId, UserId
from bot.core.render import code
from bot.discord_bot import PeelBot
from bot.exts._access import actor_of


async def origin_of(bot: PeelBot, user: discord.abc.User, channel: Any, guild_id: int | None, *, key: str) -> Origin:
    """Return who asks and where: the group of the channel or thread (created on first use), admin or not."""
    if isinstance(channel, discord.Thread):
        group = await bot.services.groups.group_of(
            name=channel.name,
            guild_id=guild_id,
            channel_id=channel.parent_id,
            thread_id=channel.id,
            owner_id=channel.owner_id,
        )
    else:
        name = getattr(channel, "name", None) or "direct messages"
        group = await bot.services.groups.group_of(
            name=f"#{name}", guild_id=guild_id, channel_id=getattr(channel, "id", None)
        )
    return Origin(
        user_id=UserId(user.id),
        guild_id=guild_id,
        group_id=GroupId(group.id),
        idempotency_key=key,
        is_admin=bot.is_admin(user, guild_id),
        role_ids=actor_of(user, guild_id).role_ids,  # their roles' budget gates and caps apply
    )


async def read_attachments(attachments: list[discord.Attachment]) -> list[tuple[str, bytes]]:
    """Return the (name, bytes) of each attachment, refusing one over 50 MB before reading it."""
    files = []
    for attachment in attachments:
        if attachment.size > 50 * 1024 * 1024:
            raise GenerationError(f"{code(attachment.filename)} is over 50 MB; attach a smaller image.")
        files.append((attachment.filename, await attachment.read()))
    return files


__all__ = ["origin_of", "read_attachments"]
