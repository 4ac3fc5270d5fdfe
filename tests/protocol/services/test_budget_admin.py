"""Admins' budgets through the service on the in-memory ledger: caps back to default, role gates, show, usage."""

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.app.budgets import BudgetService
from bot.core.budget_rules import RoleGates
from bot.core.budgets import BudgetConfig, Caps, Period, RoleRule, ScopeKind, micros
from bot.errors import UserFacingError
from bot.ledger import Ledger
from tests.fakes.clock import FakeClock

LA = ZoneInfo("America/Los_Angeles")  # loaded outside the event loop (it reads the zone file)
ROLE = 3


def budgets(ledger: Ledger, clock: FakeClock, **config: object) -> BudgetService:
    return BudgetService(ledger, BudgetConfig(tz=LA, **config), clock=clock)  # type: ignore[arg-type]


async def test_a_cap_goes_back_to_the_default_and_the_trail_says_so(ledger: Ledger, clock: FakeClock) -> None:
    service = budgets(ledger, clock, user=Caps(day=micros(1)))
    with pytest.raises(UserFacingError, match="admins"):
        await service.change_cap(ScopeKind.USER, 5, Period.DAY, micros(3), by=9, is_admin=False)
    first = await service.change_cap(ScopeKind.USER, 5, Period.DAY, micros(3), by=9, is_admin=True)
    clock.advance(timedelta(minutes=1))
    none = await service.change_cap(ScopeKind.USER, 5, Period.DAY, "none", by=9, is_admin=True)
    assert (await service.config()).user_overrides[5] == Caps(day=None)
    clock.advance(timedelta(minutes=1))
    back = await service.change_cap(ScopeKind.USER, 5, Period.DAY, "default", by=8, is_admin=True)

    assert (first.old, first.new) == (None, str(micros(3)))
    assert (none.old, none.new) == (str(micros(3)), "none")
    assert (back.old, back.new, back.by) == ("none", None, 8)
    assert 5 not in (await service.config()).user_overrides  # the settings' $1 again
    shown = await service.show(ScopeKind.USER, 5)
    assert [(c.period, c.cap, c.set_by) for c in shown.caps] == [
        (Period.DAY, micros(1), None),
        (Period.MONTH, None, None),
    ]
    assert [(e.old, e.new) for e in shown.changes] == [("none", None), (str(micros(3)), "none"), (None, str(micros(3)))]
    assert shown.view is not None and shown.view.tightest() is not None


async def test_role_gates_override_the_settings_and_are_recorded(ledger: Ledger, clock: FakeClock) -> None:
    settings_rule = RoleRule(caps=Caps(day=micros(2)), batch=False, max_batch_items=10)
    service = budgets(ledger, clock, roles={ROLE: settings_rule})
    with pytest.raises(UserFacingError, match="admins"):
        await service.set_gates(ROLE, RoleGates(batch=True), by=9, is_admin=False)
    changes = await service.set_gates(ROLE, RoleGates(batch=True, max_batch_items=0), by=9, is_admin=True)
    assert [(c.what, c.old, c.new) for c in changes] == [("batch", None, "true"), ("max_batch_items", None, "0")]
    assert await service.set_gates(ROLE, RoleGates(batch=True), by=9, is_admin=True) == []  # nothing changed
    await service.set_gates(ROLE, RoleGates(models="gemini-2.5-flash-image", allow_4k=False), by=9, is_admin=True)

    rule = (await service.config()).roles[ROLE]
    assert rule == RoleRule(
        caps=Caps(day=micros(2)),
        batch=True,
        models=frozenset({"gemini-2.5-flash-image"}),
        allow_4k=False,
        max_batch_items=None,
    )
    with pytest.raises(UserFacingError, match="4K"):
        await service.check_plan(
            owner_id=1,
            guild_id=None,
            role_ids={ROLE},
            is_admin=False,
            cost=0,
            model="gemini-2.5-flash-image",
            image_sizes={"4K"},
            items=1,
            batch=True,
        )
    shown = await service.show(ScopeKind.ROLE, ROLE)
    assert shown.rule == rule and shown.view is None
    assert [c.cap for c in shown.caps] == [micros(2), None]
    assert {e.what for e in shown.changes} == {"batch", "max_batch_items", "models", "allow_4k"}


async def test_gates_and_caps_survive_a_reopened_ledger(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "peel.sqlite3"
    async with await Ledger.open(path) as ledger:
        service = budgets(ledger, clock)
        await service.set_gates(ROLE, RoleGates(batch=False), by=9, is_admin=True)
        await service.change_cap(ScopeKind.GUILD, 7, Period.MONTH, micros(50), by=9, is_admin=True)
    async with await Ledger.open(path) as ledger:
        config = await budgets(ledger, clock).config()
        assert config.roles[ROLE].batch is False
        assert config.guild_overrides[7] == Caps(month=micros(50))
        assert len(await ledger.budget_audit()) == 2
