import pytest

from usertext.controls import strip_controls


@pytest.mark.parametrize(
    ("text", "replacement", "expected"),
    [
        ("invoice\u202egnp.exe", "", "invoicegnp.exe"),
        ("a\u2066b\u2069c\u200e\u200f\u061cd", "_", "abcd"),
        ("line\nbreak\ttab\x7fdel\x85nel", " ", "line break tab del nel"),
        ("line\nbreak", "_", "line_break"),
        ("plain text, émoji 🦊", "_", "plain text, émoji 🦊"),
    ],
)
def test_strip_controls_drops_bidi_and_replaces_cc_when_text_holds_them(
    text: str, replacement: str, expected: str
) -> None:
    assert strip_controls(text, replacement=replacement) == expected
