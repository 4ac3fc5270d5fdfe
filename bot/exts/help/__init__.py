"""`/help`: what Peel does and how, read from the registered commands, and a note for Midjourney users.

The command tree is walked at each call, so every command (and subcommand) a cog registers is listed with its
description and options; the grouping and words are `bot.core.helptext`. Ephemeral: only the asker sees it.
"""

from collections.abc import Iterator, Sequence
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.helptext import MIDJOURNEY_NOTES, CommandDoc, help_sections
from bot.discord_bot import PeelBot
from bot.exts._send import fit_embeds

INTRO = (
    "Peel makes images with Google's Gemini image models the way Midjourney's bot does: a prompt gives a grid, "
    "its buttons upscale, vary and re-roll, and threads keep groups of images with a gallery page."
)


def command_docs(entries: Sequence[app_commands.Command[Any, ..., Any] | app_commands.Group]) -> Iterator[CommandDoc]:
    """Yield every command under the tree's top-level entries, subcommands by their full names."""
    for entry in entries:
        if isinstance(entry, app_commands.Group):
            yield from command_docs(entry.commands)
            continue
        options = tuple((p.display_name, p.required) for p in entry.parameters)
        yield CommandDoc(name=entry.qualified_name, description=entry.description, options=options)


class HelpCog(commands.Cog):
    """`/help`."""

    def __init__(self, bot: PeelBot) -> None:
        self.bot = bot

    @app_commands.command(name="help", description="What Peel does and how, command by command")
    async def help(self, interaction: discord.Interaction[Any]) -> None:
        """Answer with every command, grouped, and the note for Midjourney users."""
        entries = self.bot.tree.get_commands(type=discord.AppCommandType.chat_input)
        docs = list(command_docs(entries))
        embeds = [discord.Embed(title="Peel", description=INTRO)]
        embeds += [discord.Embed(title=title, description=body) for title, body in help_sections(docs)]
        embeds.append(discord.Embed(title="For Midjourney users", description=MIDJOURNEY_NOTES))
        await interaction.response.send_message(embeds=fit_embeds(embeds), ephemeral=True)


async def setup(bot: commands.Bot) -> None:
    """Load the extension."""
    assert isinstance(bot, PeelBot)
    await bot.add_cog(HelpCog(bot))
