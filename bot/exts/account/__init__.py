"""`/settings`, `/queue`, `/cancel` and `/info`: a user's defaults, their jobs, and their limits."""

import logging
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.generation import GenerationService
from bot.app.generation_types import UserPrefs
from bot.core.budget_text import spend_line
from bot.core.budgets import Period
from bot.core.models import Job, JobId, JobStatus, UserId
from bot.core.params import GEMINI_ASPECT_RATIOS
from bot.core.render import code, echo, one_line, truncate
from bot.discord_bot import PeelBot
from bot.exts._access import actor_of
from bot.exts._errors import error_embed, send_error
from bot.exts._send import fit_content, fit_embed, fit_view
from worker.contract import MODEL_ALIASES

log = logging.getLogger(__name__)

DEFAULT = "default"
SETTINGS_PANEL_S = 10 * 60.0  # how long /settings' controls work after their last use
CANCEL_PANEL_S = 5 * 60.0  # how long /cancel's list of jobs works
MODELS = (("flash", "Nano Banana (2.5 Flash Image)"), ("pro", "Nano Banana Pro"), ("flash3", "Nano Banana 2"))


def settings_text(prefs: UserPrefs, default_model: str, *, suffix: str = "") -> str:
    """Return the summary shown above the settings controls (`suffix`: the user's `/prefer suffix`)."""
    return "\n".join(
        [
            "**Your Peel settings** (prompt parameters still win)",
            f"Model: `{prefs.model or default_model}` · Aspect ratio: `{prefs.aspect_ratio or '1:1'}` · "
            f"Size: `{prefs.image_size or '1K'}` · Grid: `{prefs.grid_size}` images",
            f"Remix mode: **{'on' if prefs.remix else 'off'}** · Variations: **{prefs.variation}**",
            f"Suffix: {code(suffix, limit=200) if suffix else 'none'} (`/prefer suffix`)",
        ]
    )


class ExpiringPanel(discord.ui.View):
    """An ephemeral panel whose controls are greyed out, with a hint, when its view times out.

    Otherwise a control clicked after the timeout only gets Discord's "This interaction failed". The panel is
    edited through the newest interaction of its owner (the command that opened it, then each control they
    used), whose token Discord honours for 15 minutes: longer than any panel's timeout.
    """

    def __init__(self, *, timeout: float, content: str, expired_hint: str) -> None:
        super().__init__(timeout=timeout)
        self.content, self._expired_hint = content, expired_hint
        self._latest: discord.Interaction[Any] | None = None

    def shown_by(self, interaction: discord.Interaction[Any]) -> None:
        """Remember the interaction whose response shows the panel (or changed it last)."""
        self._latest = interaction

    async def on_timeout(self) -> None:
        """Grey out every control and say how to open the panel again."""
        for child in self.children:
            if isinstance(child, discord.ui.Button | discord.ui.Select):
                child.disabled = True
        if self._latest is None:
            return
        try:
            await self._latest.edit_original_response(
                content=fit_content(f"{self.content}\n-# {self._expired_hint}"), view=fit_view(self)
            )
        except discord.HTTPException as exc:  # dismissed by the user, or the token is gone: nothing to grey out
            log.debug("expired panel not updated: %s", exc)


class SettingsView(ExpiringPanel):
    """Selects and buttons that change one user's preferences."""

    def __init__(self, service: GenerationService, owner_id: int, prefs: UserPrefs, *, suffix: str = "") -> None:
        super().__init__(
            timeout=SETTINGS_PANEL_S,
            content=settings_text(prefs, service.default_model, suffix=suffix),
            expired_hint="These controls have expired: run `/settings` to change your settings again.",
        )
        self._service, self._owner_id, self.prefs, self._suffix = service, owner_id, prefs, suffix
        self.model = self._select("model", "Model", 0, self._on_model)
        self.ratio = self._select("ratio", "Aspect ratio", 1, self._on_ratio)
        self.size = self._select("size", "Size", 2, self._on_size)
        self.grid = self._select("grid", "Grid size", 3, self._on_grid)
        self._show_prefs()

    def _select(
        self,
        name: str,
        placeholder: str,
        row: int,
        callback: Callable[[discord.Interaction[Any]], Coroutine[Any, Any, None]],
    ) -> discord.ui.Select["SettingsView"]:
        select: discord.ui.Select[SettingsView] = discord.ui.Select(
            placeholder=placeholder, row=row, custom_id=f"peel-settings:{name}"
        )
        select.callback = callback  # type: ignore[method-assign,assignment]  # discord.py's documented way for built items
        self.add_item(select)
        return select

    def _show_prefs(self) -> None:
        p = self.prefs
        self.model.options = [discord.SelectOption(label="Bot default", value=DEFAULT, default=p.model is None)] + [
            discord.SelectOption(label=label, value=MODEL_ALIASES[alias], default=p.model == MODEL_ALIASES[alias])
            for alias, label in MODELS
        ]
        self.ratio.options = [
            discord.SelectOption(label=f"Aspect ratio {r}", value=r, default=(p.aspect_ratio or "1:1") == r)
            for r in GEMINI_ASPECT_RATIOS
        ]
        self.size.options = [
            discord.SelectOption(label=f"Size {s}", value=s, default=(p.image_size or "1K") == s)
            for s in ("1K", "2K", "4K")
        ]
        self.grid.options = [
            discord.SelectOption(
                label=f"{n} image{'s' if n > 1 else ''} per job", value=str(n), default=p.grid_size == n
            )
            for n in (1, 2, 4)
        ]
        self.remix.style = discord.ButtonStyle.success if p.remix else discord.ButtonStyle.secondary
        self.remix.label = f"Remix mode: {'on' if p.remix else 'off'}"
        self.variation.label = f"Variations: {p.variation}"

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        """Only the user who opened these settings may change them."""
        if interaction.user.id == self._owner_id:
            self.shown_by(interaction)
            return True
        await interaction.response.send_message("These are someone else's settings.", ephemeral=True)
        return False

    async def on_error(
        self, interaction: discord.Interaction[Any], error: Exception, item: discord.ui.Item[Any]
    ) -> None:
        """Show the error ephemerally (the shared mapper)."""
        await send_error(interaction, error, where="/settings")

    async def _save(self, interaction: discord.Interaction[Any], prefs: UserPrefs) -> None:
        self.prefs = await self._service.set_preferences(UserId(self._owner_id), prefs)
        self._show_prefs()
        self.content = settings_text(self.prefs, self._service.default_model, suffix=self._suffix)
        await interaction.response.edit_message(content=fit_content(self.content), view=fit_view(self))

    async def _on_model(self, interaction: discord.Interaction[Any]) -> None:
        value = self.model.values[0]
        await self._save(interaction, replace(self.prefs, model=None if value == DEFAULT else value))

    async def _on_ratio(self, interaction: discord.Interaction[Any]) -> None:
        await self._save(interaction, replace(self.prefs, aspect_ratio=self.ratio.values[0]))

    async def _on_size(self, interaction: discord.Interaction[Any]) -> None:
        await self._save(interaction, replace(self.prefs, image_size=self.size.values[0]))

    async def _on_grid(self, interaction: discord.Interaction[Any]) -> None:
        await self._save(interaction, replace(self.prefs, grid_size=int(self.grid.values[0])))

    @discord.ui.button(label="Remix mode", row=4, custom_id="peel-settings:remix")
    async def remix(self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]) -> None:
        """Turn Remix mode on or off."""
        await self._save(interaction, replace(self.prefs, remix=not self.prefs.remix))

    @discord.ui.button(label="Variations", row=4, custom_id="peel-settings:variation")
    async def variation(self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]) -> None:
        """Switch V buttons between subtle and strong variations."""
        await self._save(
            interaction, replace(self.prefs, variation="subtle" if self.prefs.variation == "strong" else "strong")
        )

    @discord.ui.button(label="Reset", row=4, style=discord.ButtonStyle.danger, custom_id="peel-settings:reset")
    async def reset(self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]) -> None:
        """Go back to the bot's defaults."""
        await self._save(interaction, UserPrefs())


def job_line(job: Job, position: int | None, prompt: str, *, show_owner: bool) -> str:
    """Return one `/queue` line: state, position, kind, prompt."""
    state = job.status.value
    if position is not None:
        state += f" · #{position} in line"
    if job.status is JobStatus.RUNNING:
        state += f" · {job.ok + job.failed}/{job.total}"
    owner = f" <@{job.owner_id}>" if show_owner else ""
    return f"`{job.id}` **{state}** · {job.kind.value}{owner} · {truncate(echo(prompt), 60)}"


class AccountCog(commands.Cog):
    """A user's settings, queue, cancellations and limits."""

    def __init__(self, bot: PeelBot) -> None:
        self.bot = bot
        self.service = bot.services.generation
        self.account = bot.services.account

    @app_commands.command(name="settings", description="Your defaults: model, aspect ratio, size, grid size, Remix")
    async def settings(self, interaction: discord.Interaction[Any]) -> None:
        """Show the settings controls."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        prefs = await self.service.preferences(UserId(interaction.user.id))
        saved = await self.bot.services.prefer.prefs(UserId(interaction.user.id))
        view = SettingsView(self.service, interaction.user.id, prefs, suffix=saved.suffix)
        await interaction.followup.send(fit_content(view.content), view=fit_view(view), ephemeral=True)
        view.shown_by(interaction)

    @app_commands.command(name="queue", description="Your jobs that are waiting or running (admins: everyone's)")
    async def queue(self, interaction: discord.Interaction[Any]) -> None:
        """List unfinished jobs with their state and place in line."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        everyone = self.bot.is_admin(interaction.user, interaction.guild_id)
        jobs = await self.account.queue(None if everyone else UserId(interaction.user.id))
        lines = [
            job_line(e.job, e.position, await self.service.display_of(e.job), show_owner=everyone) for e in jobs[:20]
        ]
        title = "Peel's queue" if everyone else "Your queue"
        description = "\n".join(lines) if lines else "Nothing waiting or running."
        if len(jobs) > 20:
            description += f"\n… and {len(jobs) - 20} more"
        await interaction.followup.send(
            embed=fit_embed(discord.Embed(title=title, description=description)), ephemeral=True
        )

    @app_commands.command(name="cancel", description="Cancel one of your waiting or running jobs")
    @app_commands.describe(job="The job id (from /queue); leave empty to pick from a list")
    async def cancel(self, interaction: discord.Interaction[Any], job: str | None = None) -> None:
        """Cancel a job by id, or pick one from a select."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        is_admin = self.bot.is_admin(interaction.user, interaction.guild_id)
        if job is not None:
            result = await self.account.cancel(JobId(job.strip()), UserId(interaction.user.id), is_admin=is_admin)
            embed = (
                discord.Embed(title="Job cancelled", description=f"`{job}` was cancelled.")
                if result.cancelled
                else error_embed("Can't cancel", result.message)
            )
            await interaction.followup.send(embed=fit_embed(embed), ephemeral=True)
            return
        jobs = await self.account.open_jobs(UserId(interaction.user.id))
        if not jobs:
            await interaction.followup.send("You have no waiting or running jobs.", ephemeral=True)
            return
        view = CancelView(self, interaction.user.id, is_admin)
        view.pick.options = [
            discord.SelectOption(
                label=one_line(await self.service.display_of(j)) or j.id,  # cut to 100 by fit_view
                value=j.id,
                description=f"{j.id} · {j.status.value}",
            )
            for j in jobs[:25]
        ]
        await interaction.followup.send(fit_content(view.content), view=fit_view(view), ephemeral=True)
        view.shown_by(interaction)

    @app_commands.command(name="info", description="Your usage, spend and limits")
    async def info(self, interaction: discord.Interaction[Any]) -> None:
        """Show the user's usage and limits."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        settings = self.bot.runtime.settings
        user = UserId(interaction.user.id)
        usage = await self.account.usage(user)
        prefs = await self.service.preferences(user)
        admin = self.bot.is_admin(interaction.user, interaction.guild_id)
        limits = (
            "none (admin)"
            if admin
            else f"{settings.max_running_per_user} running at once, {settings.max_waiting_per_user} more waiting"
        )
        embed = discord.Embed(title="Your Peel info")
        embed.add_field(name="Jobs", value=f"{usage.jobs} in all · {usage.running} running · {usage.waiting} waiting")
        embed.add_field(name="Images", value=f"{usage.made} made · {usage.not_made} not made")
        embed.add_field(name="Limits", value=limits, inline=False)
        spend = await self.bot.services.budgets.view(
            user_id=user,
            guild_id=interaction.guild_id,
            role_ids=actor_of(interaction.user, interaction.guild_id).role_ids,
            is_admin=admin,
        )
        embed.add_field(
            name="Spend",
            value="\n".join(
                spend_line(period, spent, spend.tightest(period))
                for period, spent in ((Period.DAY, spend.spent_today), (Period.MONTH, spend.spent_month))
            ),
            inline=False,
        )
        embed.add_field(name="Model", value=prefs.model or settings.gemini_model)
        embed.add_field(name="Remix", value="on" if prefs.remix else "off")
        saved = await self.bot.services.prefer.prefs(user)
        embed.add_field(
            name="Suffix",
            value=f"{code(saved.suffix, limit=200) if saved.suffix else 'none'} · "
            f"{len(saved.option_sets or {})} option set(s) (`/prefer option list`)",
            inline=False,
        )
        embed.add_field(
            name="References",
            value="up to 10 per /imagine; Nano Banana takes 3, Pro and Nano Banana 2 take 14",
            inline=False,
        )
        await interaction.followup.send(embed=fit_embed(embed), ephemeral=True)


class CancelView(ExpiringPanel):
    """A select of the user's unfinished jobs; picking one cancels it."""

    def __init__(self, cog: AccountCog, owner_id: int, is_admin: bool) -> None:
        super().__init__(
            timeout=CANCEL_PANEL_S,
            content="Which job should be cancelled?",
            expired_hint="This list has expired: run `/cancel` again to see your jobs as they are now.",
        )
        self._cog, self._owner_id, self._is_admin = cog, owner_id, is_admin
        self.pick: discord.ui.Select[CancelView] = discord.ui.Select(
            placeholder="Pick a job to cancel", custom_id="peel-cancel:pick"
        )
        self.pick.callback = self._on_pick  # type: ignore[method-assign]  # discord.py's way for built items
        self.add_item(self.pick)

    async def on_error(
        self, interaction: discord.Interaction[Any], error: Exception, item: discord.ui.Item[Any]
    ) -> None:
        """Show the error ephemerally (the shared mapper)."""
        await send_error(interaction, error, where="/cancel")

    async def _on_pick(self, interaction: discord.Interaction[Any]) -> None:
        picked = self.pick.values[0]
        result = await self._cog.account.cancel(JobId(picked), UserId(self._owner_id), is_admin=self._is_admin)
        text = f"Job `{picked}` cancelled." if result.cancelled else result.message
        self.stop()  # the list is gone from the message: nothing to expire
        await interaction.response.edit_message(content=fit_content(text), view=None)


async def setup(bot: commands.Bot) -> None:
    """Load the extension."""
    assert isinstance(bot, PeelBot)
    await bot.add_cog(AccountCog(bot))
