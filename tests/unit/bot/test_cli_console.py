"""The CLI's terminal: the progress line, and who may answer before a batch spends."""

import argparse
import asyncio
import io
from pathlib import Path

import pytest

from bot.cli.args import UsageError
from bot.cli.batch import ask, sample_dir
from bot.cli.console import Console, ProgressMeter
from tests.fakes.models import batch_job


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_shows_bar_counts_rate_eta_and_cost() -> None:
    meter = ProgressMeter(started_at=0.0, done_at_start=0, clock=lambda: 10.0)
    job = batch_job(total=100, ok=18, failed=2, cancelled=0)

    line = meter.line(job, failed=2, cost_usd=0.702, bar=True)

    assert line == "[####................] 20/100 (20%)  done 18  failed 2  2.0 img/s  ETA 40s  $0.70"
    assert not meter.line(job, failed=2, cost_usd=0.702).startswith("[")  # no bar in plain lines


def _console(inp: io.StringIO | None) -> tuple[Console, io.StringIO]:
    err = io.StringIO()
    return Console(io.StringIO(), err, inp), err


def test_a_script_without_yes_is_refused_before_anything_is_asked() -> None:
    console, _ = _console(io.StringIO("y\n"))  # not a terminal: whatever it holds is no answer

    with pytest.raises(UsageError, match="--yes"):
        asyncio.run(ask(console, argparse.Namespace(yes=False), "Start 3 images?", asyncio.Event()))


@pytest.mark.parametrize(("typed", "agreed"), [("y\n", True), ("YES\n", True), ("\n", False), ("", False)])
def test_a_terminal_answers_and_anything_but_yes_is_no(typed: str, agreed: bool) -> None:
    console, err = _console(_Terminal(typed))

    assert asyncio.run(ask(console, argparse.Namespace(yes=False), "Start 3 images?", asyncio.Event())) is agreed
    assert err.getvalue() == "Start 3 images? [y/N] "


def test_yes_answers_without_reading_stdin() -> None:
    console, err = _console(None)

    assert asyncio.run(ask(console, argparse.Namespace(yes=True), "Start 3 images?", asyncio.Event()))
    assert err.getvalue() == "Start 3 images? yes (--yes)\n"


def test_a_trial_is_written_beside_the_results() -> None:
    assert sample_dir(Path("out/results.zip")) == Path("out/results-sample")


def test_a_progress_line_on_a_terminal_is_redrawn_over_a_longer_one() -> None:
    err = _Terminal()
    console = Console(io.StringIO(), err)

    console.progress("9/10 (90%)  ETA 10s", tty=True)
    console.progress("10/10 (100%)", tty=True)
    console.end_progress()

    assert err.getvalue() == "\r9/10 (90%)  ETA 10s\r10/10 (100%)       \n"
