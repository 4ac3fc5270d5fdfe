"""Budgets in the ledger: what was spent, what open jobs have reserved, the admins' caps and their audit trail.

`spend_by` is the one definition of "spent" every cap, reservation, report and `Ledger.spent` reads: what was
recorded (an item's `cost_usd`, made or not, at its `spent_at`; a chunk's `runpod_cost_usd` at its `finished_at`;
each rounded to a whole micro-dollar), plus, for a made image with no recorded cost (a ledger older than migration
0007, or a model without token prices), the price table's estimate for its model, size and mode at its image's
`created_at`. A reservation counts for what of it its job has not spent yet, so nothing is counted twice.
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
from bot.core.models import JobId, JobParams
from bot.ledger._rows import db_time, json_object, opt_time, placeholders, req_time
from bot.ledger.connection import LedgerConnection
from bot.ledger.errors import BudgetRefusedError
from worker.contract import model_spec

# What was recorded as spent, per row in whole micro-dollars (rounded per row, so every sum of sums is exact): an
# item's `cost_usd` (its attempts' total, made or not: a blocked prompt's input tokens count) at its `spent_at`, a
# chunk's `runpod_cost_usd` at its `finished_at`. `{keys}` are the grouping columns (of `jobs`, alias j) followed by
# a comma, or nothing; `{items}` and `{chunks}` filter each side (" AND …").
_RECORDED_SQL = (
    "SELECT {keys} sum(CAST(round(i.cost_usd * 1000000) AS INTEGER)) AS gemini, 0 AS runpod,"
    " sum(i.status = 'ok') AS made, sum(i.status <> 'ok') AS not_made"
    " FROM items i JOIN jobs j ON j.id = i.job_id WHERE i.cost_usd IS NOT NULL{items}{group}"
    " UNION ALL SELECT {keys} 0, sum(CAST(round(c.runpod_cost_usd * 1000000) AS INTEGER)), 0, 0"
    " FROM chunks c JOIN jobs j ON j.id = c.job_id WHERE c.runpod_cost_usd IS NOT NULL{chunks}{group}"
)

# Made images with no recorded cost (a ledger older than migration 0007, or a model whose token prices the table
# does not know), grouped by what decides their estimate; each counts at its image's `created_at`.
_UNPRICED_SQL = (
    "SELECT {keys} json_extract(j.params, '$.model') AS model,"
    " coalesce(json_extract(i.inputs, '$.image_size'), json_extract(j.params, '$.image_size')) AS size,"
    " coalesce(json_extract(j.params, '$.relax'), 0) AS relax, count(*) AS n"
    " FROM items i JOIN jobs j ON j.id = i.job_id JOIN images im ON im.job_id = i.job_id AND im.idx = i.idx"
    " WHERE i.status = 'ok' AND i.cost_usd IS NULL{images} GROUP BY {keys} model, size, relax"
)


def _estimate(row: aiosqlite.Row) -> int:
    """Return the price table's cost of a group of made images (an unknown price counts as free, as the plan does)."""
    usd = model_spec(str(row["model"])).price(
        None if row["size"] is None else str(row["size"]), batch=bool(row["relax"])
    )
    return int(row["n"]) * (0 if usd is None else micros(usd))


@dataclass(slots=True)
class SpendTotals:
    """What one key (a user in a guild, a job, everything) spent: Gemini and RunPod micro-dollars, items counted."""

    gemini: int = 0
    runpod: int = 0
    made: int = 0
    not_made: int = 0

    @property
    def total(self) -> int:
        """Gemini and RunPod together, in micro-dollars."""
        return self.gemini + self.runpod


@dataclass(frozen=True, slots=True)
class SpendFilter:
    """Which spend to sum: one user's, one guild's, some jobs' (None: any), recorded in [since, until)."""

    owner_id: int | None = None
    guild_id: int | None = None
    job_ids: Sequence[str] | None = None
    since: datetime | None = None
    until: datetime | None = None

    def jobs(self) -> tuple[str, list[object]]:
        """Return the condition on `jobs` (alias j) as " AND …", and its parameters."""
        where, params = _scope_where(self.owner_id, self.guild_id)
        if self.job_ids is not None:
            where.append(f"j.id IN ({placeholders(self.job_ids)})")
            params += list(self.job_ids)
        return "".join(f" AND {w}" for w in where), params

    def times(self, column: str) -> tuple[str, list[object]]:
        """Return the condition keeping rows whose `column` time is in [since, until), as " AND …", and parameters."""
        where, params = "", list[object]()
        if self.since is not None:
            where += f" AND {column} >= ?"
            params.append(db_time(self.since))
        if self.until is not None:
            where += f" AND {column} < ?"
            params.append(db_time(self.until))
        return where, params


async def spend_by(
    db: aiosqlite.Connection, scope: SpendFilter, keys: Sequence[str] = ()
) -> dict[tuple[object, ...], SpendTotals]:
    """Return what was spent under `scope`, by the values of `keys` (columns of `jobs`, alias j; none: one total).

    The one definition of "spent" that the caps, reservations, reports and `SpendMixin.spent` read: every recorded
    cost (`_RECORDED_SQL`) and, for made images that have none, the price table's estimate (`_UNPRICED_SQL`), so
    an upgrade from a ledger that recorded no costs keeps everyone's spend.
    """
    key_sql = "".join(f"{k}, " for k in keys)
    group = f" GROUP BY {', '.join(keys)}" if keys else ""
    jobs, job_params = scope.jobs()
    item_times, item_params = scope.times("i.spent_at")
    chunk_times, chunk_params = scope.times("c.finished_at")
    image_times, image_params = scope.times("im.created_at")
    recorded = _RECORDED_SQL.format(keys=key_sql, items=jobs + item_times, chunks=jobs + chunk_times, group=group)
    unpriced = _UNPRICED_SQL.format(keys=key_sql, images=jobs + image_times)
    totals: dict[tuple[object, ...], SpendTotals] = {}

    def of(row: aiosqlite.Row) -> SpendTotals:
        return totals.setdefault(tuple(row[k] for k in range(len(keys))), SpendTotals())

    for row in await _rows(db, recorded, [*job_params, *item_params, *job_params, *chunk_params]):
        found = of(row)
        found.gemini += int(row["gemini"] or 0)
        found.runpod += int(row["runpod"] or 0)
        found.made += int(row["made"] or 0)
        found.not_made += int(row["not_made"] or 0)
    for row in await _rows(db, unpriced, [*job_params, *image_params]):
        found = of(row)
        found.gemini += _estimate(row)
        found.made += int(row["n"])
    return totals


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
    """What one user spent in one guild (None: direct messages or the CLI) over a period, in micro-dollars.

    `images` are the items made, `not_made` those billed without an image (a blocked prompt's input tokens, an
    attempt that failed after Gemini answered); `usd_micros` is `gemini_micros` plus `runpod_micros`.
    """

    owner_id: int
    guild_id: int | None
    images: int
    not_made: int
    gemini_micros: int
    runpod_micros: int
    usd_micros: int


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


def _int(value: object) -> int:
    """Return an INTEGER column's value read back from SQLite as the int it is."""
    assert isinstance(value, int)
    return value


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
    db: aiosqlite.Connection,
    *,
    owner_id: int | None,
    guild_id: int | None,
    since: datetime | None,
    until: datetime | None,
) -> int:
    """Return the micro-dollars spent by a user and/or in a guild (None: any) in [since, until) (`spend_by`)."""
    scope = SpendFilter(owner_id=owner_id, guild_id=guild_id, since=since, until=until)
    return sum(t.total for t in (await spend_by(db, scope)).values())


async def _job_spent(db: aiosqlite.Connection, job_ids: Sequence[str]) -> dict[str, int]:
    """Return what each job has spent so far, whenever (what of its reservation it has used)."""
    if not job_ids:
        return {}
    totals = await spend_by(db, SpendFilter(job_ids=job_ids), keys=("j.id",))
    return {str(key[0]): t.total for key, t in totals.items()}


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


async def reserve_again_in(
    db: aiosqlite.Connection, job_id: str, sizes: Sequence[str | None], *, now: datetime
) -> None:
    """Reserve again for items of an ended job put back to run ("Retry failed"), in the transaction reopening them.

    A job whose reservation settled (it had ended) reserves nothing any more, so its retried items would spend
    beside the caps: their price-table cost (each at its own size, None: the job's) is checked under the caps the
    job was admitted with, against what is spent and reserved now, and the reservation opens again at what the job
    has spent plus that cost. A job with an open reservation (still running) keeps it: its unspent estimate still
    counts, and the budget pass sizes its chunks to the money left.

    Raises:
        BudgetRefusedError: the retried items do not fit under a cap (the transaction rolls back).
    """
    rows = await _rows(
        db,
        "SELECT r.owner_id, r.guild_id, r.limits, r.settled, j.params FROM budget_reservations r"
        " JOIN jobs j ON j.id = r.job_id WHERE r.job_id = ? AND r.settled_at IS NOT NULL",
        (job_id,),
    )
    if not rows or not sizes:
        return
    row = rows[0]
    params = JobParams.from_json(json_object(row["params"]))
    spec = model_spec(params.model)
    prices = (spec.price(size or params.image_size, batch=params.relax) for size in sizes)
    hold = BudgetHold.from_json(json_object(row["limits"]), cost=sum(0 if p is None else micros(p) for p in prices))
    owner_id, guild_id = int(row["owner_id"]), None if row["guild_id"] is None else int(row["guild_id"])
    refused = await refusal_in(db, owner_id=owner_id, guild_id=guild_id, hold=hold, now=now)
    if refused is not None:
        raise BudgetRefusedError(refused, tz=hold.tz)
    await db.execute(
        "UPDATE budget_reservations SET amount = ?, settled_at = NULL, settled = NULL WHERE job_id = ?",
        (int(row["settled"] or 0) + hold.cost, job_id),
    )


class BudgetsMixin(LedgerConnection):
    """Spend, reservations and caps."""

    async def budget_spent(
        self, *, owner_id: int | None = None, guild_id: int | None = None, since: datetime, until: datetime
    ) -> int:
        """Return the micro-dollars spent by a user and/or in a guild (None: everyone, every guild) in [since, until).

        The one "spent so far" every cap reads (`spend_by`): what was recorded (items' Gemini costs at their
        `spent_at`, chunks' RunPod costs at their `finished_at`), and made images with no recorded cost at the
        price table's estimate.
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
        """Return what each user spent in each guild in [since, until) (`spend_by`), by guild then user."""
        async with self._lock:
            totals = await spend_by(self._db, SpendFilter(since=since, until=until), keys=("j.owner_id", "j.guild_id"))
        rows = [
            SpendRow(
                owner_id=_int(owner),
                guild_id=None if guild is None else _int(guild),
                images=t.made,
                not_made=t.not_made,
                gemini_micros=t.gemini,
                runpod_micros=t.runpod,
                usd_micros=t.total,
            )
            for (owner, guild), t in totals.items()
        ]
        return sorted(rows, key=lambda r: (r.guild_id or 0, r.owner_id))


def overrides(rows: Sequence[CapRow], kind: ScopeKind, default: Callable[[int], Caps]) -> dict[int, Caps]:
    """Return the admins' caps of one kind of scope by id, each period they set over `default(id)`'s."""
    found: dict[int, Caps] = {}
    for row in rows:
        if row.scope is kind:
            found[row.scope_id] = found.get(row.scope_id, default(row.scope_id)).replacing(row.period, row.usd_micros)
    return found
