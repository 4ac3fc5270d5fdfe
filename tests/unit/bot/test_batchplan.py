"""A batch plan as stored until Start: its prompt source survives the round trip, and older plans still load."""

from datetime import UTC, datetime

import pytest

from bot.app.batchplan import BatchPlan, PlannedItem, estimate_plan, made_cost, plan_price, plan_summary, unit_price
from bot.core.batch import estimate_batch
from bot.core.models import JobParams

PLAN = BatchPlan(
    id="p_1",
    owner_id=1,
    guild_id=None,
    channel_id=2,
    prompt="make it blue",
    display_prompt="make it blue --ar 4:3",
    params=JobParams(model="gemini-2.5-flash-image", aspect_ratio="4:3"),
    items=(PlannedItem(key="inputs/a.png", name="set/a.png"),),
    skipped=(("set/notes.txt", "not_an_image"),),
    prompt_source="captions beside the images",
    created_at=datetime(2025, 6, 1, tzinfo=UTC),
)


def test_plan_keeps_its_prompt_source_when_stored_and_read_back() -> None:
    assert BatchPlan.from_json(PLAN.to_json()) == PLAN


def test_plan_stored_before_prompt_sources_reads_as_one_prompt() -> None:
    stored = PLAN.to_json()
    del stored["prompt_source"]
    assert BatchPlan.from_json(stored).prompt_source == "one prompt"


def test_plan_summary_shows_the_plans_options_source_and_skipped_names() -> None:
    text = plan_summary(PLAN, estimate_batch(items=1, unit_price_usd=0.039, latency_s=10, concurrency=1))
    assert "📝 Prompts: captions beside the images" in text
    assert "aspect ratio 4:3 · size 1K" in text
    assert "• `set/notes.txt`: not an image" in text


def test_a_planned_item_stores_its_display_only_when_it_differs_from_its_prompt() -> None:
    same = PlannedItem(key="k", name="a.png", prompt="a cat", display="a cat", line=2)
    other = PlannedItem(key="k", name="b.png", prompt="a cat, no dog", display="a cat --no dog", line=3)

    assert same.to_json() == ["k", "a.png", {"prompt": "a cat", "line": 2}]  # a 10,000-row plan stored lighter
    assert PlannedItem.from_json(same.to_json()) == same
    assert PlannedItem.from_json(other.to_json()) == other


RELAX = BatchPlan.from_json({**PLAN.to_json(), "params": {**PLAN.params.to_json(), "relax": True}})


def test_a_relax_plan_keeps_its_speed_when_stored_and_a_plan_stored_before_speeds_is_fast() -> None:
    assert RELAX.relax and BatchPlan.from_json(RELAX.note_json()).relax
    assert not BatchPlan.from_json(PLAN.to_json()).relax


def test_a_relax_plan_costs_the_batch_price_and_knows_what_fast_would_cost() -> None:
    assert plan_price(RELAX) == pytest.approx(0.0195) and plan_price(PLAN) == pytest.approx(0.039)
    assert plan_price(RELAX, relax=False) == pytest.approx(0.039)
    estimate = estimate_plan(RELAX, latency_s=10, concurrency=1)
    assert estimate.relax
    assert estimate.cost_usd == pytest.approx(0.0195) and estimate.other_cost_usd == pytest.approx(0.039)


def test_what_a_relax_job_made_costs_half_of_fasts() -> None:
    fast, relax = PLAN.params, RELAX.params
    assert made_cost(relax, {None: 1000}) == pytest.approx(19.5)
    assert made_cost(fast, {None: 1000}) == pytest.approx(39.0)
    assert unit_price(relax) == pytest.approx(0.0195)
