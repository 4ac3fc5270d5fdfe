"""Budgets as a service: the gates and caps a request must pass, admins' caps, and what everyone spent.

The rules are `bot.core.budgets`'s; the settings give the defaults (`BotSettings.budget_config`) and admins' caps
stored in the ledger override them per user, role or guild. A request is checked here before anything is queued
(`check_plan`: gates, then the caps against spend and reservations now, for a message naming the cap), and the
`BudgetHold` it returns travels with the job to the ledger, which checks it again and reserves it in the job's own
transaction, so two requests at once cannot both take the last of a cap.
"""

import asyncio
import contextlib
import csv
import io
from collections.abc import AsyncIterator, Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from bot.app.batchplan import BatchPlan
from bot.core.budget_rules import AuditEntry, RoleGates
from bot.core.budgets import (
    DEFAULT_CAP,
    NO_CAP,
    BudgetConfig,
    BudgetHold,
    Caps,
    Limit,
    Period,
    Refused,
    RoleRule,
    ScopeKind,
    check,
    gate_refusal,
    micros,
    next_reset,
    period_start,
    room,
    usage_window,
)
from bot.core.clock import Clock, SystemClock
from bot.core.models import JobKind, JobRequest, NewItem
from bot.errors import UserFacingError
from bot.ledger import Ledger
from bot.ledger.budgets import CapChange, CapRow, SpendRow, overrides
from bot.settings import BotSettings
from worker.contract import model_spec

BUDGET_TITLE = "Budget reached"
GATE_TITLE = "Not allowed here"
CSV_HEADER = ("user_id", "guild_id", "images", "not_made", "gemini_usd", "runpod_usd", "usd")


class BudgetError(UserFacingError):
    """A request a budget refuses: a cap it would exceed (`refused`), or a role gate (`refused` None)."""

    def __init__(self, user_message: str, *, title: str = BUDGET_TITLE, refused: Refused | None = None) -> None:
        super().__init__(user_message, title=title)
        self.refused = refused


@dataclass(frozen=True, slots=True, kw_only=True)
class CapStatus:
    """One cap that applies to someone, what counts against it now (spent and reserved), and when it resets."""

    scope: ScopeKind
    period: Period
    cap: int
    used: int
    resets_at: datetime

    @property
    def remaining(self) -> int:
        """What may still be spent under this cap (never below zero)."""
        return max(0, self.cap - self.used)


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetView:
    """What `/info` shows of a user's budgets: their spend today and this month, and every cap that applies."""

    spent_today: int
    spent_month: int
    caps: tuple[CapStatus, ...]
    remaining: int | None  # what the tightest cap leaves (None: no cap applies)

    def tightest(self, period: Period | None = None) -> CapStatus | None:
        """Return the cap (of `period`, or of any) that leaves the least, the daily one on a tie; None: no cap."""
        caps = [c for c in self.caps if period is None or c.period is period]
        return min(caps, key=lambda c: (c.cap - c.used, c.period is not Period.DAY), default=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class CapSetting:
    """One cap of a scope as in force: its amount (None: no cap) and who set it when (None: the settings)."""

    period: Period
    cap: int | None
    set_by: int | None = None
    set_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetShow:
    """What `/budget show` tells of a user, role or guild: its caps, a user's spend, a role's gates, the changes."""

    scope: ScopeKind
    scope_id: int
    caps: tuple[CapSetting, ...]
    view: BudgetView | None = None  # a user's spend and what remains under every cap that applies to them
    rule: RoleRule | None = None  # a role's gates as in force
    changes: tuple[AuditEntry, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageReport:
    """What was spent in a window: in all, per guild (None: DMs and the CLI), per user, and as CSV."""

    since: datetime
    until: datetime
    total: int
    images: int
    by_guild: tuple[tuple[int | None, int], ...]  # (guild, micro-dollars), most first
    by_user: tuple[tuple[int, int], ...]  # (user, micro-dollars), most first
    csv: str


def request_cost(request: JobRequest) -> int:
    """Return the price table's cost of everything a request would make, each item at its own size and mode."""
    spec = model_spec(request.params.model)
    items: Iterable[NewItem] = request.items or [NewItem() for _ in range(request.params.n)]
    total = 0
    for item in items:
        price = spec.price(item.inputs.image_size or request.params.image_size, batch=request.params.relax)
        total += 0 if price is None else micros(price)
    return total


def plan_cost(plan: BatchPlan) -> int:
    """Return the price table's cost of a batch plan's every item (its own size; relax: the batch price)."""
    spec = model_spec(plan.params.model)
    prices = (spec.price(item.image_size or plan.params.image_size, batch=plan.relax) for item in plan.items)
    return sum(0 if price is None else micros(price) for price in prices)


def _setting(period: Period, row: CapRow | None, defaults: Caps) -> CapSetting:
    if row is None:
        return CapSetting(period=period, cap=defaults.of(period))
    return CapSetting(period=period, cap=row.usd_micros, set_by=row.set_by, set_at=row.set_at)


class BudgetService:
    """Checks requests against the budgets, and lets admins set caps and read what was spent."""

    def __init__(self, ledger: Ledger, defaults: BudgetConfig, *, clock: Clock | None = None) -> None:
        """Build the service over the ledger, with the settings' caps and role rules as the defaults."""
        self._ledger = ledger
        self._defaults = defaults
        self._clock = clock or SystemClock()

    @property
    def tz(self) -> ZoneInfo:
        """Return the zone budget days and months begin in (`BUDGET_TIMEZONE`)."""
        return self._defaults.tz

    async def config(self) -> BudgetConfig:
        """Return the caps in force: the settings' defaults with every cap admins have set over them."""
        rows = await self._ledger.budget_caps()
        base = self._defaults
        roles: dict[int, RoleRule] = dict(base.roles)
        for role_id, caps in overrides(rows, ScopeKind.ROLE, lambda r: base.roles.get(r, RoleRule()).caps).items():
            roles[role_id] = replace(roles.get(role_id, RoleRule()), caps=caps)
        for role_id, gates in (await self._ledger.role_gates()).items():
            roles[role_id] = gates.apply(roles.get(role_id, RoleRule()))
        return replace(
            base,
            roles=roles,
            user_overrides=overrides(rows, ScopeKind.USER, lambda _: base.user),
            guild_overrides=overrides(rows, ScopeKind.GUILD, lambda _: base.guild),
        )

    async def check_plan(
        self,
        *,
        owner_id: int,
        guild_id: int | None,
        role_ids: Collection[int],
        is_admin: bool,
        cost: int,
        model: str,
        image_sizes: Collection[str | None],
        items: int,
        batch: bool,
        caps: bool = True,
    ) -> BudgetHold:
        """Check a request's gates and (unless `caps` is False: a plan shows them instead) caps now.

        Returns the hold its job is created with.

        Raises:
            BudgetError: a role gate refuses it (which and why), or its cost would take a cap over (which cap,
                the spend so far, the cost and when the cap resets).
        """
        config = await self.config()
        if not is_admin:
            rule = config.role_rule(role_ids)
            for size in sorted(set(image_sizes), key=str) or [None]:
                refusal = gate_refusal(rule, batch=batch, model=model, image_size=size, items=items)
                if refusal is not None:
                    raise BudgetError(refusal, title=GATE_TITLE)
        limits = config.limits(user_id=owner_id, guild_id=guild_id, role_ids=role_ids, is_admin=is_admin)
        hold = BudgetHold(cost=cost, limits=limits, tz=config.tz, role_ids=frozenset(role_ids), is_admin=is_admin)
        if limits and caps:
            now = self._clock.now()
            used = await self._ledger.budget_usage(owner_id=owner_id, guild_id=guild_id, now=now, hold=hold)
            decision = check(cost, limits, used, hold.resets(now))
            if isinstance(decision, Refused):
                raise BudgetError(decision.message(config.tz), refused=decision)
        return hold

    async def limits_now(
        self, *, owner_id: int, guild_id: int | None, role_ids: frozenset[int], is_admin: bool
    ) -> tuple[tuple[Limit, ...], ZoneInfo]:
        """Return the caps in force now for a running job's owner (the dispatcher's `CapsInForce`), and the zone.

        Admins' changes since the job was admitted count: a cap lowered while a batch runs pauses it at the new cap.
        """
        config = await self.config()
        return config.limits(user_id=owner_id, guild_id=guild_id, role_ids=role_ids, is_admin=is_admin), config.tz

    async def hold_for(self, request: JobRequest) -> JobRequest:
        """Return `request` with its budget hold, checked now (its cost from the price table).

        Raises:
            BudgetError: as `check_plan`.
        """
        if request.idempotency_key is not None and await self._ledger.find_job(request.idempotency_key) is not None:
            return request  # a redelivered request: the ledger answers with the job it made the first time
        return replace(request, budget=await self._check_request(request, cost=request_cost(request)))

    async def check_total(self, requests: Collection[JobRequest]) -> None:
        """Check several requests of one user together (an /imagine's permutations): gates each, caps on the sum.

        Raises:
            BudgetError: as `check_plan`, for the first gate refused or for the total cost.
        """
        for request in requests:
            await self._check_request(request, cost=0)
        first = next(iter(requests), None)
        if first is not None:
            await self._check_request(first, cost=sum(request_cost(r) for r in requests))

    async def _check_request(self, request: JobRequest, *, cost: int) -> BudgetHold:
        items = list(request.items) or [NewItem() for _ in range(request.params.n)]
        return await self.check_plan(
            owner_id=request.owner_id,
            guild_id=request.guild_id,
            role_ids=request.role_ids,
            is_admin=request.is_admin,
            cost=cost,
            model=request.params.model,
            image_sizes={item.inputs.image_size or request.params.image_size for item in items},
            items=len(items),
            batch=request.kind is JobKind.BATCH,
        )

    async def view(
        self, *, user_id: int, guild_id: int | None, role_ids: Collection[int], is_admin: bool = False
    ) -> BudgetView:
        """Return a user's spend today and this month, and every cap that applies with what remains of it."""
        config = await self.config()
        limits = config.limits(user_id=user_id, guild_id=guild_id, role_ids=role_ids, is_admin=is_admin)
        now = self._clock.now()
        hold = BudgetHold(cost=0, limits=limits, tz=config.tz)
        used = await self._ledger.budget_usage(owner_id=user_id, guild_id=guild_id, now=now, hold=hold)
        resets = hold.resets(now)
        spent = {
            period: await self._ledger.budget_spent(
                owner_id=user_id, since=period_start(now, period, config.tz), until=next_reset(now, period, config.tz)
            )
            for period in Period
        }
        return BudgetView(
            spent_today=spent[Period.DAY],
            spent_month=spent[Period.MONTH],
            caps=tuple(
                CapStatus(
                    scope=lim.scope,
                    period=lim.period,
                    cap=lim.cap,
                    used=used.get((lim.counts, lim.period), 0),
                    resets_at=resets[lim.period],
                )
                for lim in limits
            ),
            remaining=None if (left := room(limits, used)) is None else max(0, left),
        )

    async def set_cap(
        self, scope: ScopeKind, scope_id: int, period: Period, usd: Decimal | None, *, by: int, is_admin: bool
    ) -> CapChange:
        """Set one cap in USD (None: no cap, over the settings' default), recorded with who and when.

        Raises:
            BudgetError: `by` is no Peel admin, or the amount is negative.
        """
        if not is_admin:
            raise BudgetError("Only Peel admins can change budgets.", title=GATE_TITLE)
        if usd is not None and usd < 0:
            raise BudgetError("A budget can't be negative; give 0 to stop all spending.", title="Invalid budget")
        amount = None if usd is None else micros(usd)
        return await self._ledger.set_budget_cap(scope, scope_id, period, amount, by=by, now=self._clock.now())

    async def changes(self, *, limit: int = 20) -> list[CapChange]:
        """Return the latest cap changes, newest first (who, when, before and after)."""
        return await self._ledger.budget_changes(limit=limit)

    def require_admin(self, is_admin: bool) -> None:
        """Refuse a user who is no Peel admin.

        Raises:
            BudgetError: they are not.
        """
        if not is_admin:
            raise BudgetError("Only Peel admins can change budgets.", title=GATE_TITLE)

    async def change_cap(
        self,
        scope: ScopeKind,
        scope_id: int,
        period: Period,
        amount: int | Literal["none", "default"],
        *,
        by: int,
        is_admin: bool,
    ) -> AuditEntry:
        """Set one cap: micro-dollars, `none` (no cap) or `default` (the settings'), recorded with who and when.

        Raises:
            BudgetError: `by` is no Peel admin, or the amount is negative.
        """
        self.require_admin(is_admin)
        if isinstance(amount, int) and amount < 0:
            raise BudgetError("A budget can't be negative; give 0 to stop all spending.", title="Invalid budget")
        value = amount if isinstance(amount, int) else (None if amount == NO_CAP else DEFAULT_CAP)
        return await self._ledger.change_budget_cap(scope, scope_id, period, value, by=by, now=self._clock.now())

    async def set_gates(self, role_id: int, gates: RoleGates, *, by: int, is_admin: bool) -> list[AuditEntry]:
        """Set a role's gates (those `gates` sets) over `BUDGET_ROLES`, recorded; return what changed.

        Raises:
            BudgetError: `by` is no Peel admin, or a batch size is negative.
        """
        self.require_admin(is_admin)
        if gates.max_batch_items is not None and gates.max_batch_items < 0:
            raise BudgetError("A batch size can't be negative; give 0 for no limit.", title="Invalid budget")
        return await self._ledger.set_role_gates(role_id, gates, by=by, now=self._clock.now())

    async def show(
        self,
        scope: ScopeKind,
        scope_id: int,
        *,
        guild_id: int | None = None,
        role_ids: Collection[int] = (),
        is_admin: bool = False,
        changes: int = 5,
    ) -> BudgetShow:
        """Return a scope's caps in force and where each comes from, and its latest `changes`.

        For a user also their spend and what remains (in `guild_id`, with their roles and admin standing); for a role
        its gates as in force.
        """
        config = await self.config()
        rows = {
            row.period: row
            for row in await self._ledger.budget_caps()
            if (row.scope, row.scope_id) == (scope, scope_id)
        }
        defaults = {
            ScopeKind.USER: config.user,
            ScopeKind.GUILD: config.guild,
            ScopeKind.ROLE: self._defaults.roles.get(scope_id, RoleRule()).caps,
        }[scope]
        caps = tuple(_setting(period, rows.get(period), defaults) for period in Period)
        view = None
        if scope is ScopeKind.USER:
            view = await self.view(user_id=scope_id, guild_id=guild_id, role_ids=role_ids, is_admin=is_admin)
        rule = config.roles.get(scope_id, RoleRule()) if scope is ScopeKind.ROLE else None
        audit = await self._ledger.budget_audit(scope=scope, scope_id=scope_id, limit=changes)
        return BudgetShow(scope=scope, scope_id=scope_id, caps=caps, view=view, rule=rule, changes=tuple(audit))

    async def room_for(
        self, *, owner_id: int, guild_id: int | None, role_ids: Collection[int], is_admin: bool
    ) -> CapStatus | None:
        """Return the cap that leaves a user the least now (spent and reserved counted); None: no cap applies."""
        view = await self.view(user_id=owner_id, guild_id=guild_id, role_ids=role_ids, is_admin=is_admin)
        return view.tightest()

    def window(self, period: str) -> tuple[datetime, datetime]:
        """Return the [since, until) of a `/usage` period (`bot.core.budgets.UsagePeriod`) now, in the budget zone.

        Raises:
            ValueError: an unknown period.
        """
        return usage_window(period, self._clock.now(), self._defaults.tz)

    async def usage(self, *, since: datetime, until: datetime) -> UsageReport:
        """Return what was spent in [since, until): the total, per guild and per user (most first), and the CSV."""
        rows = await self.spend_report(since=since, until=until)
        guilds: dict[int | None, int] = {}
        users: dict[int, int] = {}
        for row in rows:
            guilds[row.guild_id] = guilds.get(row.guild_id, 0) + row.usd_micros
            users[row.owner_id] = users.get(row.owner_id, 0) + row.usd_micros
        return UsageReport(
            since=since,
            until=until,
            total=sum(row.usd_micros for row in rows),
            images=sum(row.images for row in rows),
            by_guild=tuple(sorted(guilds.items(), key=lambda kv: (-kv[1], kv[0] or 0))),
            by_user=tuple(sorted(users.items(), key=lambda kv: (-kv[1], kv[0]))),
            csv=await self.usage_csv(since=since, until=until),
        )

    async def spend_report(self, *, since: datetime, until: datetime) -> list[SpendRow]:
        """Return what each user spent in each guild in [since, until), as the caps count it (`Ledger.spend_rows`).

        Per row: images made, items billed without one, Gemini's and RunPod's micro-dollars and their sum.
        """
        return await self._ledger.spend_rows(since=since, until=until)

    async def usage_csv(self, *, since: datetime, until: datetime) -> str:
        """Return `spend_report` as CSV: `user_id,guild_id,images,not_made,gemini_usd,runpod_usd,usd`.

        Amounts in USD to the micro-dollar (6 places, exact: the ledger sums whole micro-dollars); a direct
        message's or the CLI's guild is empty.
        """
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for row in await self.spend_report(since=since, until=until):
            writer.writerow(
                (
                    row.owner_id,
                    "" if row.guild_id is None else row.guild_id,
                    row.images,
                    row.not_made,
                    _usd(row.gemini_micros),
                    _usd(row.runpod_micros),
                    _usd(row.usd_micros),
                )
            )
        return out.getvalue()


def _usd(amount: int) -> str:
    """Return micro-dollars as USD with 6 places, exactly."""
    return f"{Decimal(amount) / 1_000_000:.6f}"


@contextlib.asynccontextmanager
async def open_budget_reports(settings: BotSettings) -> AsyncIterator[BudgetService]:
    """Open the ledger alone and yield its budgets service, for reading what was spent (`python -m bot usage`).

    No back end, worker or web server starts: the report reads the ledger and nothing else.

    Raises:
        UserFacingError: there is no ledger at the settings' path (nothing was ever recorded there).
        LedgerDamagedError: the ledger fails its check.
    """
    path = settings.resolved_ledger_path
    if not await asyncio.to_thread(path.exists):
        raise UserFacingError(f"no ledger at {path}: give --data (or DATA_DIR, LEDGER_PATH) of the bot's data")
    ledger = await Ledger.open(path)
    try:
        yield BudgetService(ledger, settings.budget_config())
    finally:
        await ledger.close()
