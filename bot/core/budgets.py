"""Budgets in money (pure): caps per user, role and guild, per day and month, and the per-role gates.

Money is whole micro-dollars (`int`, 1 USD = 1,000,000), never floats, so the boundaries are exact: spending
exactly a cap is allowed, one micro-dollar over is not.

The rules:
- A **period** (day or month) starts at midnight (the 1st of the month) in the configured time zone
  (`BUDGET_TIMEZONE`), and resets at the next such midnight; across a DST change a day is 23 or 25 hours long.
- A **user cap** and a **role cap** limit one user's own spend; a **guild cap** limits everyone's spend in that
  guild together. A role cap is a per-member cap (each holder of the role gets it), not a pool.
- A user with several roles that have rules gets the **most generous** of them (the highest cap, no cap beating
  any; a gate open in any of their roles is open; the union of allowed models; the largest batch size). The user
  cap and the guild cap then apply on top: the tightest of what applies wins.
- **Peel admins** pass the gates and their own user and role caps; the guild's caps hold for them too, as the
  operator pays for every image whoever asks.
- What counts against a cap is what was spent in the period plus what open jobs have reserved and not yet spent.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo

from usertext.controls import strip_controls

MICROS_PER_USD = 1_000_000
FOUR_K = "4K"


class Period(StrEnum):
    """How long a cap's window lasts."""

    DAY = "day"
    MONTH = "month"


class ScopeKind(StrEnum):
    """Whose spend a cap limits."""

    USER = "user"
    ROLE = "role"
    GUILD = "guild"


def micros(usd: float | str | Decimal) -> int:
    """Return `usd` in whole micro-dollars, rounded half up (a float goes through its shortest decimal text)."""
    value = usd if isinstance(usd, Decimal) else Decimal(str(usd))
    return int((value * MICROS_PER_USD).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def usd_text(amount: int) -> str:
    """Return micro-dollars as a dollar amount for people: `$1.25`, `$0.50`, `$0.0391` (cents, up to four under $1)."""
    value = Decimal(amount) / MICROS_PER_USD
    if value != 0 and abs(value) < 1:
        small = value.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP).normalize()
        exponent = small.as_tuple().exponent
        if isinstance(exponent, int) and exponent > -2:  # never fewer than cents: $0.50, not $0.5
            small = small.quantize(Decimal("0.01"))
        return f"${small:f}"
    return f"${value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"


def period_start(now: datetime, period: Period, tz: ZoneInfo) -> datetime:
    """Return when the period holding `now` began, as an aware UTC time (midnight in `tz`)."""
    local = now.astimezone(tz)
    day = local.date() if period is Period.DAY else local.date().replace(day=1)
    return datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)


def next_reset(now: datetime, period: Period, tz: ZoneInfo) -> datetime:
    """Return when the period holding `now` ends (the next midnight, or the next 1st, in `tz`), in UTC."""
    local = now.astimezone(tz).date()
    if period is Period.DAY:
        following = local + timedelta(days=1)
    else:
        following = (local.replace(day=1) + timedelta(days=32)).replace(day=1)
    return datetime.combine(following, time(), tzinfo=tz).astimezone(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Caps:
    """A daily and a monthly cap in micro-dollars; None is no cap."""

    day: int | None = None
    month: int | None = None

    def of(self, period: Period) -> int | None:
        """Return the cap of `period`."""
        return self.day if period is Period.DAY else self.month

    def replacing(self, period: Period, cap: int | None) -> "Caps":
        """Return these caps with `period`'s replaced."""
        return Caps(day=cap, month=self.month) if period is Period.DAY else Caps(day=self.day, month=cap)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleRule:
    """What holders of one role may do: their caps and gates (None: no limit; `models` None: every model)."""

    caps: Caps = Caps()
    batch: bool = True
    models: frozenset[str] | None = None
    allow_4k: bool = True
    max_batch_items: int | None = None


def _loosest(values: Iterable[int | None]) -> int | None:
    values = list(values)
    return None if any(v is None for v in values) else max(v for v in values if v is not None)


def most_generous(rules: Sequence[RoleRule]) -> RoleRule | None:
    """Return the rule of a user holding every rule in `rules` (the most generous of each part); None: no rule."""
    if not rules:
        return None
    model_sets = [r.models for r in rules]
    return RoleRule(
        caps=Caps(day=_loosest(r.caps.day for r in rules), month=_loosest(r.caps.month for r in rules)),
        batch=any(r.batch for r in rules),
        models=None if any(m is None for m in model_sets) else frozenset().union(*(m for m in model_sets if m)),
        allow_4k=any(r.allow_4k for r in rules),
        max_batch_items=_loosest(r.max_batch_items for r in rules),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """One cap that applies to a request: whose spend (USER covers user and role caps), the period, the cap."""

    scope: ScopeKind  # the cap's own kind (USER, ROLE or GUILD), named in messages
    period: Period
    cap: int

    @property
    def counts(self) -> ScopeKind:
        """Whose spend this cap is measured against: a role cap limits the user's own spend."""
        return ScopeKind.GUILD if self.scope is ScopeKind.GUILD else ScopeKind.USER


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetConfig:
    """The caps and rules in force: defaults per user and per guild, rules per role, and overrides by id."""

    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    user: Caps = Caps()
    guild: Caps = Caps()
    roles: Mapping[int, RoleRule] = field(default_factory=dict)
    user_overrides: Mapping[int, Caps] = field(default_factory=dict)
    guild_overrides: Mapping[int, Caps] = field(default_factory=dict)

    def role_rule(self, role_ids: Iterable[int]) -> RoleRule | None:
        """Return the rule of a user with `role_ids` (the most generous of their roles' rules)."""
        return most_generous([self.roles[r] for r in sorted(set(role_ids)) if r in self.roles])

    def limits(
        self, *, user_id: int, guild_id: int | None, role_ids: Iterable[int], is_admin: bool = False
    ) -> tuple[Limit, ...]:
        """Return every cap that applies to a user acting in a guild (None: a DM, no guild cap)."""
        found: list[Limit] = []
        guild_caps = self.guild_overrides.get(guild_id, self.guild) if guild_id is not None else Caps()
        rule = None if is_admin else self.role_rule(role_ids)
        user_caps = Caps() if is_admin else self.user_overrides.get(user_id, self.user)
        for period in Period:
            for scope, caps in (
                (ScopeKind.USER, user_caps),
                (ScopeKind.ROLE, rule.caps if rule else Caps()),
                (ScopeKind.GUILD, guild_caps),
            ):
                cap = caps.of(period)
                if cap is not None:
                    found.append(Limit(scope=scope, period=period, cap=cap))
        return tuple(found)


@dataclass(frozen=True, slots=True, kw_only=True)
class Allowed:
    """The cost fits under every cap."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """The cost would take `scope`'s `period` cap over: `spent` already counts (with reservations) before `cost`."""

    scope: ScopeKind
    period: Period
    cap: int
    spent: int
    cost: int
    resets_at: datetime

    def message(self, tz: ZoneInfo) -> str:
        """Return the refusal for the user: which cap, the spend so far, the cost, and when it resets."""
        whose = {ScopeKind.USER: "Your", ScopeKind.ROLE: "Your role's", ScopeKind.GUILD: "This server's"}[self.scope]
        when = "daily" if self.period is Period.DAY else "monthly"
        resets = self.resets_at.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
        return (
            f"{whose} {when} budget is {usd_text(self.cap)}; {usd_text(self.spent)} is spent or reserved, and this "
            f"would cost {usd_text(self.cost)}. It resets at {resets}."
        )


Usage = Mapping[tuple[ScopeKind, Period], int]  # spent + reserved by whose spend (USER or GUILD) and period


def check(cost: int, limits: Sequence[Limit], used: Usage, resets: Mapping[Period, datetime]) -> Allowed | Refused:
    """Decide whether `cost` more fits under every limit: allowed when used + cost is at most the cap.

    Of the caps it would exceed, the one with the least room is named (the one the user hits first).
    """
    over = [limit for limit in limits if used.get((limit.counts, limit.period), 0) + cost > limit.cap]
    if not over:
        return Allowed()
    worst = min(over, key=lambda lim: (lim.cap - used.get((lim.counts, lim.period), 0), lim.period is Period.DAY))
    return Refused(
        scope=worst.scope,
        period=worst.period,
        cap=worst.cap,
        spent=used.get((worst.counts, worst.period), 0),
        cost=cost,
        resets_at=resets[worst.period],
    )


def room(limits: Sequence[Limit], used: Usage) -> int | None:
    """Return what may still be spent under every limit (negative when past one; None: no limit applies)."""
    rooms = [limit.cap - used.get((limit.counts, limit.period), 0) for limit in limits]
    return min(rooms) if rooms else None


def gate_refusal(rule: RoleRule | None, *, batch: bool, model: str, image_size: str | None, items: int) -> str | None:
    """Return why a user with `rule` may not make this request (None: they may, as anyone without a rule may)."""
    if rule is None:
        return None
    if batch and not rule.batch:
        return "Your roles don't allow /batch here. Ask a server admin for access."
    if rule.models is not None and model not in rule.models:
        allowed = ", ".join(sorted(rule.models)) or "none"
        return f"Your roles don't allow the model `{model}` here (allowed: {allowed})."
    if image_size == FOUR_K and not rule.allow_4k:
        return "Your roles don't allow 4K images here; choose 1K or 2K."
    if batch and rule.max_batch_items is not None and items > rule.max_batch_items:
        return f"Your roles allow batches of at most {rule.max_batch_items:,} images; this one has {items:,}."
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetHold:
    """What a new job asks of the budgets: its estimated cost, reserved with it, and the caps it must fit under.

    The ledger decides it inside the transaction that creates the job, so two jobs of one user or guild submitted
    at once cannot both take the last of a cap.
    """

    cost: int
    limits: tuple[Limit, ...]
    tz: ZoneInfo
    role_ids: frozenset[int] = frozenset()  # the owner's roles when it was asked (role caps apply by them later)
    is_admin: bool = False

    def to_json(self) -> dict[str, object]:
        """Return the caps, time zone and who asked, as stored with the reservation (the dispatcher reads them)."""
        return {
            "tz": self.tz.key,
            "limits": [{"scope": lim.scope.value, "period": lim.period.value, "cap": lim.cap} for lim in self.limits],
            "role_ids": sorted(self.role_ids),
            "is_admin": self.is_admin,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object], *, cost: int = 0) -> "BudgetHold":
        """Rebuild the stored caps (`cost` is what is asked now)."""
        raw = data.get("limits", [])
        limits = tuple(
            Limit(scope=ScopeKind(str(e["scope"])), period=Period(str(e["period"])), cap=int(e["cap"]))
            for e in (raw if isinstance(raw, list) else [])
            if isinstance(e, dict)
        )
        roles = data.get("role_ids", [])
        return cls(
            cost=cost,
            limits=limits,
            tz=ZoneInfo(str(data.get("tz", "UTC"))),
            role_ids=frozenset(int(r) for r in (roles if isinstance(roles, list) else []) if isinstance(r, int)),
            is_admin=data.get("is_admin") is True,
        )

    def resets(self, now: datetime) -> dict[Period, datetime]:
        """Return when each period holding `now` resets."""
        return {p: next_reset(now, p, self.tz) for p in Period}


class UsagePeriod(StrEnum):
    """The windows `/usage` reports over, each in the budget time zone."""

    TODAY = "today"
    YESTERDAY = "yesterday"
    THIS_MONTH = "this_month"
    LAST_MONTH = "last_month"
    LAST_7_DAYS = "last_7_days"


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)


def usage_window(name: UsagePeriod | str, now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Return the window [since, until) of a `/usage` period holding `now`, as aware UTC times.

    Days and months begin at midnight in `tz` (as the caps' periods do), so a window across a DST change is an hour
    shorter or longer than its count of days. `last_7_days` is today and the six days before it.

    Raises:
        ValueError: `name` is no `UsagePeriod`.
    """
    period = UsagePeriod(name)
    today = now.astimezone(tz).date()
    first = today.replace(day=1)
    days: dict[UsagePeriod, tuple[date, date]] = {
        UsagePeriod.TODAY: (today, today + timedelta(days=1)),
        UsagePeriod.YESTERDAY: (today - timedelta(days=1), today),
        UsagePeriod.THIS_MONTH: (first, (first + timedelta(days=32)).replace(day=1)),
        UsagePeriod.LAST_MONTH: ((first - timedelta(days=1)).replace(day=1), first),
        UsagePeriod.LAST_7_DAYS: (today - timedelta(days=6), today + timedelta(days=1)),
    }
    start, end = days[period]
    return _midnight(start, tz), _midnight(end, tz)


def day_window(first: date, last: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Return the window [since, until) from midnight of `first` to the midnight after `last`, in `tz`, as UTC.

    Raises:
        ValueError: `last` is before `first`.
    """
    if last < first:
        raise ValueError(f"the last day ({last}) is before the first ({first})")
    return _midnight(first, tz), _midnight(last + timedelta(days=1), tz)


class AmountError(ValueError):
    """A budget amount that cannot be read; its text says what is accepted."""


NO_CAP: Literal["none"] = "none"
DEFAULT_CAP: Literal["default"] = "default"
MAX_CAP_USD = Decimal(1_000_000)  # a cap above this is a typo, not a budget
_AMOUNT = re.compile(r"\$?(\d+)(?:\.(\d{1,6}))?")


def parse_amount(text: str) -> int | Literal["none", "default"]:
    """Read a cap as an admin types it: `5`, `$5`, `2.50` (micro-dollars), `none` (no cap) or `default`.

    Raises:
        AmountError: anything else (negative, words, exponents, thousands separators, more than six decimals, or
            more than `MAX_CAP_USD`).
    """
    cleaned = text.strip().lower().replace(" ", "")
    if cleaned == NO_CAP:
        return NO_CAP
    if cleaned == DEFAULT_CAP:
        return DEFAULT_CAP
    match = _AMOUNT.fullmatch(cleaned)
    if match is None:
        # Quoted as typed, but in one line without controls (bidi overrides included) nor a backtick that would
        # close the code span and let the rest render as markdown.
        shown = " ".join(strip_controls(text, replacement=" ").split()).replace("`", "'")[:40] or " "
        raise AmountError(
            f"`{shown}` isn't an amount. Give dollars like `5`, `$5` or `2.50`, `none` for no cap, "
            "or `default` for the settings' default."
        )
    value = Decimal(f"{match.group(1)}.{match.group(2) or '0'}")
    if value > MAX_CAP_USD:
        raise AmountError(f"A budget is at most {usd_text(micros(MAX_CAP_USD))}.")
    return micros(value)
