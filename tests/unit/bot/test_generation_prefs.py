import pytest

from bot.app.generation import link_name
from bot.app.generation_types import UserPrefs, safety_reason
from bot.core.models import ItemStatus


def test_prefs_round_trip_when_stored_and_read():
    prefs = UserPrefs(model="gemini-3-pro-image-preview", aspect_ratio="16:9", image_size="2K", grid_size=2, remix=True)
    assert UserPrefs.from_json(prefs.to_json()) == prefs


def test_prefs_ignore_values_that_do_not_fit_when_read():
    prefs = UserPrefs.from_json({"aspect_ratio": "7:3", "image_size": "9K", "grid_size": 3, "remix": "yes", "x": 1})
    assert prefs == UserPrefs()


def test_safety_reason_is_the_fixed_message_when_every_failure_was_a_block():
    items = [
        (ItemStatus.ERROR, "SAFETY", "Gemini blocked the prompt: OTHER (see <x at 0x1>)"),
        (ItemStatus.ERROR, "SAFETY", None),
    ]
    assert safety_reason(items) == "Blocked by Gemini's safety filters."


def test_safety_reason_is_none_when_a_failure_was_something_else():
    assert safety_reason([(ItemStatus.ERROR, "SAFETY", "x"), (ItemStatus.ERROR, "UPSTREAM", "boom")]) is None
    assert safety_reason([(ItemStatus.OK, None, None)]) is None


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://example.com/art/style.png", "style.png"),
        ("https://example.com/art/style.png?size=2", "style.png"),
        ("https://example.com/art/", "art"),
        ("https://example.com", "example.com"),
    ],
)
def test_a_linked_reference_is_named_by_its_links_last_segment(url: str, name: str) -> None:
    assert link_name(url) == name
