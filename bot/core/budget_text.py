"""What people read about budgets (pure): the caps and spend `/info`, `/budget` and a batch plan show.

Money is `bot.core.budgets.usd_text`; times are Discord timestamps (`<t:UNIX:R>`: "in 5 hours", each reader in
their own time zone; https://discord.com/developers/docs/reference#message-formatting-timestamp-styles).
"""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from bot.core.budget_rules import ALL_MODELS, AuditEntry, Gate
from bot.core.budgets import Period, RoleRule, ScopeKind, usd_text

WHEN = {Period.DAY: "today", Period.MONTH: "this month"}
ADJECTIVE = {Period.DAY: "daily", Period.MONTH: "monthly"}
GATE_NAMES = {Gate.BATCH: "/batch", Gate.MODELS: "models", Gate.ALLOW_4K: "4K", Gate.MAX_BATCH_ITEMS: "max batch"}


class CapState(Protocol):
    """One cap that applies to someone and what counts against it (`bot.app.budgets.CapStatus`)."""

    @property
    def scope(self) -> ScopeKind: ...  # noqa: D102 (a protocol's attributes)
    @property
    def period(self) -> Period: ...  # noqa: D102
    @property
    def cap(self) -> int: ...  # noqa: D102
    @property
    def used(self) -> int: ...  # noqa: D102
    @property
    def resets_at(self) -> datetime: ...  # noqa: D102


def relative(moment: datetime) -> str:
    """Return a Discord timestamp relative to the reader's now ("in 3 hours")."""
    return f"<t:{int(moment.timestamp())}:R>"


def cap_text(cap: int | None) -> str:
    """Return a cap for people: its amount, or "no cap"."""
    return "no cap" if cap is None else usd_text(cap)


def cap_name(scope: ScopeKind, period: Period) -> str:
    """Return how a cap is named in a sentence: "your daily cap", "this server's monthly cap"."""
    whose = {ScopeKind.USER: "your", ScopeKind.ROLE: "your role's", ScopeKind.GUILD: "this server's"}[scope]
    return f"{whose} {ADJECTIVE[period]} cap"


def spend_line(period: Period, spent: int, cap: CapState | None) -> str:
    """Return one line of `/info`'s Spend: what was spent in the period against the tightest cap of it.

    A user cap (or a role's) counts the user's own spend and reservations; the server's cap counts everyone's in
    the server, so that one is shown beside the user's own spend rather than as theirs.
    """
    when = WHEN[period]
    if cap is None:
        return f"{usd_text(spent)} {when} · no cap"
    resets = f"resets {relative(cap.resets_at)}"
    if cap.scope is ScopeKind.GUILD:
        return f"{usd_text(spent)} {when} · server: {usd_text(cap.used)} of {usd_text(cap.cap)} · {resets}"
    return f"{usd_text(cap.used)} of {usd_text(cap.cap)} {when} · {resets}"


def plan_budget_line(cost: int, cap: CapState | None) -> str | None:
    """Return the plan's line of its cost against what the tightest cap leaves (None: no cap applies).

    A plan that does not fit says which cap and by how much: Start refuses it, so the user knows before pressing.
    """
    if cap is None:
        return None
    left = max(0, cap.cap - cap.used)
    name = cap_name(cap.scope, cap.period)
    if cost <= left:
        return f"🧾 {usd_text(left)} left of {name} · {usd_text(left - cost)} after this batch"
    return (
        f"⛔ about {usd_text(cost)}: {usd_text(cost - left)} over {name} ({usd_text(left)} left of "
        f"{usd_text(cap.cap)}); Start will be refused until it resets {relative(cap.resets_at)}."
    )


def gate_value_text(gate: Gate | str, value: str | None) -> str:
    """Return a gate's canonical value for people (None: the settings' value)."""
    if value is None:
        return "default"
    if gate in (Gate.BATCH, Gate.ALLOW_4K):
        return "allowed" if value == "true" else "not allowed"
    if gate == Gate.MAX_BATCH_ITEMS:
        return "no limit" if value == "0" else f"{int(value):,} images"
    return "all" if value == ALL_MODELS else value.replace(",", ", ")


def audit_value_text(what: str, value: str | None) -> str:
    """Return an audit entry's value for people: a cap's amount, "no cap", or "default"; a gate as above."""
    if what in (Period.DAY, Period.MONTH):
        if value is None:
            return "default"
        return "no cap" if value == "none" else usd_text(int(value))
    return gate_value_text(what, value)


def what_text(what: str) -> str:
    """Return what an audit entry changed, as "daily cap" or "4K"."""
    if what in (Period.DAY, Period.MONTH):
        return f"{ADJECTIVE[Period(what)]} cap"
    return GATE_NAMES.get(Gate(what), what)


def audit_line(entry: AuditEntry, *, with_target: bool = False) -> str:
    """Return one change for people: when, who, what, before → after."""
    target = f" {mention(entry.scope, entry.scope_id)}" if with_target else ""
    old, new = audit_value_text(entry.what, entry.old), audit_value_text(entry.what, entry.new)
    return f"{relative(entry.at)} <@{entry.by}>{target}: {what_text(entry.what)} {old} → {new}"


def mention(scope: ScopeKind, scope_id: int) -> str:
    """Return how Discord shows a user, a role or "this server"."""
    return {ScopeKind.USER: f"<@{scope_id}>", ScopeKind.ROLE: f"<@&{scope_id}>", ScopeKind.GUILD: "this server"}[scope]


def gates_text(rule: RoleRule) -> str:
    """Return a role's gates in one line."""
    models = "all" if rule.models is None else ", ".join(sorted(rule.models)) or "none"
    most = "no limit" if rule.max_batch_items is None else f"{rule.max_batch_items:,} images"
    return (
        f"/batch: {'allowed' if rule.batch else 'not allowed'} · models: {models} · "
        f"4K: {'allowed' if rule.allow_4k else 'not allowed'} · max batch: {most}"
    )


def changes_text(entries: Sequence[AuditEntry], *, with_target: bool = False) -> str:
    """Return the latest changes, one a line ("none yet" when there are none)."""
    return "\n".join(audit_line(e, with_target=with_target) for e in entries) or "none yet"


def window_dates(since: datetime, until: datetime, tz: ZoneInfo) -> tuple[str, str]:
    """Return the first and the last day a [since, until) window of whole days holds, as `YYYY-MM-DD` in `tz`."""
    last = until.astimezone(tz) - timedelta(days=1)
    return since.astimezone(tz).date().isoformat(), last.date().isoformat()


def usage_csv_name(since: datetime, until: datetime, tz: ZoneInfo) -> str:
    """Return the file name of a `/usage` CSV: `peel-usage-<first day>-<last day>.csv`."""
    first, last = window_dates(since, until, tz)
    return f"peel-usage-{first}-{last}.csv"
