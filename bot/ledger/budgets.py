"""Budgets in the ledger: what was spent, what open jobs have reserved, the admins' caps and their audit trail.

`spent` is the one query every cap reads "spent so far" through. Until items record what Gemini charged for them,
an item's cost is the price table's (`worker.contract.model_spec(...).price`) for what was made: each made image
(a row of `images`, at its `created_at`) at its model, its own size and its job's mode (relax: the batch price).
A reservation counts for what of it its job has not spent yet, so a job's images are never counted twice.
"""

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from bot.core.budgets import (
    BudgetHold,
    Caps,
    Period,
    Refused,
    ScopeKind,
    Usage,
    check,
    micros,
    next_reset,
    period_start,
)
from bot.core.models import JobId
from bot.ledger._rows import db_time, json_object, opt_time, placeholders, req_time
from bot.ledger.connection import LedgerConnection
from worker.contract import model_spec

# Made images grouped by what decides their price; `{where}` filters images (alias im) and jobs (alias j).
_MADE_SQL = (
    "SELECT {keys} json_extract(j.params, '$.model') AS model,"
    " coalesce(json_extract(i.inputs, '$.image_size'), json_extract(j.params, '$.image_size')) AS size,"
    " coalesce(json_extract(j.params, '$.relax'), 0) AS relax, count(*) AS n"
    " FROM images im JOIN jobs j ON j.id = im.job_id JOIN items i ON i.job_id = im.job_id AND i.idx = im.idx"
    " WHERE {where} GROUP BY {keys} model, size, relax"
)


def _price(row: aiosqlite.Row) -> int:
    """Return the price-table cost of a group of made images (an unknown price counts as free, as the plan does)."""
    usd = model_spec(str(row["model"])).price(
        None if row["size"] is None else str(row["size"]), batch=bool(row["relax"])
    )
    return int(row["n"]) * (0 if usd is None else micros(usd))


@dataclass(frozen=True, slots=True, kw_only=True)
class CapRow:
    """An admin's cap for one scope and period (`usd_micros` None: no cap), and who set it when."""

    scope: ScopeKind
    scope_id: int
    period: Period
    usd_micros: int | None
    set_by: int
    set_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class CapChange:
    """One change of a cap: the cap before and after (None: none), who changed it and when."""

    scope: ScopeKind
    scope_id: int
    period: Period
    old: int | None
    new: int | None
    by: int
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class SpendRow:
    """What one user spent in one guild (None: direct messages or the CLI) over a period, and how many images."""

    owner_id: int
    guild_id: int | None
    usd_micros: int
    images: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    """A job's reserved estimate: what it reserved, what it has spent, and (once its job ended) when it settled."""

    job_id: JobId
    owner_id: int
    guild_id: int | None
    amount: int
    spent: int
    settled_at: datetime | None

    @property
    def outstanding(self) -> int:
        """What still counts against the caps beside what was spent (nothing once settled)."""
        return 0 if self.settled_at is not None else max(0, self.amount - self.spent)


def _scope_where(owner_id: int | None, guild_id: int | None) -> tuple[list[str], list[object]]:
    where, params = list[str](), list[object]()
    if owner_id is not None:
        where.append("j.owner_id = ?")
        params.append(owner_id)
    if guild_id is not None:
        where.append("j.guild_id = ?")
        params.append(guild_id)
    return where, params


async def _rows(db: aiosqlite.Connection, sql: str, params: Sequence[object]) -> list[aiosqlite.Row]:
    async with db.execute(sql, params) as cur:
        return list(await cur.fetchall())


async def spent_in(
    db: aiosqlite.Connection, *, owner_id: int | None, guild_id: int | None, since: datetime, until: datetime
) -> int:
    """Return the micro-dollars spent by a user and/or in a guild (None: any) in [since, until)."""
    where, params = _scope_where(owner_id, guild_id)
    where += ["im.created_at >= ?", "im.created_at < ?"]
    params += [db_time(since), db_time(until)]
    sql = _MADE_SQL.format(keys="", where=" AND ".join(where))
    return sum(_price(row) for row in await _rows(db, sql, params))


async def _job_spent(db: aiosqlite.Connection, job_ids: Sequence[str]) -> dict[str, int]:
    if not job_ids:
        return {}
    sql = _MADE_SQL.format(keys="im.job_id,", where=f"im.job_id IN ({placeholders(job_ids)})")
    spent: dict[str, int] = {}
    for row in await _rows(db, sql, job_ids):
        spent[str(row["job_id"])] = spent.get(str(row["job_id"]), 0) + _price(row)
    return spent


async def reservations_in(
    db: aiosqlite.Connection,
    *,
    owner_id: int | None = None,
    guild_id: int | None = None,
    open_only: bool = True,
    job_ids: Sequence[str] | None = None,
) -> list[Reservation]:
    """Return reservations (open ones only by default) with what each job has spent."""
    where, params = _scope_where(owner_id, guild_id)
    where = [w.replace("j.", "r.") for w in where]
    if open_only:
        where.append("r.settled_at IS NULL")
    if job_ids is not None:
        where.append(f"r.job_id IN ({placeholders(job_ids)})")
        params += list(job_ids)
    rows = await _rows(
        db,
        f"SELECT * FROM budget_reservations r WHERE {' AND '.join(where) or '1 = 1'}",  # noqa: S608 (placeholders)
        params,
    )
    spent = await _job_spent(db, [str(r["job_id"]) for r in rows])
    return [
        Reservation(
            job_id=JobId(str(r["job_id"])),
            owner_id=int(r["owner_id"]),
            guild_id=None if r["guild_id"] is None else int(r["guild_id"]),
            amount=int(r["amount"]),
            spent=int(r["settled"]) if r["settled"] is not None else spent.get(str(r["job_id"]), 0),
            settled_at=opt_time(r["settled_at"]),
        )
        for r in rows
    ]


async def usage_in(
    db: aiosqlite.Connection,
    *,
    owner_id: int,
    guild_id: int | None,
    now: datetime,
    hold: BudgetHold,
    except_job: str | None = None,
) -> Usage:
    """Return spent plus outstanding reservations per whose spend (user, guild) and period at `now`.

    `except_job`'s own reservation is left out (a running job asking whether it may go on).
    """
    used: dict[tuple[ScopeKind, Period], int] = {}
    scopes = [(ScopeKind.USER, owner_id, None), *([(ScopeKind.GUILD, None, guild_id)] if guild_id is not None else [])]
    for kind, owner, guild in scopes:
        open_ = await reservations_in(db, owner_id=owner, guild_id=guild)
        outstanding = sum(r.outstanding for r in open_ if r.job_id != except_job)
        for period in Period:
            start, end = period_start(now, period, hold.tz), next_reset(now, period, hold.tz)
            spent = await spent_in(db, owner_id=owner, guild_id=guild, since=start, until=end)
            used[(kind, period)] = spent + outstanding
    return used


async def refusal_in(
    db: aiosqlite.Connection, *, owner_id: int, guild_id: int | None, hold: BudgetHold, now: datetime
) -> Refused | None:
    """Return why `hold`'s cost does not fit under its caps now, or None when it does (inside a transaction)."""
    if not hold.limits:
        return None
    used = await usage_in(db, owner_id=owner_id, guild_id=guild_id, now=now, hold=hold)
    decision = check(hold.cost, hold.limits, used, hold.resets(now))
    return decision if isinstance(decision, Refused) else None


async def reserve_in(
    db: aiosqlite.Connection, job_id: str, *, owner_id: int, guild_id: int | None, hold: BudgetHold, now: datetime
) -> None:
    """Reserve `hold`'s cost for the job just created (in its transaction, after `refusal_in` let it through)."""
    await db.execute(
        "INSERT INTO budget_reservations (job_id, owner_id, guild_id, amount, limits, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id) DO NOTHING",
        (job_id, owner_id, guild_id, hold.cost, json.dumps(hold.to_json()), db_time(now)),
    )


class BudgetsMixin(LedgerConnection):
    """Spend, reservations and caps."""

    async def budget_spent(
        self, *, owner_id: int | None = None, guild_id: int | None = None, since: datetime, until: datetime
    ) -> int:
        """Return the micro-dollars spent by a user and/or in a guild (None: everyone, every guild) in [since, until).

        The one "spent so far" every cap reads: for now the price table's cost of the images made (`_MADE_SQL`).
        The recorded costs (`SpendMixin.spent`: each item's billed usage and RunPod seconds) are to replace this
        body, `spent_in` and `spend_rows` next, without changing their callers.
        """
        async with self._lock:
            return await spent_in(self._db, owner_id=owner_id, guild_id=guild_id, since=since, until=until)

    async def budget_usage(
        self, *, owner_id: int, guild_id: int | None, now: datetime, hold: BudgetHold, except_job: str | None = None
    ) -> Usage:
        """Return spent plus outstanding reservations of a user and a guild, per period (see `usage_in`)."""
        async with self._lock:
            return await usage_in(
                self._db, owner_id=owner_id, guild_id=guild_id, now=now, hold=hold, except_job=except_job
            )

    async def reservation(self, job_id: JobId) -> tuple[Reservation, BudgetHold] | None:
        """Return a job's reservation and the caps it was admitted under, or None when it reserved nothing."""
        async with self._lock:
            rows = await _rows(self._db, "SELECT limits FROM budget_reservations WHERE job_id = ?", (job_id,))
            if not rows:
                return None
            found = await reservations_in(self._db, open_only=False, job_ids=[job_id])
        return found[0], BudgetHold.from_json(json_object(rows[0]["limits"]))

    async def items_in_flight(self, job_id: JobId) -> int:
        """Return how many of a job's items are out with a worker (sent, no verdict yet)."""
        row = await self._one("SELECT count(*) FROM items WHERE job_id = ? AND status = 'submitted'", (job_id,))
        return 0 if row is None else int(row[0])

    async def open_reservations(self) -> list[Reservation]:
        """Return every reservation not settled yet."""
        async with self._lock:
            return await reservations_in(self._db)

    async def settle_reservations(self, *, now: datetime) -> list[Reservation]:
        """Settle the reservations of finished jobs at what they spent; return those settled now."""
        async with self._tx() as db:
            rows = await _rows(
                db,
                "SELECT r.job_id FROM budget_reservations r JOIN jobs j ON j.id = r.job_id"
                " WHERE r.settled_at IS NULL AND j.status IN ('done', 'failed', 'cancelled')",
                (),
            )
            ended = await reservations_in(db, job_ids=[str(r["job_id"]) for r in rows]) if rows else []
            for r in ended:
                await db.execute(
                    "UPDATE budget_reservations SET settled_at = ?, settled = ? WHERE job_id = ?",
                    (db_time(now), r.spent, r.job_id),
                )
        return [dataclasses.replace(r, settled_at=now) for r in ended]

    async def budget_caps(self) -> list[CapRow]:
        """Return every cap admins have set."""
        rows = await self._all("SELECT * FROM budget_caps ORDER BY scope_kind, scope_id, period")
        return [
            CapRow(
                scope=ScopeKind(str(r["scope_kind"])),
                scope_id=int(r["scope_id"]),
                period=Period(str(r["period"])),
                usd_micros=None if r["usd_micros"] is None else int(r["usd_micros"]),
                set_by=int(r["set_by"]),
                set_at=req_time(r["set_at"]),
            )
            for r in rows
        ]

    async def set_budget_cap(
        self, scope: ScopeKind, scope_id: int, period: Period, usd_micros: int | None, *, by: int, now: datetime
    ) -> CapChange:
        """Set one cap (None: no cap, over any default) and record the change with who and when, in one transaction."""
        async with self._tx() as db:
            old = await _rows(
                db,
                "SELECT usd_micros FROM budget_caps WHERE scope_kind = ? AND scope_id = ? AND period = ?",
                (scope.value, scope_id, period.value),
            )
            before = None if not old or old[0][0] is None else int(old[0][0])
            await db.execute(
                "INSERT INTO budget_caps (scope_kind, scope_id, period, usd_micros, set_by, set_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope_kind, scope_id, period) DO UPDATE SET"
                " usd_micros = excluded.usd_micros, set_by = excluded.set_by, set_at = excluded.set_at",
                (scope.value, scope_id, period.value, usd_micros, by, db_time(now)),
            )
            await db.execute(
                "INSERT INTO budget_changes (scope_kind, scope_id, period, old_micros, new_micros, changed_by,"
                " changed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (scope.value, scope_id, period.value, before, usd_micros, by, db_time(now)),
            )
        return CapChange(scope=scope, scope_id=scope_id, period=period, old=before, new=usd_micros, by=by, at=now)

    async def budget_changes(self, *, limit: int = 50) -> list[CapChange]:
        """Return the latest cap changes, newest first."""
        rows = await self._all("SELECT * FROM budget_changes ORDER BY id DESC LIMIT ?", (limit,))
        return [
            CapChange(
                scope=ScopeKind(str(r["scope_kind"])),
                scope_id=int(r["scope_id"]),
                period=Period(str(r["period"])),
                old=None if r["old_micros"] is None else int(r["old_micros"]),
                new=None if r["new_micros"] is None else int(r["new_micros"]),
                by=int(r["changed_by"]),
                at=req_time(r["changed_at"]),
            )
            for r in rows
        ]

    async def spend_rows(self, *, since: datetime, until: datetime) -> list[SpendRow]:
        """Return what each user spent in each guild in [since, until), with their images, by guild then user."""
        sql = _MADE_SQL.format(keys="j.owner_id, j.guild_id,", where="im.created_at >= ? AND im.created_at < ?")
        totals: dict[tuple[int, int | None], tuple[int, int]] = {}
        for row in await self._all(sql, (db_time(since), db_time(until))):
            key = (int(row["owner_id"]), None if row["guild_id"] is None else int(row["guild_id"]))
            usd, images = totals.get(key, (0, 0))
            totals[key] = (usd + _price(row), images + int(row["n"]))
        return [
            SpendRow(owner_id=owner, guild_id=guild, usd_micros=usd, images=images)
            for (owner, guild), (usd, images) in sorted(totals.items(), key=lambda kv: (kv[0][1] or 0, kv[0][0]))
        ]


def overrides(rows: Sequence[CapRow], kind: ScopeKind, default: Callable[[int], Caps]) -> dict[int, Caps]:
    """Return the admins' caps of one kind of scope by id, each period they set over `default(id)`'s."""
    found: dict[int, Caps] = {}
    for row in rows:
        if row.scope is kind:
            found[row.scope_id] = found.get(row.scope_id, default(row.scope_id)).replacing(row.period, row.usd_micros)
    return found
