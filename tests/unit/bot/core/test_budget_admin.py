"""What admins type into `/budget set` and `/usage`: amounts, model lists, role gates, and the usage windows."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.core.budget_rules import ALL_MODELS, Gate, RoleGates, models_value
from bot.core.budget_text import audit_value_text, plan_budget_line, spend_line
from bot.core.budgets import (
    AmountError,
    Period,
    RoleRule,
    ScopeKind,
    UsagePeriod,
    parse_amount,
    usage_window,
    usd_text,
)
from worker.contract import MODEL_ALIASES

LA = ZoneInfo("America/Los_Angeles")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", 5_000_000),
        ("$5", 5_000_000),
        (" $ 2.50 ", 2_500_000),
        ("0", 0),
        ("0.01", 10_000),
        ("0.000001", 1),
        ("None", "none"),
        ("DEFAULT", "default"),
        ("1000000", 1_000_000_000_000),
    ],
)
def test_amounts_admins_type_are_read_exactly(text: str, expected: object) -> None:
    assert parse_amount(text) == expected


@pytest.mark.parametrize("text", ["-5", "five", "1e3", "1,000", "2.5000001", "$", "", "1000000.01", "nan", "5$"])
def test_anything_else_is_refused_with_what_is_accepted(text: str) -> None:
    with pytest.raises(AmountError):
        parse_amount(text)


def test_the_refusal_says_what_to_type() -> None:
    with pytest.raises(AmountError, match=r"`5`, `\$5` or `2.50`, `none`"):
        parse_amount("lots")


@pytest.mark.parametrize(
    ("text", "quoted"),
    [("\u202e5", "`5`"), ("5\x00\n6", "`5 6`"), ("`@everyone` [x](https://e.com)", "`'@everyone' [x](https://e.com)`")],
)
def test_the_refusal_quotes_the_text_in_one_line_without_controls_or_backticks(text: str, quoted: str) -> None:
    with pytest.raises(AmountError) as refused:
        parse_amount(text)
    assert str(refused.value).startswith(f"{quoted} isn't an amount")


def test_usage_windows_in_the_budget_zone() -> None:
    now = datetime(2026, 3, 1, 7, 30, tzinfo=UTC)  # still February 28th in Los Angeles (UTC-8)
    assert usage_window("today", now, LA) == (datetime(2026, 2, 28, 8, tzinfo=UTC), datetime(2026, 3, 1, 8, tzinfo=UTC))
    assert usage_window(UsagePeriod.YESTERDAY, now, LA) == (
        datetime(2026, 2, 27, 8, tzinfo=UTC),
        datetime(2026, 2, 28, 8, tzinfo=UTC),
    )
    assert usage_window("this_month", now, LA) == (
        datetime(2026, 2, 1, 8, tzinfo=UTC),
        datetime(2026, 3, 1, 8, tzinfo=UTC),
    )
    assert usage_window("last_month", now, LA) == (
        datetime(2026, 1, 1, 8, tzinfo=UTC),
        datetime(2026, 2, 1, 8, tzinfo=UTC),
    )


def test_month_ends_in_utc() -> None:
    utc = ZoneInfo("UTC")
    end_of_year = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    assert usage_window("this_month", end_of_year, utc) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    new_year = datetime(2027, 1, 1, tzinfo=UTC)
    assert usage_window("last_month", new_year, utc) == (datetime(2026, 12, 1, tzinfo=UTC), new_year)
    march = datetime(2028, 3, 1, tzinfo=UTC)  # a leap year's February
    assert usage_window("last_month", march, utc) == (datetime(2028, 2, 1, tzinfo=UTC), march)
    assert usage_window("yesterday", march, utc) == (datetime(2028, 2, 29, tzinfo=UTC), march)


def test_windows_across_dst_are_an_hour_short_or_long() -> None:
    spring = datetime(2026, 3, 8, 20, tzinfo=UTC)  # Los Angeles moved to UTC-7 at 2:00 that morning
    since, until = usage_window("today", spring, LA)
    assert (since, until - since) == (datetime(2026, 3, 8, 8, tzinfo=UTC), timedelta(hours=23))
    since, until = usage_window("last_7_days", spring, LA)
    assert (since, until) == (datetime(2026, 3, 2, 8, tzinfo=UTC), datetime(2026, 3, 9, 7, tzinfo=UTC))
    autumn = datetime(2026, 11, 1, 20, tzinfo=UTC)
    since, until = usage_window("today", autumn, LA)
    assert until - since == timedelta(hours=25)


def test_an_unknown_window_is_refused() -> None:
    with pytest.raises(ValueError, match="forever"):
        usage_window("forever", datetime(2026, 1, 1, tzinfo=UTC), LA)


def test_models_are_named_by_alias_or_id() -> None:
    flash, pro = MODEL_ALIASES["flash"], MODEL_ALIASES["pro"]
    assert models_value("Pro, flash", MODEL_ALIASES) == ",".join(sorted({flash, pro}))
    assert models_value(f"{flash},nano-banana", MODEL_ALIASES) == flash
    assert models_value("all", MODEL_ALIASES) == ALL_MODELS
    with pytest.raises(ValueError, match="isn't a model"):
        models_value("dall-e", MODEL_ALIASES)
    with pytest.raises(ValueError, match="at least one"):
        models_value(" , ", MODEL_ALIASES)


def test_role_gates_override_only_what_they_set() -> None:
    settings = RoleRule(batch=False, models=frozenset({"m1"}), allow_4k=False, max_batch_items=50)
    assert RoleGates().apply(settings) == settings
    assert RoleGates(batch=True, max_batch_items=0).apply(settings) == RoleRule(
        batch=True, models=frozenset({"m1"}), allow_4k=False, max_batch_items=None
    )
    assert RoleGates(models="all", allow_4k=True).apply(settings).models is None
    assert RoleGates(models="a,b").apply(settings).models == frozenset({"a", "b"})


def test_gates_round_trip_and_merge() -> None:
    gates = RoleGates(batch=False, models="a", allow_4k=True, max_batch_items=0)
    assert RoleGates.from_values(gates.values()) == gates
    assert gates.merged(RoleGates(batch=True)) == RoleGates(batch=True, models="a", allow_4k=True, max_batch_items=0)
    assert gates.values()[Gate.BATCH] == "false"


class Cap:
    def __init__(self, scope: ScopeKind, period: Period, cap: int, used: int) -> None:
        self.scope, self.period, self.cap, self.used = scope, period, cap, used
        self.resets_at = datetime(2026, 1, 2, tzinfo=UTC)


def test_the_plan_line_shows_what_remains_or_by_how_much_it_is_over() -> None:
    cap = Cap(ScopeKind.USER, Period.DAY, 10_000_000, 3_900_000)
    assert plan_budget_line(3_900_000, cap) == "🧾 $6.10 left of your daily cap · $2.20 after this batch"
    # Exactly all of it:
    assert plan_budget_line(6_100_000, cap) == "🧾 $6.10 left of your daily cap · $0.00 after this batch"
    over = plan_budget_line(6_110_000, Cap(ScopeKind.GUILD, Period.MONTH, 10_000_000, 3_900_000))
    assert over is not None and over.startswith("⛔ about $6.11: $0.01 over this server's monthly cap ($6.10 left")
    assert "<t:1767312000:R>" in over
    assert plan_budget_line(1, None) is None


def test_the_spend_lines() -> None:
    assert spend_line(Period.DAY, 1_200_000, None) == "$1.20 today · no cap"
    user = Cap(ScopeKind.USER, Period.DAY, 5_000_000, 1_200_000)
    assert spend_line(Period.DAY, 1_200_000, user) == "$1.20 of $5.00 today · resets <t:1767312000:R>"
    guild = Cap(ScopeKind.GUILD, Period.MONTH, 50_000_000, 7_000_000)
    assert spend_line(Period.MONTH, 1_000_000, guild) == (
        "$1.00 this month · server: $7.00 of $50.00 · resets <t:1767312000:R>"
    )


def test_audit_values() -> None:
    assert [audit_value_text("day", v) for v in ("5000000", "none", None)] == ["$5.00", "no cap", "default"]
    assert audit_value_text("max_batch_items", "0") == "no limit"
    assert audit_value_text("allow_4k", "false") == "not allowed"
    assert audit_value_text("models", "a,b") == "a, b"


def test_amounts_under_a_dollar_keep_their_cents() -> None:
    assert [usd_text(m) for m in (500_000, 10_000, 39_000, 39_100, 1)] == [
        "$0.50",
        "$0.01",
        "$0.039",
        "$0.0391",
        "$0.00",
    ]


def test_an_unknown_model_is_quoted_without_backticks_or_controls() -> None:
    with pytest.raises(ValueError, match=r"^`'@everyone' x` isn't a model"):
        models_value("`@everyone`\u202e x", MODEL_ALIASES)
