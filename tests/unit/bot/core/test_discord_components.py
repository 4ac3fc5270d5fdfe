"""Fitting components and modals to Discord's limits: kept at the limit, fitted or refused one past it."""

from typing import Any

import pytest

from bot.core.discord_limits import (
    BUTTON_LABEL,
    CUSTOM_ID,
    LABEL_DESCRIPTION,
    LINK_URL,
    MAX_BUTTONS_PER_ROW,
    MAX_ROWS,
    MODAL_ROWS,
    MODAL_TITLE,
    OPTION_TEXT,
    SELECT_OPTIONS,
    SELECT_PLACEHOLDER,
    TEXT_INPUT_LABEL,
    TEXT_INPUT_PLACEHOLDER,
    TEXT_INPUT_VALUE,
    THREAD_NAME,
    fit_button,
    fit_components,
    fit_modal,
    fit_select,
    fit_text_input,
    fit_thread_name,
)


def button(custom_id: str = "b", **fields: Any) -> dict[str, Any]:
    return {"type": 2, "style": 2, "custom_id": custom_id, "label": "Go", **fields}


def link(url: str, **fields: Any) -> dict[str, Any]:
    return {"type": 2, "style": 5, "url": url, "label": "Full size", **fields}


def row(*components: dict[str, Any]) -> dict[str, Any]:
    return {"type": 1, "components": list(components)}


def select(options: int = 3, **fields: Any) -> dict[str, Any]:
    chosen = [{"label": f"o{i}", "value": f"v{i}"} for i in range(options)]
    return {"type": 3, "custom_id": "s", "options": chosen, **fields}


def text_input(**fields: Any) -> dict[str, Any]:
    return {"type": 4, "custom_id": "t", "style": 2, "label": "Prompt", **fields}


def modal(*rows: dict[str, Any], title: str = "Remix") -> dict[str, Any]:
    return {"custom_id": "m", "title": title, "components": list(rows) or [row(text_input())]}


# ---- buttons -------------------------------------------------------------------------------------------------------


def test_button_label_at_the_limit_is_kept() -> None:
    assert fit_button(button(label="x" * BUTTON_LABEL)) == button(label="x" * BUTTON_LABEL)


def test_button_label_one_past_the_limit_is_cut_with_an_ellipsis() -> None:
    fitted = fit_button(button(label="x" * (BUTTON_LABEL + 1)))
    assert fitted is not None
    assert len(fitted["label"]) == BUTTON_LABEL
    assert fitted["label"].endswith("…")


def test_link_url_at_the_limit_is_kept() -> None:
    url = "https://peel.example/" + "a" * (LINK_URL - 21)
    assert fit_button(link(url)) == link(url)


def test_link_button_is_dropped_when_its_url_is_one_past_the_limit() -> None:
    url = "https://peel.example/" + "a" * (LINK_URL - 20)
    assert fit_button(link(url)) is None
    assert fit_components([row(button(), link(url))]) == [row(button())]
    assert fit_components([row(button()), row(link(url))]) == [row(button())]


@pytest.mark.parametrize(
    ("component", "message"),
    [
        (link("https://peel.example/x", custom_id="c"), "link button cannot have a custom_id"),
        ({"type": 2, "style": 2, "label": "Go"}, "needs a custom_id"),
        (button(url="https://peel.example/x"), "only a link button"),
        ({"type": 2, "style": 2, "custom_id": "b"}, "label or an emoji"),
        ({"type": 2, "style": 5, "url": "https://peel.example/x"}, "label or an emoji"),
    ],
)
def test_button_is_refused_when_discord_would_refuse_its_kind(component: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_button(component)


def test_button_with_only_an_emoji_is_kept() -> None:
    emoji_only = {"type": 2, "style": 2, "custom_id": "b", "emoji": {"name": "🔄"}}
    assert fit_button(emoji_only) == emoji_only


# ---- rows and custom ids -------------------------------------------------------------------------------------------


def test_five_rows_of_five_buttons_are_kept() -> None:
    rows = [row(*(button(f"b{r}{c}") for c in range(MAX_BUTTONS_PER_ROW))) for r in range(MAX_ROWS)]
    assert fit_components(rows) == rows


def test_a_sixth_row_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 5 action rows"):
        fit_components([row(button(f"b{r}")) for r in range(MAX_ROWS + 1)])


def test_a_sixth_button_in_a_row_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 5 components"):
        fit_components([row(*(button(f"b{c}") for c in range(MAX_BUTTONS_PER_ROW + 1)))])


def test_a_select_sharing_its_row_is_refused() -> None:
    with pytest.raises(ValueError, match="whole action row"):
        fit_components([row(select(), button())])


def test_custom_id_at_the_limit_is_kept_and_one_past_it_refused() -> None:
    assert fit_components([row(button("c" * CUSTOM_ID))]) == [row(button("c" * CUSTOM_ID))]
    with pytest.raises(ValueError, match="custom_id must be 1 to 100"):
        fit_components([row(button("c" * (CUSTOM_ID + 1)))])


def test_a_custom_id_used_twice_in_a_message_is_refused_across_rows() -> None:
    with pytest.raises(ValueError, match="used twice"):
        fit_components([row(button("same")), row(button("same"))])


# ---- selects -------------------------------------------------------------------------------------------------------


def test_select_at_its_limits_is_kept() -> None:
    full = select(SELECT_OPTIONS, placeholder="p" * SELECT_PLACEHOLDER)
    full["options"][0] = {"label": "l" * OPTION_TEXT, "value": "v" * OPTION_TEXT, "description": "d" * OPTION_TEXT}
    assert fit_select(full) == full


def test_select_keeps_its_first_25_options_and_bounds_within_them() -> None:
    fitted = fit_select(select(SELECT_OPTIONS + 1, max_values=SELECT_OPTIONS + 1))
    assert [o["value"] for o in fitted["options"]] == [f"v{i}" for i in range(SELECT_OPTIONS)]
    assert fitted["max_values"] == SELECT_OPTIONS


def test_select_texts_one_past_their_limits_are_cut() -> None:
    long = select(1, placeholder="p" * (SELECT_PLACEHOLDER + 1))
    long["options"][0] |= {"label": "l" * (OPTION_TEXT + 1), "description": "d" * (OPTION_TEXT + 1)}
    fitted = fit_select(long)
    assert len(fitted["placeholder"]) == SELECT_PLACEHOLDER
    assert len(fitted["options"][0]["label"]) == OPTION_TEXT
    assert len(fitted["options"][0]["description"]) == OPTION_TEXT


def test_select_option_value_one_past_the_limit_is_refused() -> None:
    long = select(1)
    long["options"][0]["value"] = "v" * (OPTION_TEXT + 1)
    with pytest.raises(ValueError, match="value"):
        fit_select(long)


# ---- modals and text inputs ----------------------------------------------------------------------------------------


def test_modal_at_its_limits_is_kept() -> None:
    full = modal(
        *(
            row(
                text_input(
                    custom_id=f"t{i}",
                    label="l" * TEXT_INPUT_LABEL,
                    placeholder="p" * TEXT_INPUT_PLACEHOLDER,
                    value="v" * TEXT_INPUT_VALUE,
                    min_length=TEXT_INPUT_VALUE,
                    max_length=TEXT_INPUT_VALUE,
                )
            )
            for i in range(MODAL_ROWS)
        ),
        title="t" * MODAL_TITLE,
    )
    assert fit_modal(full) == full


def test_modal_title_one_past_the_limit_is_cut() -> None:
    assert len(fit_modal(modal(title="t" * (MODAL_TITLE + 1)))["title"]) == MODAL_TITLE


def test_text_input_texts_one_past_their_limits_are_cut() -> None:
    fitted = fit_text_input(
        text_input(label="l" * (TEXT_INPUT_LABEL + 1), placeholder="p" * (TEXT_INPUT_PLACEHOLDER + 1))
    )
    assert len(fitted["label"]) == TEXT_INPUT_LABEL
    assert len(fitted["placeholder"]) == TEXT_INPUT_PLACEHOLDER


def test_text_input_value_one_past_the_limit_is_cut_without_an_ellipsis() -> None:
    value = "a prompt " * 500
    fitted = fit_text_input(text_input(value=value))
    assert fitted["value"] == value[:TEXT_INPUT_VALUE]


def test_text_input_value_is_cut_to_its_max_length_and_never_inside_a_mention() -> None:
    assert fit_text_input(text_input(value="x" * 10, max_length=10))["value"] == "x" * 10
    fitted = fit_text_input(text_input(value="x" * 8 + "<@123>", max_length=10))
    assert fitted["value"] == "x" * 8


def test_text_input_lengths_are_clamped_to_discords_range() -> None:
    fitted = fit_text_input(text_input(min_length=-1, max_length=TEXT_INPUT_VALUE + 1))
    assert (fitted["min_length"], fitted["max_length"]) == (0, TEXT_INPUT_VALUE)
    assert fit_text_input(text_input(max_length=0))["max_length"] == 1


def test_label_wrapped_input_has_its_label_and_description_cut() -> None:
    labelled = {
        "type": 18,
        "label": "l" * (TEXT_INPUT_LABEL + 1),
        "description": "d" * (LABEL_DESCRIPTION + 1),
        "component": text_input(),
    }
    fitted = fit_modal(modal(labelled))["components"][0]
    assert (len(fitted["label"]), len(fitted["description"])) == (TEXT_INPUT_LABEL, LABEL_DESCRIPTION)


def test_modal_with_a_sixth_row_or_none_is_refused() -> None:
    with pytest.raises(ValueError, match="1 to 5 rows"):
        fit_modal(modal(*(row(text_input(custom_id=f"t{i}")) for i in range(MODAL_ROWS + 1))))
    with pytest.raises(ValueError, match="1 to 5 rows"):
        fit_modal({"custom_id": "m", "title": "x", "components": []})


def test_modal_custom_id_one_past_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="custom_id"):
        fit_modal({**modal(), "custom_id": "m" * (CUSTOM_ID + 1)})


def test_thread_name_at_the_limit_is_kept_and_one_past_it_cut() -> None:
    assert fit_thread_name("n" * THREAD_NAME) == "n" * THREAD_NAME
    assert len(fit_thread_name("n" * (THREAD_NAME + 1))) == THREAD_NAME
    assert fit_thread_name("  ") == "Thread"
