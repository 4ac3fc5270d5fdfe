"""Discord's message and modal rules, checked without a server."""

from __future__ import annotations

from typing import Any

import pytest

from local.discord.ratelimit import RateLimiter
from local.discord.rules import ApiError, check_message, check_modal


def errors_of(payload: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ApiError) as caught:
        check_message(payload, has_files=False)
    assert (caught.value.status, caught.value.code) == (400, 50035)
    assert caught.value.errors is not None
    return caught.value.errors


def row(*components: dict[str, Any]) -> dict[str, Any]:
    return {"type": 1, "components": list(components)}


def test_link_button_needs_a_url_and_other_buttons_a_custom_id_when_sent():
    errors = errors_of(
        {"components": [row({"type": 2, "style": 5, "label": "x"}, {"type": 2, "style": 1, "label": "y"})]}
    )
    buttons = errors["components"]["0"]["components"]
    assert buttons["0"]["url"]["_errors"][0]["code"] == "BASE_TYPE_REQUIRED"
    assert buttons["1"]["custom_id"]["_errors"][0]["code"] == "BASE_TYPE_REQUIRED"


def test_button_label_is_limited_to_80_characters_when_sent():
    errors = errors_of({"components": [row({"type": 2, "style": 1, "label": "l" * 81, "custom_id": "a"})]})
    assert (
        errors["components"]["0"]["components"]["0"]["label"]["_errors"][0]["message"]
        == "Must be 80 or fewer in length."
    )


def test_select_menu_fills_its_row_and_offers_at_most_25_options_when_sent():
    options = [{"label": str(i), "value": str(i)} for i in range(26)]
    menu = {"type": 3, "custom_id": "s", "options": options}
    errors = errors_of({"components": [row(menu, {"type": 2, "style": 1, "label": "b", "custom_id": "b"})]})
    row_errors = errors["components"]["0"]["components"]
    assert row_errors["_errors"][0]["code"] == "COMPONENT_LAYOUT_WIDTH_EXCEEDED"
    assert row_errors["0"]["options"]["_errors"][0]["code"] == "BASE_TYPE_MAX_LENGTH"


def test_embed_author_footer_and_field_count_are_limited_when_sent():
    embed = {
        "author": {"name": "a" * 257},
        "footer": {"text": "f" * 2049},
        "fields": [{"name": "n", "value": "v"}] * 26,
    }
    errors = errors_of({"embeds": [embed]})["embeds"]["0"]
    assert set(errors) == {"author", "footer", "fields"}


def test_non_object_embed_is_a_type_error_when_sent():
    assert errors_of({"embeds": ["nope"]})["embeds"]["0"]["_errors"][0]["code"] == "DICT_TYPE_CONVERT"


def test_components_v2_top_level_components_are_accepted_when_sent():
    check_message({"components": [{"type": 10, "content": "hello"}], "flags": 32768}, has_files=False)


def test_edit_may_be_empty_but_a_create_may_not_when_checked():
    check_message({}, has_files=False, require_body=False)
    check_message({}, has_files=True)
    with pytest.raises(ApiError) as caught:
        check_message({}, has_files=False)
    assert caught.value.body() == {"message": "Cannot send an empty message", "code": 50006}


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"title": "t", "components": [row()]}, "custom_id"),
        ({"custom_id": "c" * 101, "title": "t", "components": [row()]}, "custom_id"),
        ({"custom_id": "m", "title": "t"}, "components"),
        ({"custom_id": "m", "title": "t", "components": [row()] * 6}, "components"),
    ],
)
def test_modal_is_rejected_when_malformed(data: dict[str, Any], path: str):
    with pytest.raises(ApiError) as caught:
        check_modal(data)
    assert caught.value.errors is not None
    assert path in caught.value.errors["data"]


def test_rate_limiter_counts_per_key_and_resets_after_the_window_when_hit():
    now = [0.0]
    limiter = RateLimiter(limit=2, window_s=1.0, clock=lambda: now[0])
    assert [limiter.hit("a").allowed for _ in range(3)] == [True, True, False]
    assert limiter.hit("b").allowed
    denied = limiter.hit("a")
    assert denied.headers()["Retry-After"] == "1"
    assert denied.body()["retry_after"] == 1.0
    now[0] = 1.0
    assert limiter.hit("a").remaining == 1
