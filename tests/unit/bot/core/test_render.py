"""Message text and custom ids, decided without Discord."""

from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.core import render
from bot.core.budgets import Period, Refused, ScopeKind
from bot.core.models import JobStatus
from bot.core.render import (
    BatchProgress,
    CustomId,
    batch_progress_text,
    blocked_title,
    budget_paused_line,
    code,
    download_line,
    echo,
    edit_display,
    escape_markdown,
    eta_s,
    format_duration,
    fresh_zip_line,
    generating_state,
    image_line,
    images_line,
    job_note_lines,
    lifecycle_line,
    one_line,
    progress_bar,
    truncate,
    waiting_state,
    with_notes,
)


def test_custom_id_round_trips_when_encoded_and_decoded() -> None:
    cid = CustomId("upscale", "j_abc123", 3)
    assert cid.encode() == "peel:upscale:j_abc123:3"
    assert CustomId.decode(cid.encode()) == cid


@pytest.mark.parametrize("value", ["peel:u:j", "other:u:j:1", "peel:u:j:x", "peel:u:j/../:1", "peel:u:j:1:2"])
def test_custom_id_is_none_when_foreign_or_malformed(value: str) -> None:
    assert CustomId.decode(value) is None


def test_custom_id_is_refused_when_too_long_or_unsafe() -> None:
    with pytest.raises(ValueError, match="longer than 100"):
        CustomId("a", "j" * 100).encode()
    with pytest.raises(ValueError, match="characters"):
        CustomId("a:b", "j").encode()


def test_lifecycle_line_reads_like_midjourney_when_short() -> None:
    assert lifecycle_line("a fox", "<@1>", "Waiting to start") == "**a fox** - <@1> (Waiting to start)"


def test_lifecycle_line_fits_discord_when_prompt_is_huge() -> None:
    line = lifecycle_line("x" * 5000, "<@123456789012345678>", "generating… 1m 05s")
    assert len(line) <= 2000
    assert line.endswith("** - <@123456789012345678> (generating… 1m 05s)")


def test_markdown_in_prompt_is_escaped_when_shown() -> None:
    assert escape_markdown("**bold** _x_ `y`") == r"\*\*bold\*\* \_x\_ \`y\`"


@pytest.mark.parametrize(
    ("prompt", "shown"),
    [
        ("<@123> look", "\\<@\u200b123> look"),
        ("<@!123> <@&45> @everyone @here", "\\<@\u200b!123> \\<@\u200b&45> @\u200beveryone @\u200bhere"),
        ("[free nitro](https://evil.example)", "\\[free nitro\\](https://evil.example)"),
        ("a fox\u202egnp.exe", "a foxgnp.exe"),
        ("\u2066\u2067\u2068\u2069\u202a\u202b\u202c\u202d\u200e\u200f\u061cok", "ok"),
        ("two\nlines\r\x00\x85x", "two lines   x"),
        ("# big\n> quote\n-# small", "\\# big > quote -# small"),  # one line: only its start is markdown
        ("<t:0:R> <#1> <:e:2>", "\\<t:0:R> \\<#1> \\<:e:2>"),
    ],
    ids=["user-mention", "other-mentions", "masked-link", "rtl-override", "bidi", "controls", "line-start", "angle"],
)
def test_echo_shows_user_text_as_typed_when_it_holds_mentions_links_or_controls(prompt: str, shown: str) -> None:
    assert echo(prompt) == shown


@pytest.mark.parametrize("line", [lifecycle_line, lambda p, m, s: image_line(p, 2, m)])
def test_prompt_lines_echo_the_prompt_safely_when_it_is_hostile(line) -> None:
    text = line("<@42> [x](https://evil.example) \u202egnp.exe @everyone", "<@1>", "fast")
    assert "<@42>" not in text
    assert "[x](" not in text
    assert "\u202e" not in text
    assert "@everyone" not in text
    assert "<@1>" in text  # Peel's own mention of the requester stays


def test_one_line_drops_controls_and_line_breaks_when_a_name_is_given() -> None:
    assert one_line(" my\u202e  group\n\tname\x00 ") == "my group name"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (45.4, "45s"),
        (65, "1m 05s"),
        (3600 + 600, "1h 10m"),
        (-3, "0s"),
        (7 * 86400, "7 days"),
        (50 * 3600, "2d 02h"),
    ],
)
def test_duration_is_short_when_formatted(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_states_show_position_and_progress() -> None:
    assert waiting_state(None) == "Waiting to start"
    assert waiting_state(3) == "Waiting to start · #3 in queue"
    assert generating_state(2, 4, 12) == "generating… 2/4 ready · 12s"
    assert generating_state(0, 1, 5) == "generating… 5s"


def test_a_running_job_shows_the_time_it_should_take_when_one_is_expected() -> None:
    assert generating_state(0, 4, 3, 12) == "generating… 0/4 ready · 3s of about 12s"
    assert generating_state(1, 1, 4, 9.6) == "generating… 4s of about 10s"
    assert generating_state(3, 4, 20, 12) == "generating… 3/4 ready · 20s, longer than the usual 12s"


@pytest.mark.parametrize(
    ("done", "total", "bar"),
    [(0, 10, "░░░░░░░░░░ 0%"), (5, 10, "▓▓▓▓▓░░░░░ 50%"), (10, 10, "▓▓▓▓▓▓▓▓▓▓ 100%"), (3, 0, "░░░░░░░░░░ 0%")],
)
def test_progress_bar_fills_in_proportion(done: int, total: int, bar: str) -> None:
    assert progress_bar(done, total, width=10) == bar


def test_eta_is_none_until_there_is_a_rate() -> None:
    assert eta_s(remaining=10, rate_per_s=0) is None
    assert eta_s(remaining=0, rate_per_s=0) == 0.0
    assert eta_s(remaining=100, rate_per_s=4) == 25


def test_batch_progress_text_has_counts_rate_eta_and_cost() -> None:
    text = batch_progress_text(BatchProgress(total=200, done=90, failed=5, blocked=5, elapsed_s=60, cost_usd=3.51))
    assert "▓" in text
    assert "✅ 90 done · ❌ 5 failed · 🚫 5 blocked · ⏳ 100 remaining" in text
    assert "90.0 images/min" in text
    assert "ETA 1m 07s" in text
    assert "$3.51" in text


def test_batch_progress_text_says_what_it_took_and_cost_when_ended() -> None:
    text = batch_progress_text(
        BatchProgress(total=80, done=80, failed=0, blocked=0, elapsed_s=125, cost_usd=3.12, state="done")
    )
    assert "took 2m 05s" in text and "$3.12" in text
    assert "ETA" not in text and "so far" not in text


def test_batch_progress_text_shows_state_when_paused() -> None:
    text = batch_progress_text(
        BatchProgress(total=10, done=1, failed=0, blocked=0, elapsed_s=5, cost_usd=0, state="paused")
    )
    assert "ETA paused" in text


def test_a_batch_paused_at_a_money_cap_says_which_what_counts_and_when_it_resets_in_the_budget_zone() -> None:
    refused = Refused(
        scope=ScopeKind.GUILD,
        period=Period.DAY,
        cap=1_340_000,
        spent=1_240_500,
        cost=134_000,
        resets_at=datetime(2026, 3, 9, 7, 0, tzinfo=UTC),  # midnight in Los Angeles (PDT from March 8)
    )
    line = budget_paused_line(refused, ZoneInfo("America/Los_Angeles"))
    assert line == (
        "⛔ Paused at this server's daily budget of $1.34: $1.24 is spent or reserved. It resets at "
        "2026-03-09 00:00 PDT; press Resume then, or ask an admin to raise it."
    )
    paused = BatchProgress(total=10, done=9, failed=0, blocked=0, elapsed_s=5, cost_usd=1.2, state="paused")
    assert line in batch_progress_text(replace(paused, budget_line=line))
    assert line not in batch_progress_text(replace(paused, budget_line=line, state="cancelled"))


def test_a_batch_cancelled_at_5_of_40_shows_how_far_it_got_and_what_was_not_made() -> None:
    text = batch_progress_text(
        BatchProgress(total=40, done=5, failed=0, blocked=0, cancelled=35, elapsed_s=5, cost_usd=0.2, state="cancelled")
    )
    assert progress_bar(5, 40) in text  # 12 %, not a full bar
    assert "✅ 5 done · ❌ 0 failed · 🚫 0 blocked · ⏹️ 35 not made (cancelled)" in text
    assert "remaining" not in text


@pytest.mark.parametrize(("chunks_out", "state"), [(2, "pausing…"), (0, "paused")])
def test_a_paused_batch_is_pausing_while_its_chunks_are_out(chunks_out: int, state: str) -> None:
    assert render.batch_state(JobStatus.PAUSED, chunks_out=chunks_out) == state
    assert render.batch_state(JobStatus.RUNNING, chunks_out=chunks_out) == "running"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("UPSTREAM", "Gemini is not answering"),
        ("RATE_LIMITED", "Gemini asks us to slow down"),
        ("NO_IMAGE", "Gemini answered without an image"),
        (None, "their last attempt failed"),
    ],
)
def test_batch_progress_text_says_items_are_retried_and_why_when_attempts_failed(code: str | None, reason: str) -> None:
    text = batch_progress_text(
        BatchProgress(total=100, done=10, failed=0, blocked=0, elapsed_s=60, cost_usd=0, retrying=8, retry_code=code)
    )
    assert text.splitlines()[-1] == f"🔁 8 retrying · {reason}; Peel tries again by itself"


def test_batch_progress_text_says_nothing_of_retries_when_none_or_ended() -> None:
    running = BatchProgress(total=100, done=10, failed=0, blocked=0, elapsed_s=60, cost_usd=0)
    ended = BatchProgress(total=100, done=90, failed=10, blocked=0, elapsed_s=60, cost_usd=0, state="done", retrying=3)
    assert "retrying" not in batch_progress_text(running)
    assert "retrying" not in batch_progress_text(ended)


def test_truncate_marks_the_cut() -> None:
    assert truncate("abcdef", 4) == "abc…"
    assert truncate("abc", 4) == "abc"


def test_download_line_masks_the_link_and_says_when_it_expires() -> None:
    line = download_line("http://x/files/a.zip?sig=1", what="12 images", expires_s=7 * 86400)
    assert line == "📦 [Download the ZIP](<http://x/files/a.zip?sig=1>) — 12 images; the link expires in 7 days"


def test_a_stable_download_link_says_it_works_as_long_as_the_zip_is_kept() -> None:
    line = download_line("http://x/l/abc.def", what="12 images", expires_s=None)
    assert line == "📦 [Download the ZIP](<http://x/l/abc.def>) — 12 images; the link works as long as the ZIP is kept"
    assert "expires" not in fresh_zip_line("http://x/l/abc.def", expires_s=None)
    assert fresh_zip_line("http://x/files/a.zip", expires_s=3 * 3600) == (
        "📦 A fresh link to the ZIP (the link expires in 3h 00m): http://x/files/a.zip"
    )


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("gemini-2.5", "`gemini-2.5`"),
        ("a`b", "`a'b`"),
        ("x` [link](https://evil.example) `", "`x' [link](https://evil.example) '`"),
        ("two\nlines\u202e", "`two lines`"),
        ("", "` `"),
        ("k" * 100, "`" + "k" * 79 + "…`"),
    ],
)
def test_code_quotes_user_text_in_one_span_when_it_holds_backticks_or_controls(text: str, shown: str) -> None:
    assert code(text) == shown


def test_full_size_link_is_kept_for_a_button_at_512_characters_and_dropped_past_them():
    at_limit = "https://store.example/" + "k" * 490
    assert len(at_limit) == 512
    assert render.full_size_link(at_limit) == at_limit
    assert render.full_size_link(at_limit + "k") is None


def test_full_size_line_is_added_when_it_fits_the_message_and_left_out_when_not():
    link = "https://store.example/" + "k" * 978  # a presigned URL made with temporary credentials
    assert render.with_full_size_line("**a fox** - Image #1", link) == f"**a fox** - Image #1\nFull size: <{link}>"
    long_content = "x" * (render.MAX_CONTENT - len(link))
    assert render.with_full_size_line(long_content, link) == long_content


def test_a_trial_that_made_its_n_says_it_waits_for_start_the_rest() -> None:
    assert render.batch_state(JobStatus.PAUSED, chunks_out=0, trial_held=True) == render.TRIAL_HELD
    assert render.batch_state(JobStatus.PAUSED, chunks_out=1, trial_held=True) == "pausing…"  # still finishing
    assert render.batch_state(JobStatus.RUNNING, chunks_out=0, trial_held=True) == "running"


def test_text_placed_mid_line_keeps_its_first_character_when_it_cannot_start_markdown() -> None:
    assert echo("#general", mid_line=True) == "#general"  # `• **#general**`: no heading can start there
    assert echo("#general") == "\\#general"  # alone on a line it could
    assert echo("*x* <@1>", mid_line=True) == "\\*x\\* \\<@\u200b1>"  # inline markdown and mentions still are
    assert lifecycle_line("# big", "<@1>", "fast") == "**# big** - <@1> (fast)"


def test_notes_and_references_go_under_a_job_s_line_one_a_line() -> None:
    lines = job_note_lines(["one", "two"], ["cat.png", "*style*.jpg"])
    assert lines == ("📎 with 2 references: cat.png, \\*style\\*.jpg", "ℹ️ one", "ℹ️ two")
    assert with_notes("**a** - <@1> (fast)", lines[1:]) == "**a** - <@1> (fast)\nℹ️ one\nℹ️ two"
    assert job_note_lines([], ["a.png"]) == ("📎 with 1 reference: a.png",)
    assert with_notes("line", job_note_lines([], [])) == "line"


def test_an_edit_shows_the_prompt_it_edits_then_its_instruction() -> None:
    assert edit_display("a cat --ar 3:2", "make the sky stormy") == "a cat --ar 3:2 ✏️ make the sky stormy"


def test_info_counts_images_and_says_spend_holds_what_failures_cost_when_some_were_not_made() -> None:
    assert images_line(12, 0) == "12 made"
    assert images_line(1200, 2) == (
        "1,200 made · 2 not made (blocked or failed; Spend includes what Gemini billed for them)"
    )


def test_a_blocked_job_s_title_is_the_code_s_sentence_said_once() -> None:
    assert blocked_title("Blocked by Gemini's safety filters.") == "Blocked by Gemini's safety filters"
