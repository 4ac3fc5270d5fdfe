"""Admins' budget settings from Discord (pure): a role's gates set over `BUDGET_ROLES`, and the audit trail's entries.

A role's gates as admins set them are an override per gate: a gate left unset keeps the settings' value (or, for a
role without a `BUDGET_ROLES` entry, no limit). Values are kept in one canonical text each so the ledger can store
them and the audit trail can show them before and after: `batch` and `allow_4k` as `true`/`false`, `models` as
`all` or a comma list of model ids, `max_batch_items` as a count with `0` for no limit.
"""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from bot.core.budgets import RoleRule, ScopeKind
from bot.core.render import code

ALL_MODELS = "all"


class Gate(StrEnum):
    """One of a role's gates."""

    BATCH = "batch"
    MODELS = "models"
    ALLOW_4K = "allow_4k"
    MAX_BATCH_ITEMS = "max_batch_items"


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleGates:
    """The gates admins set for one role (None: the settings' value)."""

    batch: bool | None = None
    models: str | None = None  # ALL_MODELS or a comma list of model ids
    allow_4k: bool | None = None
    max_batch_items: int | None = None  # 0: no limit

    def values(self) -> dict[Gate, str | None]:
        """Return each gate's canonical text (None: not set)."""
        return {
            Gate.BATCH: None if self.batch is None else str(self.batch).lower(),
            Gate.MODELS: self.models,
            Gate.ALLOW_4K: None if self.allow_4k is None else str(self.allow_4k).lower(),
            Gate.MAX_BATCH_ITEMS: None if self.max_batch_items is None else str(self.max_batch_items),
        }

    @classmethod
    def from_values(cls, values: Mapping[Gate, str | None]) -> "RoleGates":
        """Rebuild gates from their canonical texts (as `values` gives them)."""
        batch, models = values.get(Gate.BATCH), values.get(Gate.MODELS)
        allow_4k, most = values.get(Gate.ALLOW_4K), values.get(Gate.MAX_BATCH_ITEMS)
        return cls(
            batch=None if batch is None else batch == "true",
            models=models,
            allow_4k=None if allow_4k is None else allow_4k == "true",
            max_batch_items=None if most is None else int(most),
        )

    def merged(self, newer: "RoleGates") -> "RoleGates":
        """Return these gates with every gate `newer` sets replaced."""
        return RoleGates.from_values(
            {
                gate: new if new is not None else old
                for (gate, old), new in zip(self.values().items(), newer.values().values(), strict=True)
            }
        )

    def apply(self, rule: RoleRule) -> RoleRule:
        """Return `rule` with the gates set here."""
        models = rule.models
        if self.models is not None:
            models = None if self.models == ALL_MODELS else frozenset(m for m in self.models.split(",") if m)
        return replace(
            rule,
            batch=rule.batch if self.batch is None else self.batch,
            models=models,
            allow_4k=rule.allow_4k if self.allow_4k is None else self.allow_4k,
            max_batch_items=rule.max_batch_items if self.max_batch_items is None else (self.max_batch_items or None),
        )


def models_value(names: str, aliases: Mapping[str, str]) -> str:
    """Return the canonical `models` gate of an admin's comma list of aliases or ids (`all`: every model).

    Raises:
        ValueError: an unknown model, or an empty list.
    """
    wanted = [n.strip().lower() for n in names.split(",") if n.strip()]
    if wanted == [ALL_MODELS]:
        return ALL_MODELS
    known = set(aliases.values())
    ids: set[str] = set()
    for name in wanted:
        model = aliases.get(name, name)
        if model not in known:
            raise ValueError(f"{code(name, limit=40)} isn't a model; use {', '.join(sorted(aliases))} or `all`.")
        ids.add(model)
    if not ids:
        raise ValueError("Name at least one model, or `all`.")
    return ",".join(sorted(ids))


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One change admins made to the budgets: what (a cap's period or a gate), before and after, who and when.

    `old` and `new` are canonical texts: for a cap its micro-dollars, `none` (no cap) or None (the settings'
    default); for a gate as `RoleGates.values` (None: the settings' value).
    """

    scope: ScopeKind
    scope_id: int
    what: str  # "day", "month" or a Gate
    old: str | None
    new: str | None
    by: int
    at: datetime
