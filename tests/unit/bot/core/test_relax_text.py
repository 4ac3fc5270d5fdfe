"""Relax mode as users read it: the plan's two prices and Gemini's wait, the progress line per phase, a pause."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from bot.core.batch import Speed, default_speed, estimate_batch, plan_text, summary_message
from bot.core.relax import RelaxPhase, RelaxStatus
from bot.core.render import BatchProgress, batch_progress_text

SINCE = datetime(2026, 1, 1, tzinfo=UTC)


def plan(*, items: int, relax: bool, price: float = 0.039) -> str:
    half, full = price / 2, price
    estimate = estimate_batch(
        items=items,
        unit_price_usd=half if relax else full,
        latency_s=12,
        concurrency=10,
        relax=relax,
        other_unit_price_usd=full if relax else half,
    )
    return plan_text(
        prompt="p", model="gemini-2.5-flash-image", image_size=None, accepted=items, skipped={}, estimate=estimate
    )


def test_a_relax_plan_shows_its_price_what_fast_would_cost_and_geminis_wait() -> None:
    text = plan(items=1000, relax=True)
    assert "💵 🐢 Relax: about $19.50 for 1,000 images (fast would be $39.00)" in text
    assert "at most 24 h" in text
    assert "⏱️ about" not in text  # no fast-mode duration for a batch Gemini holds


def test_a_large_fast_plan_offers_relax_at_half_the_price_and_a_small_one_does_not() -> None:
    large, small = plan(items=1000, relax=False), plan(items=20, relax=False)
    assert "Estimated cost about $39.00" in large and "🐢 Relax (`speed:relax`) would cost about $19.50" in large
    assert "Relax" not in small


def test_the_cli_plan_names_the_flag_not_the_slash_option() -> None:
    estimate = estimate_batch(items=500, unit_price_usd=0.039, latency_s=1, concurrency=1, other_unit_price_usd=0.0195)
    text = plan_text(
        prompt="p", model="m", image_size=None, accepted=500, skipped={}, estimate=estimate, markdown=False
    )
    assert "Relax (--relax) would cost about $9.75" in text


@pytest.mark.parametrize(
    ("guild", "default", "expected"),
    [
        (5, Speed.FAST, Speed.RELAX),
        (6, Speed.FAST, Speed.FAST),
        (None, Speed.FAST, Speed.FAST),
        (6, Speed.RELAX, Speed.RELAX),
    ],
)
def test_a_relax_guild_defaults_to_relax_and_others_to_the_bots_default(
    guild: int | None, default: Speed, expected: Speed
) -> None:
    assert default_speed(guild, default=default, relax_guilds=[5]) is expected


def progress(status: RelaxStatus | None, *, state: str = "running", waiting_s: float | None = None) -> str:
    return batch_progress_text(
        BatchProgress(
            total=1000,
            done=0,
            failed=0,
            blocked=0,
            elapsed_s=600,
            cost_usd=0,
            state=state,
            relax=True,
            relax_status=status,
            relax_waiting_s=waiting_s,
        )
    )


def status(phase: RelaxPhase, *, done: int = 0, failed: int = 0) -> RelaxStatus:
    return RelaxStatus(phase=phase, parts=1, sent=1000, gemini_done=done, gemini_failed=failed, waiting_since=SINCE)


@pytest.mark.parametrize(
    ("phase", "line"),
    [
        (RelaxPhase.PREPARING, "🐢 relax · preparing 1,000 requests for Gemini"),
        (RelaxPhase.SUBMITTED, "🐢 relax · 1,000 sent, waiting for Gemini to start · waiting 12m 00s"),
        (RelaxPhase.RUNNING, "🐢 relax · Gemini running: 640/1,000 done · 3 failed · waiting 12m 00s"),
        (RelaxPhase.COLLECTING, "🐢 relax · collecting results (640 made by Gemini)"),
    ],
)
def test_a_relax_batchs_progress_says_where_gemini_is_with_its_counts(phase: RelaxPhase, line: str) -> None:
    text = progress(status(phase, done=640, failed=3), waiting_s=720)
    assert line in text
    assert "images/min" not in text and "ETA: Gemini's batch, usually within hours, at most 24 h" in text


def test_a_fast_batch_shows_no_relax_line() -> None:
    text = batch_progress_text(BatchProgress(total=10, done=1, failed=0, blocked=0, elapsed_s=60, cost_usd=0.04))
    assert "relax" not in text and "images/min" in text


def test_a_paused_relax_batch_says_gemini_still_makes_what_it_holds() -> None:
    text = progress(status(RelaxPhase.RUNNING), state="paused")
    assert "the 1,000 images Gemini already holds will still be made and collected" in text
    assert "Gemini cannot pause a batch" in text


def test_the_summary_states_the_mode_and_the_batch_price() -> None:
    def summary(relax: bool) -> str:
        return summary_message(
            prompt="p", owner_mention="@a", state="done", ok=1, failed=0, blocked=0, cancelled=0, skipped=0,
            cost_usd=0.02, errors={}, link=None, expires_s=60, relax=relax,
        )  # fmt: skip

    assert "🐢 relax, at Gemini's batch price (half)" in summary(True)
    assert "⚡ fast" in summary(False) and "relax" not in summary(False)


def test_a_batch_api_that_does_not_answer_is_said_in_the_progress_message() -> None:
    from bot.core.render import BatchProgress, batch_progress_text

    quiet = BatchProgress(total=10, done=0, failed=0, blocked=0, elapsed_s=60, cost_usd=0, relax=True)
    text = batch_progress_text(replace(quiet, relax_trouble_s=300))
    assert "Gemini's Batch API has not answered Peel for 5m" in text, text
    assert "not answered" not in batch_progress_text(quiet)
