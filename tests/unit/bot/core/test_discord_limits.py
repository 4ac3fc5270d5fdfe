"""Fitting a message to Discord's limits: kept at the limit, cut one past it, never cut inside a link or mention."""

import pytest

from bot.core.discord_limits import (
    EMBED_DESCRIPTION,
    EMBED_FIELD_VALUE,
    EMBED_FIELDS,
    EMBED_TITLE,
    EMBED_TOTAL,
    LINK_URL,
    MAX_CONTENT,
    MAX_EMBEDS,
    cut_point,
    embed_length,
    fit_content,
    fit_embed,
    fit_embeds,
    fit_link_url,
    fit_text,
)
from bot.core.render import lifecycle_line


def test_content_at_the_limit_is_kept() -> None:
    text = "x" * MAX_CONTENT
    assert fit_content(text) == text


def test_content_one_past_the_limit_is_cut_with_an_ellipsis() -> None:
    fitted = fit_content("x" * (MAX_CONTENT + 1))
    assert len(fitted) == MAX_CONTENT
    assert fitted.endswith("…")


@pytest.mark.parametrize(
    "piece",
    [
        "<@123456789012345678>",
        "<@!123>",
        "<@&42>",
        "<#42>",
        "</imagine:123>",
        "<:peel:123456>",
        "<a:peel:123456>",
        "<t:1700000000:R>",
        "[a masked link](https://example.com/x)",
        "<https://example.com/a/long/path>",
        "`a code span`",
        "```\nblock\n```",
        "\\*",
    ],
)
def test_a_cut_inside_a_piece_moves_before_it(piece: str) -> None:
    text = "ab " + piece + " tail"
    for at in range(4, 3 + len(piece)):  # every cut strictly inside the piece
        assert cut_point(text, at) == 3, (piece, at)
    assert cut_point(text, 3 + len(piece)) == 3 + len(piece)  # right after it: kept whole


def test_fit_text_never_leaves_half_a_mention_or_link() -> None:
    text = "hello <@123456> and [text](https://e.x/y) end"
    for limit in range(1, len(text)):
        fitted = fit_text(text, limit)
        assert len(fitted) <= limit
        assert fitted.endswith("…")
        assert "<@1" not in fitted or "<@123456>" in fitted
        assert "[text]" not in fitted or "[text](https://e.x/y)" in fitted


def test_fit_text_does_not_split_a_surrogate_pair() -> None:
    text = "a" + "\ud83c\udf4c" + "bc"  # a lone surrogate pair, as some decoders leave them
    assert fit_text(text, 3) == "a…"


def test_lifecycle_line_cut_keeps_escapes_whole() -> None:
    line = lifecycle_line("*" * 3000, "<@1>", "fast")
    assert len(line) <= MAX_CONTENT
    body = line.removeprefix("**").split("…")[0]
    assert body and set(body) == {"\\", "*"} and len(body) % 2 == 0  # only whole `\*` escapes before the cut


def test_embed_texts_at_their_limits_are_kept() -> None:
    embed = {"title": "t" * EMBED_TITLE, "description": "d" * EMBED_DESCRIPTION}
    assert fit_embed(embed) == embed


def test_embed_texts_one_past_their_limits_are_cut() -> None:
    fitted = fit_embed({"title": "t" * (EMBED_TITLE + 1), "description": "d" * (EMBED_DESCRIPTION + 1)})
    assert len(fitted["title"]) == EMBED_TITLE and fitted["title"].endswith("…")
    assert len(fitted["description"]) == EMBED_DESCRIPTION and fitted["description"].endswith("…")


def test_embed_fields_past_25_are_dropped_and_values_cut() -> None:
    fields = [{"name": "n", "value": "v" * (EMBED_FIELD_VALUE + 1), "inline": False}] * (EMBED_FIELDS + 1)
    fitted = fit_embed({"fields": fields})
    assert len(fitted["fields"]) <= EMBED_FIELDS
    assert all(len(f["value"]) <= EMBED_FIELD_VALUE and f["inline"] is False for f in fitted["fields"])
    assert embed_length(fitted) <= EMBED_TOTAL


def test_embed_at_6000_in_all_is_kept_and_one_past_is_cut() -> None:
    fields = [{"name": "n", "value": "v" * 999}] * 2  # 2,000 characters
    at_limit = {"title": "t" * 100, "description": "d" * 3900, "fields": fields}
    assert embed_length(at_limit) == EMBED_TOTAL
    assert fit_embed(at_limit) == at_limit
    over = {**at_limit, "description": "d" * 3901}
    fitted = fit_embed(over)
    assert embed_length(fitted) <= EMBED_TOTAL
    assert fitted["description"].endswith("…") and fitted["fields"] == fields


def test_embeds_past_ten_are_dropped_and_share_the_6000() -> None:
    embeds = [{"description": "d" * 1000} for _ in range(MAX_EMBEDS + 1)]
    fitted = fit_embeds(embeds)
    assert len(fitted) <= MAX_EMBEDS
    assert sum(embed_length(e) for e in fitted) <= EMBED_TOTAL


def test_link_url_at_512_is_kept_and_one_past_is_dropped() -> None:
    url = "https://x.example/" + "a" * (LINK_URL - len("https://x.example/"))
    assert fit_link_url(url) == url
    assert fit_link_url(url + "b") is None
