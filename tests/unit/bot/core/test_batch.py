"""Batch decisions: the limits a new batch must fit (naming the limit and by how much), estimates and texts."""

from typing import Any

import pytest

from bot.core.batch import BatchLimits, BatchLoad, estimate_batch, limit_refusal, plan_text, thread_name

ESTIMATE = estimate_batch(items=60, unit_price_usd=0.039, latency_s=12, concurrency=10)

LIMITS = BatchLimits(max_items=1000, max_running_per_user=2, max_running_per_guild=5, max_items_per_guild=5000)
IDLE = BatchLoad(user_running=0, guild_running=0, guild_items=0)


def test_batch_is_allowed_when_under_every_limit() -> None:
    assert limit_refusal(LIMITS, IDLE, items=1000) is None


@pytest.mark.parametrize(
    ("load", "items", "expected"),
    [
        (IDLE, 1200, "1,200 images; the limit is 1,000 per batch (200 too many)"),
        (BatchLoad(user_running=2, guild_running=2, guild_items=10), 10, "You already have 2 batches running"),
        (BatchLoad(user_running=0, guild_running=5, guild_items=10), 10, "This server already has 5 batches"),
        (BatchLoad(user_running=0, guild_running=1, guild_items=4500), 800, "300 over the server's limit of 5,000"),
    ],
    ids=["batch-size", "user-running", "guild-running", "guild-items"],
)
def test_batch_is_refused_naming_the_limit_when_over_it(load: BatchLoad, items: int, expected: str) -> None:
    refusal = limit_refusal(LIMITS, load, items=items)
    assert refusal is not None and expected in refusal


def test_admin_skips_per_user_limits_when_guild_limits_hold() -> None:
    busy = BatchLoad(user_running=9, guild_running=1, guild_items=0)
    assert limit_refusal(LIMITS, busy, items=2000, is_admin=True) is None
    assert limit_refusal(LIMITS, busy, items=6000, is_admin=True) is not None


def test_estimate_multiplies_price_and_divides_time_by_concurrency_when_known() -> None:
    estimate = estimate_batch(items=200, unit_price_usd=0.039, latency_s=12.0, concurrency=10)
    assert estimate.cost_usd == pytest.approx(7.8)
    assert estimate.duration_s == pytest.approx(240.0)
    assert estimate_batch(items=3, unit_price_usd=None, latency_s=1, concurrency=1).cost_usd is None


def test_thread_name_fits_discord_when_prompt_is_long() -> None:
    name = thread_name("word " * 100, items=1234)
    assert len(name) <= 100 and name.endswith(" · 1234 images")


def test_plan_text_lists_skips_and_estimates_when_some_entries_were_skipped() -> None:
    text = plan_text(
        prompt="a *bold* fox",
        model="gemini-2.5-flash-image",
        image_size=None,
        accepted=10,
        skipped={"not_an_image": 2, "symlink": 1},
        estimate=estimate_batch(items=10, unit_price_usd=0.039, latency_s=12, concurrency=10),
    )
    assert "a \\*bold\\* fox" in text and "**10** images accepted · ⏭️ 3 skipped" in text
    assert text.index("2 not an image") < text.index("1 symbolic link")
    assert "about $0.39" in text and "Start" in text


def test_thread_name_drops_bidi_and_control_characters_when_the_prompt_holds_them() -> None:
    assert thread_name("a fox\u202egnp.exe\nnext\u2066", items=3) == "a foxgnp.exe next · 3 images"


def test_plan_text_escapes_mentions_and_masked_links_when_the_prompt_holds_them() -> None:
    text = plan_text(
        prompt="<@42> [free](https://evil.example) \u202e",
        model="m",
        image_size=None,
        accepted=1,
        skipped={},
        estimate=estimate_batch(items=1, unit_price_usd=None, latency_s=1.0, concurrency=1),
    )
    assert "<@42>" not in text
    assert "[free](" not in text
    assert "\u202e" not in text


def test_plan_text_echoes_the_options_chosen_and_the_prompt_source_when_given() -> None:
    text = plan_text(
        prompt="p",
        model="gemini-3-pro-image-preview",
        image_size="2K",
        aspect_ratio="16:9",
        seed=7,
        prompt_source="prompts.csv (60 rows)",
        accepted=60,
        skipped={},
        estimate=ESTIMATE,
    )
    assert "⚙️ Model `gemini-3-pro-image-preview` · aspect ratio 16:9 · size 2K · seed 7" in text
    assert "📝 Prompts: prompts.csv (60 rows)" in text
    assert "about $2.34 for 60 images · ⏱️ about 1m 12s" in text


def test_plan_text_says_what_gemini_picks_when_no_option_was_chosen() -> None:
    text = plan_text(prompt="p", model="m", image_size=None, accepted=1, skipped={}, estimate=ESTIMATE)
    assert "aspect ratio auto (follows each input) · size 1K" in text
    assert "seed" not in text and "Prompts: one prompt" in text


def test_plan_text_names_the_first_five_skipped_entries_when_more_were_skipped() -> None:
    entries = [(f"dir/file{i}.txt", "not_an_image") for i in range(7)] + [("`x`[a](http://e) <@1>", "duplicate")]
    text = plan_text(
        prompt="p",
        model="m",
        image_size=None,
        accepted=3,
        skipped={"not_an_image": 7, "duplicate": 1},
        skipped_entries=entries,
        estimate=ESTIMATE,
    )
    assert "First 5 skipped (all 8 are in the manifest):" in text
    assert [line for line in text.splitlines() if line.startswith("• `")] == [
        f"• `dir/file{i}.txt`: not an image" for i in range(5)
    ]
    assert "file5" not in text

    few = plan_text(
        prompt="p",
        model="m",
        image_size=None,
        accepted=3,
        skipped={"duplicate": 1},
        skipped_entries=entries[-1:],
        estimate=ESTIMATE,
    )
    assert "Skipped (also in the manifest):" in few
    assert "• `'x'[a](http://e) <@1>`: duplicate" in few  # a code span: no link, mention or markup comes out


def test_plan_text_is_plain_when_shown_on_a_terminal() -> None:
    text = plan_text(
        prompt="a *bold*\nfox",
        model="m",
        image_size=None,
        accepted=3,
        skipped={"duplicate": 1},
        skipped_entries=[("a\tb.png", "duplicate")],
        estimate=ESTIMATE,
        markdown=False,
    )
    assert text.splitlines()[0] == "Batch ready: a *bold* fox"
    assert "• a b.png: duplicate" in text and "`" not in text and "Start" not in text


def test_plan_text_names_row_problems_and_shared_references_escaped_when_they_hold_markup() -> None:
    text = plan_text(
        prompt="p",
        model="m",
        image_size=None,
        accepted=3,
        skipped={"row_missing_file": 1},
        estimate=ESTIMATE,
        problems=["prompts.csv line 4 ([x](https://evil.example)): it is not in the ZIP"],
        references=["@everyone.png", "style.png"],
    )

    assert "⚠️ prompts.csv line 4 (" in text and "[x](https://evil.example)" not in text
    assert "🖼️ 2 shared reference(s) for every image: " in text and "style.png" in text
    assert "@everyone" not in text  # escaped: it pings nobody even where mentions were allowed
    assert "Note:" not in text


def test_plan_text_shows_the_budget_line_after_the_cost_when_a_cap_applies() -> None:
    common: dict[str, Any] = {
        "prompt": "a fox",
        "model": "gemini-2.5-flash-image",
        "image_size": None,
        "accepted": 10,
        "skipped": {},
        "estimate": estimate_batch(items=10, unit_price_usd=0.039, latency_s=12, concurrency=10),
    }
    line = "🧾 $6.10 left of your daily cap · $5.71 after this batch"
    text = plan_text(**common, budget=line)
    assert text.index("about $0.39") < text.index(line) < text.index("Nothing is queued")
    assert "left of your" not in plan_text(**common)
