"""Stable link tokens: only the secret's holder makes one, they name exactly what was signed, and never change."""

import pytest

from bot.web.stable import MAX_TOKEN_CHARS, StableLinks, StableTarget

LINKS = StableLinks(b"unit-secret", "https://peel.example.com/")
KEY = "outputs/j_01HZX3K9Q7RVM2B8T4N6C5D0EF/00001.png"


def test_token_names_the_key_and_file_name_it_was_made_for() -> None:
    token = LINKS.token(KEY, filename="j-2.png")
    assert LINKS.resolve(token) == StableTarget(KEY, "j-2.png")
    assert LINKS.resolve(LINKS.token(KEY)) == StableTarget(KEY, None)


def test_token_is_the_same_every_time_and_differs_per_key_and_file_name() -> None:
    assert LINKS.token(KEY) == LINKS.token(KEY)
    assert len({LINKS.token(KEY), LINKS.token(KEY + "x"), LINKS.token(KEY, filename="a.png")}) == 3


def test_url_is_short_enough_for_a_discord_link_button_and_uses_only_url_safe_characters() -> None:
    url = LINKS.url(KEY, filename="j_01HZX3K9Q7RVM2B8T4N6C5D0EF-2.png")
    assert url.startswith("https://peel.example.com/l/")
    assert len(url) < 200  # a link button takes 512 (Discord: Button Object, url)
    token = url.rpartition("/")[2]
    assert token.replace("-", "").replace("_", "").replace(".", "").isalnum()


def test_token_made_with_another_secret_is_refused() -> None:
    other = StableLinks(b"another-secret", LINKS.base_url)
    assert LINKS.resolve(other.token(KEY)) is None


def test_token_with_its_key_swapped_is_refused() -> None:
    mac = LINKS.token(KEY).partition(".")[2]
    forged_payload = LINKS.token("outputs/other/00000.png").partition(".")[0]
    assert LINKS.resolve(f"{forged_payload}.{mac}") is None


@pytest.mark.parametrize(
    "token",
    ["", ".", "abc", "abc.", ".abc", "a.b.c", "!!!.???", "YWJj.YWJj=", "é.é", "x" * (MAX_TOKEN_CHARS + 1)],
)
def test_malformed_token_is_refused(token: str) -> None:
    assert LINKS.resolve(token) is None


def test_token_with_its_signature_cut_short_is_refused() -> None:
    token = LINKS.token(KEY)
    assert LINKS.resolve(token[:-1]) is None
