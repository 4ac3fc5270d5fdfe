"""Budgets set by admins from Discord: role gates over `BUDGET_ROLES`, caps put back to default, one audit trail.

The caps themselves live in `budget_caps` (`bot.ledger.budgets`); this module changes them too, so that a cap put
back to the settings' default (its row removed) is recorded as such (`budget_changes.new_default`), and reads the
changes of caps and gates as one trail, newest first.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import aiosqlite

from bot.core.budget_rules import AuditEntry, Gate, RoleGates
from bot.core.budgets import DEFAULT_CAP, Period, ScopeKind
from bot.ledger._rows import db_time, req_time
from bot.ledger.connection import LedgerConnection

NO_CAP_TEXT = "none"  # an audit entry's cap that is no cap (an override with a NULL amount)
_GATE_COLUMNS = {gate: gate.value for gate in Gate}  # a gate's column in budget_role_rules is its name


async def _rows(db: aiosqlite.Connection, sql: str, params: Sequence[object]) -> list[aiosqlite.Row]:
    async with db.execute(sql, params) as cur:
        return list(await cur.fetchall())


def _stored(value: str | None, gate: Gate) -> object:
    """Return a gate's canonical text as its column stores it."""
    if value is None or gate is Gate.MODELS:
        return value
    if gate is Gate.MAX_BATCH_ITEMS:
        return int(value)
    return int(value == "true")


def _gates_of(row: aiosqlite.Row) -> RoleGates:
    batch, allow_4k, most = row["batch"], row["allow_4k"], row["max_batch_items"]
    return RoleGates(
        batch=None if batch is None else bool(batch),
        models=None if row["models"] is None else str(row["models"]),
        allow_4k=None if allow_4k is None else bool(allow_4k),
        max_batch_items=None if most is None else int(most),
    )


def _cap_text(micros: object, is_default: object) -> str | None:
    if is_default:
        return None
    return NO_CAP_TEXT if micros is None else str(int(str(micros)))


class BudgetRulesMixin(LedgerConnection):
    """Role gates and caps set by admins, with their audit trail."""

    async def role_gates(self) -> dict[int, RoleGates]:
        """Return the gates admins have set, by role id."""
        rows = await self._all("SELECT * FROM budget_role_rules ORDER BY role_id")
        return {int(r["role_id"]): _gates_of(r) for r in rows}

    async def set_role_gates(self, role_id: int, gates: RoleGates, *, by: int, now: datetime) -> list[AuditEntry]:
        """Set the gates `gates` sets for a role (the others stay), recording each change; return the changes."""
        async with self._tx() as db:
            found = await _rows(db, "SELECT * FROM budget_role_rules WHERE role_id = ?", (role_id,))
            before = _gates_of(found[0]) if found else RoleGates()
            after = before.merged(gates)
            changes = [
                AuditEntry(scope=ScopeKind.ROLE, scope_id=role_id, what=gate.value, old=old, new=new, by=by, at=now)
                for (gate, old), new in zip(before.values().items(), after.values().values(), strict=True)
                if old != new
            ]
            if not changes:
                return []
            values = after.values()
            await db.execute(
                "INSERT INTO budget_role_rules (role_id, batch, models, allow_4k, max_batch_items, set_by, set_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (role_id) DO UPDATE SET batch = excluded.batch,"
                " models = excluded.models, allow_4k = excluded.allow_4k,"
                " max_batch_items = excluded.max_batch_items, set_by = excluded.set_by, set_at = excluded.set_at",
                (role_id, *(_stored(values[g], g) for g in Gate), by, db_time(now)),
            )
            await db.executemany(
                "INSERT INTO budget_rule_changes (role_id, gate, old_value, new_value, changed_by, changed_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(role_id, c.what, c.old, c.new, by, db_time(now)) for c in changes],
            )
        return changes

    async def change_budget_cap(
        self,
        scope: ScopeKind,
        scope_id: int,
        period: Period,
        amount: int | Literal["default"] | None,
        *,
        by: int,
        now: datetime,
    ) -> AuditEntry:
        """Set one cap (micro-dollars; None: no cap) or put it back to the settings' default, and record it."""
        key = (scope.value, scope_id, period.value)
        async with self._tx() as db:
            found = await _rows(
                db, "SELECT usd_micros FROM budget_caps WHERE scope_kind = ? AND scope_id = ? AND period = ?", key
            )
            old = _cap_text(found[0][0], False) if found else None
            to_default = amount == DEFAULT_CAP
            if to_default:
                await db.execute("DELETE FROM budget_caps WHERE scope_kind = ? AND scope_id = ? AND period = ?", key)
            else:
                await db.execute(
                    "INSERT INTO budget_caps (scope_kind, scope_id, period, usd_micros, set_by, set_at)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope_kind, scope_id, period) DO UPDATE SET"
                    " usd_micros = excluded.usd_micros, set_by = excluded.set_by, set_at = excluded.set_at",
                    (*key, amount, by, db_time(now)),
                )
            new_micros = None if to_default or amount is None else amount
            await db.execute(
                "INSERT INTO budget_changes (scope_kind, scope_id, period, old_micros, new_micros, changed_by,"
                " changed_at, old_default, new_default) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, found[0][0] if found else None, new_micros, by, db_time(now), int(not found), int(to_default)),
            )
        new = None if to_default else _cap_text(new_micros, False)
        return AuditEntry(scope=scope, scope_id=scope_id, what=period.value, old=old, new=new, by=by, at=now)

    async def budget_audit(
        self, *, scope: ScopeKind | None = None, scope_id: int | None = None, limit: int = 10
    ) -> list[AuditEntry]:
        """Return the latest changes of caps and gates (of one scope, or every one), newest first."""
        where, params = "1 = 1", list[object]()
        if scope is not None and scope_id is not None:
            where, params = "scope_kind = ? AND scope_id = ?", [scope.value, scope_id]
        caps = await self._all(
            f"SELECT * FROM budget_changes WHERE {where} ORDER BY id DESC LIMIT ?",  # noqa: S608 (fixed text)
            (*params, limit),
        )
        entries = [
            AuditEntry(
                scope=ScopeKind(str(r["scope_kind"])),
                scope_id=int(r["scope_id"]),
                what=str(r["period"]),
                old=_cap_text(r["old_micros"], r["old_default"]),
                new=_cap_text(r["new_micros"], r["new_default"]),
                by=int(r["changed_by"]),
                at=req_time(r["changed_at"]),
            )
            for r in caps
        ]
        if scope in (None, ScopeKind.ROLE):
            role_where = "1 = 1" if scope_id is None else "role_id = ?"
            gates = await self._all(
                f"SELECT * FROM budget_rule_changes WHERE {role_where} ORDER BY id DESC LIMIT ?",  # noqa: S608
                (*([] if scope_id is None else [scope_id]), limit),
            )
            entries += [
                AuditEntry(
                    scope=ScopeKind.ROLE,
                    scope_id=int(r["role_id"]),
                    what=str(r["gate"]),
                    old=None if r["old_value"] is None else str(r["old_value"]),
                    new=None if r["new_value"] is None else str(r["new_value"]),
                    by=int(r["changed_by"]),
                    at=req_time(r["changed_at"]),
                )
                for r in gates
            ]
        return sorted(entries, key=lambda e: e.at, reverse=True)[:limit]
