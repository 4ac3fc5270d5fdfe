"""`/budget show|set` and `/usage`: the money caps and gates admins set, and what everyone spent.

Translation only: the rules are `bot.core.budgets` and `bot.core.budget_rules`, the texts `bot.core.budget_text`,
and `BudgetService` reads and writes the ledger. Every answer is ephemeral and pings nobody: it names members and
roles with mentions, sent with `allowed_mentions` none.
"""

import io
from typing import Any, Literal
from zoneinfo import ZoneInfo

import discord
from discord import app_commands
from discord.ext import commands

from bot.app.budgets import BudgetService, BudgetShow, CapSetting, UsageReport
from bot.core.budget_rules import AuditEntry, RoleGates, models_value
from bot.core.budget_text import (
    ADJECTIVE,
    audit_line,
    cap_name,
    cap_text,
    changes_text,
    gates_text,
    mention,
    relative,
    spend_line,
    usage_csv_name,
    window_dates,
)
from bot.core.budgets import AmountError, Period, ScopeKind, UsagePeriod, parse_amount, usd_text
from bot.errors import UserFacingError
from bot.exts._access import actor_of
from bot.exts._send import fit_embed
from worker.contract import MODEL_ALIASES

Target = discord.Member | discord.User | discord.Role
TOP_USERS = 10
TOP_GUILDS = 10
NONE = discord.AllowedMentions.none()


def _is_admin(bot: commands.Bot, user: discord.abc.User, guild_id: int | None) -> bool:
    is_admin = getattr(bot, "is_admin", None)  # PeelBot's, without importing PeelBot (a cycle)
    return bool(is_admin(user, guild_id)) if callable(is_admin) else False


def _scope_of(target: Target | None, guild_id: int | None) -> tuple[ScopeKind, int]:
    if isinstance(target, discord.Role):
        return ScopeKind.ROLE, target.id
    if target is not None:
        return ScopeKind.USER, target.id
    if guild_id is None:
        raise UserFacingError("In direct messages, name a member or a role.", title="Which budget?")
    return ScopeKind.GUILD, guild_id


def _cap_line(setting: CapSetting) -> str:
    source = (
        "settings default"
        if setting.set_by is None or setting.set_at is None
        else f"set by <@{setting.set_by}> {relative(setting.set_at)}"
    )
    return f"{ADJECTIVE[setting.period].capitalize()}: **{cap_text(setting.cap)}** · {source}"


def show_embed(shown: BudgetShow) -> discord.Embed:
    """Return `/budget show`'s answer: caps and their source, a user's spend, a role's gates, the changes."""
    embed = discord.Embed(title="Budget", description=f"For {mention(shown.scope, shown.scope_id)}")
    embed.add_field(name="Caps", value="\n".join(_cap_line(c) for c in shown.caps), inline=False)
    if shown.view is not None:
        view = shown.view
        lines = [
            spend_line(Period.DAY, view.spent_today, view.tightest(Period.DAY)),
            spend_line(Period.MONTH, view.spent_month, view.tightest(Period.MONTH)),
        ]
        tightest = view.tightest()
        if tightest is not None:
            lines.append(f"Left: **{usd_text(tightest.remaining)}** under {cap_name(tightest.scope, tightest.period)}")
        embed.add_field(name="Spend", value="\n".join(lines), inline=False)
    if shown.rule is not None:
        embed.add_field(name="Gates", value=gates_text(shown.rule), inline=False)
    embed.add_field(name="Recent changes", value=changes_text(shown.changes), inline=False)
    return embed


def usage_embed(report: UsageReport, *, period: str, tz: ZoneInfo, guild_names: dict[int, str]) -> discord.Embed:
    """Return `/usage`'s answer: the total, per server and the top users (the CSV holds every row)."""
    first, last = window_dates(report.since, report.until, tz)
    days = first if first == last else f"{first} – {last}"
    embed = discord.Embed(
        title=f"Peel usage · {period.replace('_', ' ')}",
        description=f"{days} ({tz.key}): **{usd_text(report.total)}** in all · {report.images:,} images",
    )
    servers = [
        f"{'DMs and CLI' if g is None else guild_names.get(g, str(g))}: {usd_text(usd)}"
        for g, usd in report.by_guild[:TOP_GUILDS]
    ]
    users = [f"<@{user}>: {usd_text(usd)}" for user, usd in report.by_user[:TOP_USERS]]
    embed.add_field(name="Servers", value="\n".join(servers) or "nothing spent", inline=False)
    embed.add_field(name="Top users", value="\n".join(users) or "nothing spent", inline=False)
    return embed


def _amount(text: str) -> int | Literal["none", "default"]:
    try:
        return parse_amount(text)
    except AmountError as exc:
        raise UserFacingError(str(exc), title="Invalid amount") from exc


def _gates(*, batch: bool | None, models: str | None, allow_4k: bool | None, most: int | None) -> RoleGates:
    try:
        listed = None if models is None else models_value(models, MODEL_ALIASES)
    except ValueError as exc:
        raise UserFacingError(str(exc), title="Invalid models") from exc
    return RoleGates(batch=batch, models=listed, allow_4k=allow_4k, max_batch_items=most)


class BudgetCog(commands.GroupCog, group_name="budget", group_description="Money caps: what Peel may cost"):
    """`/budget show` and `/budget set`."""

    def __init__(self, bot: commands.Bot, service: BudgetService) -> None:
        super().__init__()
        self.bot = bot
        self.service = service

    @app_commands.command(
        name="show", description="Caps and spend: yours, or (admins) a member's, a role's, the server's"
    )
    @app_commands.describe(target="A member or a role; leave empty for yourself (admins: for the server)")
    async def show(self, interaction: discord.Interaction[Any], target: Target | None = None) -> None:
        """Show the caps in force for a target, where each comes from, and the latest changes."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        user, guild_id = interaction.user, interaction.guild_id
        admin = _is_admin(self.bot, user, guild_id)
        if not admin and target is None:
            target = user  # a member's own budget; the server's is for admins
        if not admin and (isinstance(target, discord.Role) or (target is not None and target.id != user.id)):
            raise UserFacingError(
                "You can see your own budget; only Peel admins see others'.", title="Not allowed here"
            )
        scope, scope_id = _scope_of(target, guild_id)
        member = target if scope is ScopeKind.USER and isinstance(target, discord.abc.User) else None
        shown = await self.service.show(
            scope,
            scope_id,
            guild_id=guild_id,
            role_ids=actor_of(member, guild_id).role_ids if member is not None else (),
            is_admin=member is not None and _is_admin(self.bot, member, guild_id),
        )
        await interaction.followup.send(embed=fit_embed(show_embed(shown)), ephemeral=True, allowed_mentions=NONE)

    @app_commands.command(name="set", description="Set a daily or monthly cap, or a role's gates (Peel admins)")
    @app_commands.describe(
        period="Which cap: day or month (with amount)",
        amount="5, $5, 2.50, none (no cap) or default (the settings')",
        target="A member or a role; leave empty for the server",
        batch="A role: may its members use /batch",
        models="A role: the models its members may use, comma separated (flash, pro, flash3) or all",
        allow_4k="A role: may its members make 4K images",
        max_batch_items="A role: the largest batch, in images (0: no limit)",
    )
    @app_commands.choices(period=[app_commands.Choice(name=p.value, value=p.value) for p in Period])
    async def set_(  # `set` would shadow the builtin; the command's name is given above
        self,
        interaction: discord.Interaction[Any],
        period: str | None = None,
        amount: app_commands.Range[str, 1, 40] | None = None,
        target: Target | None = None,
        batch: bool | None = None,
        models: app_commands.Range[str, 1, 200] | None = None,
        allow_4k: bool | None = None,
        max_batch_items: app_commands.Range[int, 0, 1_000_000] | None = None,
    ) -> None:
        """Change one cap of a member, a role or the server, and a role's gates; answer what changed."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        self.service.require_admin(_is_admin(self.bot, interaction.user, interaction.guild_id))
        gates = _gates(batch=batch, models=models, allow_4k=allow_4k, most=max_batch_items)
        has_gates = any(v is not None for v in gates.values().values())
        if (period is None) != (amount is None):
            raise UserFacingError("Give both `period` and `amount` to change a cap.", title="Which cap?")
        if period is None and not has_gates:
            raise UserFacingError("Give a `period` and an `amount`, or a role's gates.", title="Nothing to change")
        scope, scope_id = _scope_of(target, interaction.guild_id)
        if has_gates and scope is not ScopeKind.ROLE:
            raise UserFacingError("Gates are set per role: name a role as `target`.", title="Gates need a role")
        by = interaction.user.id
        changes: list[AuditEntry] = []
        if period is not None and amount is not None:
            value = _amount(amount)
            changes.append(await self.service.change_cap(scope, scope_id, Period(period), value, by=by, is_admin=True))
        if has_gates:
            changes += await self.service.set_gates(scope_id, gates, by=by, is_admin=True)
        lines = [audit_line(c) for c in changes] or ["Nothing changed: that is what was set already."]
        embed = discord.Embed(
            title="Budget changed", description=f"For {mention(scope, scope_id)}\n" + "\n".join(lines)
        )
        await interaction.followup.send(embed=fit_embed(embed), ephemeral=True, allowed_mentions=NONE)


class UsageCog(commands.Cog):
    """`/usage`: what Peel cost per server and user over a period, with the CSV of every row."""

    def __init__(self, bot: commands.Bot, service: BudgetService) -> None:
        self.bot = bot
        self.service = service

    @app_commands.command(name="usage", description="What Peel cost per server and per user, with a CSV (Peel admins)")
    @app_commands.describe(period="Which days, in the budget time zone")
    @app_commands.choices(
        period=[app_commands.Choice(name=p.value.replace("_", " "), value=p.value) for p in UsagePeriod]
    )
    async def usage(self, interaction: discord.Interaction[Any], period: str = UsagePeriod.TODAY.value) -> None:
        """Answer the totals of a period and attach `BudgetService.usage_csv`'s rows."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        if not _is_admin(self.bot, interaction.user, interaction.guild_id):
            raise UserFacingError(
                "Only Peel admins can see everyone's usage; `/info` shows yours.", title="Not allowed here"
            )
        since, until = self.service.window(period)
        report = await self.service.usage(since=since, until=until)
        names = {g.id: g.name for g in self.bot.guilds}
        embed = usage_embed(report, period=period, tz=self.service.tz, guild_names=names)
        csv_file = discord.File(io.BytesIO(report.csv.encode()), filename=usage_csv_name(since, until, self.service.tz))
        await interaction.followup.send(embed=fit_embed(embed), file=csv_file, ephemeral=True, allowed_mentions=NONE)


async def setup(bot: commands.Bot) -> None:
    """Load the cogs (the extension entry point); the bot must carry `services`."""
    services = getattr(bot, "services")  # noqa: B009 - PeelBot's attribute, without importing PeelBot (a cycle)
    await bot.add_cog(BudgetCog(bot, services.budgets))
    await bot.add_cog(UsageCog(bot, services.budgets))
