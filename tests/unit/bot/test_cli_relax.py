"""The CLI's relax mode: `--relax` / `--fast`, the question before spending, the progress line, the job's key."""

from dataclasses import replace

import pytest

from bot.cli.args import build_parser
from bot.cli.batch import _start_question, batch_key
from bot.cli.console import ProgressMeter
from bot.core.models import JobParams
from tests.fakes.models import batch_job


@pytest.mark.parametrize(("flags", "relax"), [([], None), (["--relax"], True), (["--fast"], False)])
def test_the_speed_flags_say_relax_fast_or_leave_it_to_the_settings(flags: list[str], relax: bool | None) -> None:
    assert build_parser().parse_args(["batch", "in.zip", *flags]).relax is relax


def test_relax_and_fast_together_are_refused() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["batch", "in.zip", "--relax", "--fast"])


def test_the_question_before_spending_says_relax() -> None:
    assert _start_question(1000, 19.5, None, relax=True) == "Start 1,000 images for about $19.50 in relax?"
    assert _start_question(1000, 39.0, None) == "Start 1,000 images for about $39.00?"


def test_a_relax_batch_is_another_job_than_the_same_fast_one() -> None:
    fast = JobParams(model="gemini-2.5-flash-image")
    assert batch_key("0" * 64, "p", replace(fast, relax=True)) != batch_key("0" * 64, "p", fast)


def test_a_relax_progress_line_shows_where_gemini_is_instead_of_a_rate() -> None:
    meter = ProgressMeter(started_at=0.0, done_at_start=0, clock=lambda: 10.0)
    job = batch_job(total=100, ok=18, failed=2, cancelled=0)

    line = meter.line(job, failed=2, cost_usd=0.351, relax="🐢 relax · collecting results")

    assert line == "20/100 (20%)  done 18  failed 2  🐢 relax · collecting results  $0.35"
