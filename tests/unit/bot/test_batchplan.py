"""A batch plan as stored until Start: its prompt source survives the round trip, and older plans still load."""

from datetime import UTC, datetime

from bot.app.batchplan import BatchPlan, PlannedItem, plan_summary
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
