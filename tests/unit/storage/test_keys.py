import pytest

from storage import InvalidKeyError, validate_key
from storage.keys import MAX_KEY_LENGTH, validate_prefix

GOOD = [
    "a",
    "a.png",
    "inputs/0f3a.png",
    "outputs/job-1/00000.png",
    "zips/g_1/export=all+1@2.zip",
    ".hidden",
    "a/.b",
    "x" * MAX_KEY_LENGTH,
]


@pytest.mark.parametrize("key", GOOD)
def test_validate_key_returns_key_when_key_is_safe(key: str) -> None:
    assert validate_key(key) is key


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "empty key"),
        ("x" * (MAX_KEY_LENGTH + 1), "longer"),
        ("/etc/passwd", "absolute"),
        ("..", "segment"),
        ("../x", "segment"),
        ("a/../b", "segment"),
        ("a/..", "segment"),
        ("./a", "segment"),
        ("a/./b", "segment"),
        ("a//b", "segment"),
        ("a/", "segment"),
        ("a\\b", "backslash"),
        ("..\\..\\x", "backslash"),
        ("C:\\x", "backslash"),
        ("a\x00b", "control"),
        ("a\nb", "control"),
        ("a\tb", "control"),
        ("a\x7fb", "control"),
        ("caf\u00e9", "unsupported"),
        ("a b", "unsupported"),
        ("a?b", "unsupported"),
        ("a#b", "unsupported"),
        ("a%2e%2e", "unsupported"),
        ("~tmp", "unsupported"),
        ("/", "absolute"),
    ],
)
def test_validate_key_raises_when_key_is_unsafe(key: str, reason: str) -> None:
    with pytest.raises(InvalidKeyError, match=reason):
        validate_key(key)


@pytest.mark.parametrize("prefix", ["", "a", "a/", "outputs/job-1/", "outputs/jo"])
def test_validate_prefix_accepts_prefix_when_empty_or_key_like(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/", "../", "a//", "a\\", "/a/"])
def test_validate_prefix_raises_when_prefix_is_unsafe(prefix: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_prefix(prefix)


def test_a_thumbnail_sits_beside_its_image() -> None:
    from storage.keys import thumb_key

    assert thumb_key("outputs/j_1/00002.png") == "outputs/j_1/00002.thumb.webp"
    assert thumb_key("outputs/j_1/noext") == "outputs/j_1/noext.thumb.webp"
    assert thumb_key("a.b/c") == "a.b/c.thumb.webp"
