"""References marked as style, character or object, and image links in prompts."""

import pytest

from bot.core.references import RefParseError, RefRole, parse_labels, take_links, with_roles, without_roles


def test_take_links_takes_each_parameters_links_and_bare_links_out_of_the_prompt() -> None:
    taken = take_links("a cat --sref https://a.example/s.png https://a.example/t.png --ar 3:2 http://b.example/x.jpg")
    assert taken.text == "a cat --ar 3:2"
    assert [(link.url, link.role) for link in taken.links] == [
        ("https://a.example/s.png", RefRole.STYLE),
        ("https://a.example/t.png", RefRole.STYLE),
        ("http://b.example/x.jpg", None),
    ]
    assert [link.role for link in take_links("x --cref https://c.example/c --oref https://o.example/o").links] == [
        RefRole.CHARACTER,
        RefRole.OBJECT,
    ]


def test_take_links_refuses_a_reference_parameter_without_a_link() -> None:
    with pytest.raises(RefParseError, match="--sref"):
        take_links("a cat --sref 1234")


def test_parse_labels_marks_attachments_by_number_and_leaves_the_others_plain() -> None:
    assert parse_labels("1=style, 3=character", 3) == (RefRole.STYLE, None, RefRole.CHARACTER)
    assert parse_labels(None, 2) == (None, None)


@pytest.mark.parametrize("text", ["1=colour", "4=style", "style"])
def test_parse_labels_refuses_an_unknown_role_or_image(text: str) -> None:
    with pytest.raises(RefParseError):
        parse_labels(text, 3)


def test_with_roles_tells_the_model_what_each_marked_image_is_for() -> None:
    text = with_roles("a knight", (None, RefRole.STYLE, RefRole.CHARACTER))
    assert text.startswith("a knight\n\n")
    assert "Use image 2 only for its style" in text and "Image 3 shows a character" in text
    assert "image 1" not in text.lower()
    assert with_roles("a knight", (None,)) == "a knight"


def test_without_roles_gives_back_the_prompt_a_tool_sends_with_other_images() -> None:
    prompt = "a knight\n\nwith a lance"
    assert without_roles(with_roles(prompt, (RefRole.OBJECT, None, RefRole.STYLE))) == prompt
    assert without_roles(prompt) == prompt  # a prompt's own paragraphs stay
