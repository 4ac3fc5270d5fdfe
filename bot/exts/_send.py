"""Every message Peel sends fitted to Discord's limits first: Discord refuses a whole message over one limit.

The cogs pass their message's fields through `fit_message` (or `fit_embed` for one embed) where the message
leaves; the rules and the cutting are `bot.core.discord_limits`.
"""

from typing import Any

import discord

from bot.core import discord_limits


def fit_content(content: str) -> str:
    """Return message content cut to Discord's 2,000 characters."""
    return discord_limits.fit_content(content)


def fit_embed(embed: discord.Embed) -> discord.Embed:
    """Return the embed cut to Discord's embed limits (the same embed when it already fits)."""
    data = embed.to_dict()
    fitted = discord_limits.fit_embed(data)
    return embed if fitted == data else discord.Embed.from_dict(fitted)


def fit_embeds(embeds: list[discord.Embed]) -> list[discord.Embed]:
    """Return at most 10 embeds, cut so that together they stay within Discord's 6,000 characters."""
    data = [embed.to_dict() for embed in embeds]
    fitted = discord_limits.fit_embeds(data)
    if fitted == data:
        return embeds
    return [discord.Embed.from_dict(one) for one in fitted]


def fit_message(fields: dict[str, Any]) -> dict[str, Any]:
    """Return a send or edit call's keyword fields with `content`, `embed` and `embeds` fitted to Discord's limits."""
    fitted = dict(fields)
    if isinstance(fitted.get("content"), str):
        fitted["content"] = discord_limits.fit_content(fitted["content"])
    if isinstance(fitted.get("embed"), discord.Embed):
        fitted["embed"] = fit_embed(fitted["embed"])
    if isinstance(fitted.get("embeds"), list):
        fitted["embeds"] = fit_embeds(fitted["embeds"])
    return fitted
