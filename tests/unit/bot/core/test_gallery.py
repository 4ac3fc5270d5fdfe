"""The gallery's pure rules: tokens, search patterns, selections, filters and paging."""

import pytest

from bot.core.gallery import (
    GalleryFilter,
    clean_query,
    gallery_token,
    is_well_formed_token,
    like_pattern,
    page_count,
    parse_selection,
    token_hash,
)


def test_a_token_is_128_bits_bound_to_secret_group_and_nonce() -> None:
    token = gallery_token(b"s", "g_1", "n")
    assert is_well_formed_token(token) and len(token) == 22
    assert token == gallery_token(b"s", "g_1", "n")
    assert (
        len({token, gallery_token(b"t", "g_1", "n"), gallery_token(b"s", "g_2", "n"), gallery_token(b"s", "g_1", "m")})
        == 4
    )
    assert token_hash(token) != token and len(token_hash(token)) == 64


@pytest.mark.parametrize("token", ["", "short", "A" * 23, "A" * 21 + "/", "A" * 21 + "é"])
def test_tokens_of_another_shape_are_refused(token: str) -> None:
    assert not is_well_formed_token(token)


def test_like_wildcards_in_a_search_are_literal() -> None:
    assert like_pattern("100%_a\\b") == "%100\\%\\_a\\\\b%"
    assert clean_query("  fox ") == "fox" and len(clean_query("x" * 500)) == 100


def test_a_selection_keeps_well_formed_pairs_once_in_order() -> None:
    values = ["j_1:3", "j_1:3", "j_2:0", "bad", ":1", "j_3:-1", "j_3:x", "j_4:1234567890"]
    assert parse_selection(values) == [("j_1", 3), ("j_2", 0)]


def test_unknown_filters_show_everything_and_pages_are_at_least_one() -> None:
    assert GalleryFilter.parse("failed") is GalleryFilter.FAILED
    assert GalleryFilter.parse("<x>") is GalleryFilter.ALL and GalleryFilter.parse(None) is GalleryFilter.ALL
    assert page_count(0) == 1 and page_count(60) == 1 and page_count(61) == 2
