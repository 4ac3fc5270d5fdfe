"""`python -m bot usage`: what Peel cost per server and per user over some days, for an operator without Discord.

It opens the ledger alone (`bot.app.budgets.open_budget_reports`), prints the totals as `/usage` shows them and,
with `--csv PATH`, writes the same CSV `/usage` attaches. Days are whole days in `BUDGET_TIMEZONE`; by default
this month through today.
"""

import argparse
import asyncio
import json
from datetime import UTC, date, datetime
from decimal import Decimal

from bot.app.budgets import UsageReport, open_budget_reports
from bot.cli.args import EXIT_OK, UsageError
from bot.cli.console import Console
from bot.core.budgets import MICROS_PER_USD, day_window, usd_text
from bot.errors import UserFacingError
from bot.settings import BotSettings

TOP = 20  # users and servers printed; the CSV has every row


def _day(text: str | None, flag: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"{flag} wants a day as YYYY-MM-DD, not {text!r}") from exc


def report_lines(report: UsageReport, first: date, last: date, tz: str) -> list[str]:
    """Return the report for a terminal: the total, then the servers and the users that spent most."""
    lines = [f"Peel usage {first} to {last} ({tz}): {usd_text(report.total)} in all, {report.images:,} images"]
    if report.by_guild:
        lines.append("by server:")
        lines += [f"  {'DMs and CLI' if g is None else g}: {usd_text(usd)}" for g, usd in report.by_guild[:TOP]]
    if report.by_user:
        lines.append("by user:")
        lines += [f"  {'CLI' if u == 0 else u}: {usd_text(usd)}" for u, usd in report.by_user[:TOP]]
    return lines


async def run_usage(args: argparse.Namespace, settings: BotSettings, console: Console) -> int:
    """Print what was spent from `--since` through `--until` (days in `BUDGET_TIMEZONE`), and write `--csv`."""
    tz = settings.budget_config().tz
    today = datetime.now(UTC).astimezone(tz).date()
    last = _day(args.until, "--until") or today
    first = _day(args.since, "--since") or last.replace(day=1)
    try:
        since, until = day_window(first, last, tz)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    try:
        async with open_budget_reports(settings) as budgets:
            report = await budgets.usage(since=since, until=until)
    except UserFacingError as exc:
        raise UsageError(exc.user_message) from exc
    for line in report_lines(report, first, last, tz.key):
        console.say(line)
    if args.csv is not None:
        path = args.csv
        await asyncio.to_thread(path.write_text, report.csv, encoding="utf-8")
        console.note(f"CSV written to {path} ({report.csv.count(chr(10)) - 1} rows)")
    if args.json:
        summary = {
            "since": since.isoformat(),
            "until": until.isoformat(),
            "total_usd": f"{Decimal(report.total) / MICROS_PER_USD:.6f}",
            "images": report.images,
        }
        console.say(json.dumps(summary))
    return EXIT_OK
