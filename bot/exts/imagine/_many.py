"""`/imagine` with `{a, b}` permutations or `--repeat`: the count and cost first, then one grid message per job.

The question is ephemeral (only the user sees it) and nothing is queued before Go; Cancel or the view's timeout
queues nothing. Each job gets its own channel message, tracked like any other (`_tracker`).
"""

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from bot.app.generation_types import ImaginePlan
from bot.exts._send import fit_content

CONFIRM_TIMEOUT_S = 600.0


class ManyGridsView(discord.ui.View):
    """Go / Cancel under the count and cost of a permutation prompt; Go runs `on_go` once."""

    def __init__(self, plan: ImaginePlan, on_go: Callable[[discord.Interaction[Any]], Awaitable[None]]) -> None:
        super().__init__(timeout=CONFIRM_TIMEOUT_S)
        self.plan = plan
        self._on_go = on_go

    @discord.ui.button(label="Go", style=discord.ButtonStyle.primary)
    async def go(self, interaction: discord.Interaction[Any], _button: discord.ui.Button["ManyGridsView"]) -> None:
        """Queue every grid (once: the view stops listening first)."""
        self.stop()
        await interaction.response.edit_message(content=fit_content(f"Queuing {len(self.plan.jobs)} grids…"), view=None)
        await self._on_go(interaction)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: discord.Interaction[Any], _button: discord.ui.Button["ManyGridsView"]) -> None:
        """Queue nothing."""
        self.stop()
        with contextlib.suppress(discord.HTTPException):
            await interaction.response.edit_message(content="Cancelled: nothing was queued.", view=None)


__all__ = ["CONFIRM_TIMEOUT_S", "ManyGridsView"]
