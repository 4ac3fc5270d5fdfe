"""The money caps' arithmetic at their exact boundaries, periods in a configured time zone, and the role rule."""

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.core.budgets import (
    Allowed,
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
    most_generous,
    next_reset,
    period_start,
    usd_text,
)

LA = ZoneInfo("America/Los_Angeles")
CENT = 10_000  # micro-dollars
NOW = datetime(2026, 3, 8, 12, tzinfo=UTC)
RESETS = {Period.DAY: NOW, Period.MONTH: NOW}
DAILY_5 = (Limit(scope=ScopeKind.USER, period=Period.DAY, cap=micros("5.00")),)


def test_micros_are_exact_for_decimal_text_and_floats() -> None:
    assert micros("0.039") == 39_000
    assert micros(0.134) == 134_000
    assert micros("5") == 5_000_000
    assert usd_text(micros("12.5")) == "$12.50"
    assert usd_text(39_000) == "$0.039"


@pytest.mark.parametrize(
    ("spent", "allowed"),
    [(micros("4.99") - CENT, True), (micros("4.99"), True), (micros("4.99") + 1, False), (micros("5.00"), False)],
    ids=["one-cent-under", "at", "one-micro-over", "one-cent-over"],
)
def test_a_one_cent_image_at_the_boundaries_of_a_five_dollar_cap(spent: int, allowed: bool) -> None:
    decision = check(CENT, DAILY_5, {(ScopeKind.USER, Period.DAY): spent}, RESETS)
    assert isinstance(decision, Allowed) is allowed


def test_a_refusal_names_the_cap_the_spend_the_cost_and_the_reset() -> None:
    limits = (
        Limit(scope=ScopeKind.USER, period=Period.MONTH, cap=micros(100)),
        Limit(scope=ScopeKind.GUILD, period=Period.DAY, cap=micros(10)),
    )
    used = {(ScopeKind.USER, Period.MONTH): micros(99), (ScopeKind.GUILD, Period.DAY): micros("9.99")}
    resets = {Period.DAY: datetime(2026, 3, 9, 7, tzinfo=UTC), Period.MONTH: datetime(2026, 4, 1, 7, tzinfo=UTC)}
    decision = check(micros(2), limits, used, resets)
    # Both would go over; the guild's day has the least room, so it is the one named.
    assert decision == Refused(
        scope=ScopeKind.GUILD,
        period=Period.DAY,
        cap=micros(10),
        spent=micros("9.99"),
        cost=micros(2),
        resets_at=resets[Period.DAY],
    )
    text = decision.message(LA)
    assert "This server's daily budget is $10.00" in text
    assert "$9.99 is spent or reserved" in text and "cost $2.00" in text
    assert "2026-03-09 00:00 PDT" in text


def test_a_role_cap_counts_the_users_own_spend_not_the_guilds() -> None:
    limits = (Limit(scope=ScopeKind.ROLE, period=Period.DAY, cap=micros(1)),)
    assert isinstance(check(CENT, limits, {(ScopeKind.GUILD, Period.DAY): micros(50)}, RESETS), Allowed)
    assert isinstance(check(CENT, limits, {(ScopeKind.USER, Period.DAY): micros(1)}, RESETS), Refused)


def test_the_day_resets_at_local_midnight_across_the_spring_dst_change() -> None:
    # 2026-03-08 is the US spring-forward day: 00:00 PST is 08:00 UTC, the next midnight (PDT) is 07:00 UTC.
    during = datetime(2026, 3, 8, 20, tzinfo=UTC)
    assert period_start(during, Period.DAY, LA) == datetime(2026, 3, 8, 8, tzinfo=UTC)
    assert next_reset(during, Period.DAY, LA) == datetime(2026, 3, 9, 7, tzinfo=UTC)
    # 07:30 UTC on the 9th is still the 9th's first half hour in Los Angeles (00:30 PDT), not the 8th.
    assert period_start(datetime(2026, 3, 9, 7, 30, tzinfo=UTC), Period.DAY, LA) == datetime(2026, 3, 9, 7, tzinfo=UTC)


def test_the_month_resets_on_the_first_in_the_time_zone_not_in_utc() -> None:
    # 03:00 UTC on 1 February is still 31 January in Los Angeles: January's month, which ends at 08:00 UTC.
    late_january = datetime(2026, 2, 1, 3, tzinfo=UTC)
    assert period_start(late_january, Period.MONTH, LA) == datetime(2026, 1, 1, 8, tzinfo=UTC)
    assert next_reset(late_january, Period.MONTH, LA) == datetime(2026, 2, 1, 8, tzinfo=UTC)
    # December rolls over into the next year.
    assert next_reset(datetime(2026, 12, 15, tzinfo=UTC), Period.MONTH, ZoneInfo("UTC")) == datetime(
        2027, 1, 1, tzinfo=UTC
    )
    # Across the autumn change: March's month begins in PST and ends in PDT.
    assert next_reset(datetime(2026, 3, 20, tzinfo=UTC), Period.MONTH, LA) == datetime(2026, 4, 1, 7, tzinfo=UTC)


def test_several_roles_give_the_most_generous_rule() -> None:
    small = RoleRule(
        caps=Caps(day=micros(1), month=None), batch=False, models=frozenset({"a"}), allow_4k=False, max_batch_items=10
    )
    large = RoleRule(caps=Caps(day=micros(5), month=micros(20)), models=frozenset({"b"}), max_batch_items=100)
    rule = most_generous([small, large])
    assert rule == RoleRule(
        caps=Caps(day=micros(5), month=None),
        batch=True,
        models=frozenset({"a", "b"}),
        allow_4k=True,
        max_batch_items=100,
    )
    assert most_generous([]) is None


def test_user_and_guild_caps_apply_on_top_of_the_role_and_admins_keep_only_the_guilds() -> None:
    config = BudgetConfig(
        user=Caps(day=micros(2)),
        guild=Caps(day=micros(50), month=micros(500)),
        roles={7: RoleRule(caps=Caps(day=micros(10)))},
        guild_overrides={99: Caps(day=micros(1))},
    )
    limits = config.limits(user_id=1, guild_id=5, role_ids=[7])
    assert {(lim.scope, lim.period, lim.cap) for lim in limits} == {
        (ScopeKind.USER, Period.DAY, micros(2)),
        (ScopeKind.ROLE, Period.DAY, micros(10)),
        (ScopeKind.GUILD, Period.DAY, micros(50)),
        (ScopeKind.GUILD, Period.MONTH, micros(500)),
    }
    # The user cap is the tighter: $2.50 of the user's own spend is refused under it though the role allows $10.
    used = {(ScopeKind.USER, Period.DAY): micros(2)}
    refused = check(micros("0.5"), limits, used, RESETS)
    assert isinstance(refused, Refused) and refused.scope is ScopeKind.USER
    admin = config.limits(user_id=1, guild_id=99, role_ids=[7], is_admin=True)
    assert [(lim.scope, lim.cap) for lim in admin] == [(ScopeKind.GUILD, micros(1))]
    assert config.limits(user_id=1, guild_id=None, role_ids=[]) == (
        Limit(scope=ScopeKind.USER, period=Period.DAY, cap=micros(2)),
    )


def test_role_gates() -> None:
    rule = RoleRule(batch=False, models=frozenset({"m1"}), allow_4k=False, max_batch_items=5)
    assert gate_refusal(None, batch=True, model="x", image_size="4K", items=10**6) is None
    assert "/batch" in (gate_refusal(rule, batch=True, model="m1", image_size=None, items=1) or "")
    assert "`m2`" in (gate_refusal(rule, batch=False, model="m2", image_size=None, items=1) or "")
    assert "4K" in (gate_refusal(rule, batch=False, model="m1", image_size="4K", items=1) or "")
    assert gate_refusal(rule, batch=False, model="m1", image_size="2K", items=100) is None
    sized = RoleRule(max_batch_items=5)
    assert gate_refusal(sized, batch=True, model="m", image_size=None, items=5) is None
    assert "at most 5" in (gate_refusal(sized, batch=True, model="m", image_size=None, items=6) or "")


def test_a_hold_keeps_its_caps_zone_roles_and_admin_standing_through_the_ledger_json() -> None:
    held = BudgetHold(
        cost=5,
        limits=(Limit(scope=ScopeKind.ROLE, period=Period.MONTH, cap=7),),
        tz=LA,
        role_ids=frozenset({3, 1}),
        is_admin=True,
    )
    back = BudgetHold.from_json(json.loads(json.dumps(held.to_json())), cost=5)
    assert back == held
    # A reservation written before roles were kept reads as no roles, no admin.
    assert BudgetHold.from_json({"tz": "UTC", "limits": []}).role_ids == frozenset()
