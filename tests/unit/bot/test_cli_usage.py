"""What the CLI prints of money: a batch's recorded cost at its end, and `usage`'s report."""

from datetime import UTC, date, datetime

from bot.app.budgets import UsageReport
from bot.cli.batch import spent_text
from bot.cli.usage import report_lines


def test_a_batch_ends_with_its_recorded_cost_or_says_it_is_an_estimate() -> None:
    assert spent_text(0.123456, 0.16, "fast") == (
        "$0.1235 spent, as recorded: Gemini's reported usage and RunPod time (fast)"
    )
    assert spent_text(None, 0.16, "fast") == "about $0.16 by the price table, no cost recorded (fast)"


def test_the_usage_report_names_the_days_the_servers_and_the_users() -> None:
    report = UsageReport(
        since=datetime(2026, 1, 1, tzinfo=UTC),
        until=datetime(2026, 1, 3, tzinfo=UTC),
        total=2_500_000,
        images=40,
        by_guild=((7, 2_000_000), (None, 500_000)),
        by_user=((1, 2_000_000), (0, 500_000)),
        csv="",
    )
    assert report_lines(report, date(2026, 1, 1), date(2026, 1, 2), "UTC") == [
        "Peel usage 2026-01-01 to 2026-01-02 (UTC): $2.50 in all, 40 images",
        "by server:",
        "  7: $2.00",
        "  DMs and CLI: $0.50",
        "by user:",
        "  1: $2.00",
        "  CLI: $0.50",
    ]
