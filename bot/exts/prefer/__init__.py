"""`/prefer suffix` and `/prefer option set|list`: a user's saved additions to every prompt they type.

Midjourney's "Prefer Suffix" and "Prefer Option" (https://docs.midjourney.com/docs/settings-and-presets): the
suffix is added to each prompt, and `--name` in a prompt stands for a saved option set. The rules are
`bot.core.prefer`; the answers are only for the asker (ephemeral).
"""

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.models import UserId
from bot.core.prefer import MAX_OPTION_CHARS, MAX_OPTION_SETS, MAX_SUFFIX_CHARS
from bot.core.render import code, echo
from bot.discord_bot import PeelBot
from bot.exts._send import fit_content, fit_embed


def option_list_embed(option_sets: dict[str, str]) -> discord.Embed:
    """Return `/prefer option list`'s answer: each saved `--name` and what it stands for."""
    if not option_sets:
        description = "You have no option sets. Save one: `/prefer option set name:wide value:--ar 16:9 --model pro`."
    else:
        lines = [f"`--{name}` → {code(options, limit=200)}" for name, options in option_sets.items()]
        count = f"-# {len(option_sets)} of {MAX_OPTION_SETS}; use one as `--name` in a prompt"
        description = "\n".join([*lines, count])
    return discord.Embed(title="Your option sets", description=description)


class PreferCog(commands.Cog):
    """The user's suffix and option sets."""

    prefer = app_commands.Group(name="prefer", description="Your suffix and saved option sets, as in Midjourney")
    option = app_commands.Group(name="option", description="Saved option sets, used as --name", parent=prefer)

    def __init__(self, bot: PeelBot) -> None:
        self.bot = bot
        self.service = bot.services.prefer

    @prefer.command(name="suffix", description="Text and parameters added to the end of every prompt you type")
    @app_commands.describe(value="e.g. `in watercolor --ar 3:2`; leave empty to remove your suffix")
    async def suffix(
        self, interaction: discord.Interaction[Any], value: app_commands.Range[str, 0, MAX_SUFFIX_CHARS] | None = None
    ) -> None:
        """Save or clear the suffix."""
        saved = await self.service.set_suffix(UserId(interaction.user.id), value)
        text = (
            f"Your suffix is now **{echo(saved)}**: it is added to every prompt you type (/imagine and the Remix "
            "box); parameters you type win over its own."
            if saved
            else "Your suffix is removed: prompts go as you type them."
        )
        await interaction.response.send_message(fit_content(text), ephemeral=True)

    @option.command(name="set", description="Save parameters to use as --name in a prompt; no value deletes the set")
    @app_commands.describe(name="The set's name (a-z, 0-9, _ and -)", value="e.g. `--ar 16:9 --model pro`")
    async def option_set(
        self,
        interaction: discord.Interaction[Any],
        name: app_commands.Range[str, 1, 34],
        value: app_commands.Range[str, 0, MAX_OPTION_CHARS] | None = None,
    ) -> None:
        """Save, replace or delete one option set."""
        cleaned, options = await self.service.set_option_set(UserId(interaction.user.id), name, value)
        text = (
            f"`--{cleaned}` now stands for {code(options, limit=200)}."
            if options is not None
            else f"`--{cleaned}` is deleted (if you had it)."
        )
        await interaction.response.send_message(fit_content(text), ephemeral=True)

    @option.command(name="list", description="Your saved option sets")
    async def option_list(self, interaction: discord.Interaction[Any]) -> None:
        """List the user's option sets."""
        prefs = await self.service.prefs(UserId(interaction.user.id))
        embed = option_list_embed(dict(prefs.option_sets or {}))
        await interaction.response.send_message(embed=fit_embed(embed), ephemeral=True)


async def setup(bot: commands.Bot) -> None:
    """Load the extension."""
    assert isinstance(bot, PeelBot)
    await bot.add_cog(PreferCog(bot))
