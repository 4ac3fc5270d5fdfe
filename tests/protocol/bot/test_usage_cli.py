"""`python -m bot usage` over a SQLite ledger file: the totals printed and the CSV equal what the ledger counts."""

import asyncio
import csv
import dataclasses
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.cli import main
from bot.core.budgets import micros
from bot.core.models import JobId, JobKind, JobParams, NewJob, Priority, UserId
from bot.ledger import Ledger, new_id
from tests.fakes.clock import FakeClock
from tests.protocol.ledger.test_spend import run_chunk

DAY = datetime(2025, 1, 1, tzinfo=UTC)  # the fake clock's day
GUILD = 77


@pytest.fixture(autouse=True)
def cli_logging_undone() -> Iterator[None]:
    """Put back the log levels `main` sets for the process (it quiets aiohttp's access log), for the tests after."""
    loggers = [logging.getLogger(name) for name in ("", "aiohttp.access", "local.runpod.worker")]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def job(owner: int, guild: int | None) -> NewJob:
    made = NewJob(
        id=JobId(new_id("j")),
        kind=JobKind.GRID,
        owner_id=UserId(owner),
        prompt="a cat",
        params=JobParams(model="gemini-2.5-flash-image", n=4),
        priority=Priority.for_kind(JobKind.GRID),
    )
    return dataclasses.replace(made, guild_id=guild)


async def spend(path: Path) -> int:
    """Record three users' images in a ledger file; return what the ledger counts as spent that day."""
    clock = FakeClock()
    async with await Ledger.open(path) as ledger:
        await run_chunk(ledger, job(1, GUILD), [0.04, 0.04], clock)
        await run_chunk(ledger, job(2, GUILD), [0.04], clock)
        await run_chunk(ledger, job(3, None), [0.04, 0.04, 0.04], clock)
        return await ledger.budget_spent(since=DAY, until=DAY.replace(day=2))


def test_usage_prints_the_totals_and_writes_the_csv_of_what_the_ledger_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the worktree
    counted = asyncio.run(spend(tmp_path / "peel.sqlite3"))
    assert counted > 0
    out = tmp_path / "usage.csv"
    argv = ["usage", "--data", str(tmp_path), "--since", "2025-01-01", "--until", "2025-01-01", "--csv", str(out)]
    assert main([*argv, "--json"]) == 0
    printed = capsys.readouterr()
    first, *lines = printed.out.splitlines()
    assert first.startswith("Peel usage 2025-01-01 to 2025-01-01 (UTC): ") and "6 images" in first
    assert lines[0] == "by server:" and {line.split(":")[0] for line in lines[1:3]} == {"  DMs and CLI", f"  {GUILD}"}
    rows = list(csv.DictReader(out.read_text(encoding="utf-8").splitlines()))
    assert sum(micros(r["usd"]) for r in rows) == counted
    assert sorted(int(r["user_id"]) for r in rows) == [1, 2, 3]
    assert micros(json.loads(lines[-1])["total_usd"]) == counted
    assert "CSV written to" in printed.err


def test_a_day_outside_the_spend_reports_nothing_and_bad_days_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    asyncio.run(spend(tmp_path / "peel.sqlite3"))
    assert main(["usage", "--data", str(tmp_path), "--since", "2025-01-02", "--until", "2025-01-02"]) == 0
    assert "$0.00 in all, 0 images" in capsys.readouterr().out
    assert main(["usage", "--data", str(tmp_path), "--since", "2025-13-01"]) == 2
    assert "--since wants a day as YYYY-MM-DD" in capsys.readouterr().err
    assert main(["usage", "--data", str(tmp_path), "--since", "2025-01-03", "--until", "2025-01-02"]) == 2
    assert main(["usage", "--data", str(tmp_path / "nowhere")]) == 2
    assert "no ledger at" in capsys.readouterr().err
