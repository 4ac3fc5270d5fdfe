from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from storage import InvalidKeyError, LinkSigner
from storage.links import content_disposition

NOW = 1_800_000_000.0
SIGNER = LinkSigner(b"s3cret", "https://peel.example/")


def parts(link: str) -> tuple[str, dict[str, str]]:
    split = urlsplit(link)
    query = {name: values[0] for name, values in parse_qs(split.query).items()}
    return unquote(split.path).removeprefix("/files/"), query


def test_sign_makes_link_under_base_url_when_key_is_valid() -> None:
    link = SIGNER.sign("outputs/j/00000.png", expires_s=600, now=NOW)
    assert link.startswith("https://peel.example/files/outputs/j/00000.png?")
    key, query = parts(link)
    assert key == "outputs/j/00000.png"
    assert query["exp"] == str(int(NOW) + 600)
    assert "dl" not in query
    assert SIGNER.verify(key, exp=query["exp"], sig=query["sig"], now=NOW)
    assert SIGNER.verify(key, exp=query["exp"], sig=query["sig"], now=NOW + 600)


def test_verify_accepts_filename_when_it_was_signed() -> None:
    key, query = parts(SIGNER.sign("zips/g/all.zip", expires_s=60, filename="my export.zip", now=NOW))
    assert query["dl"] == "my export.zip"
    assert SIGNER.verify(key, exp=query["exp"], sig=query["sig"], filename=query["dl"], now=NOW)


@pytest.mark.parametrize(
    "tamper",
    [
        {"key": "outputs/j/00001.png"},
        {"exp": str(int(NOW) + 601)},
        {"exp": "not-a-number"},
        {"sig": "0" * 64},
        {"sig": ""},
        {"filename": "other.zip"},
        {"filename": None},
    ],
)
def test_verify_refuses_link_when_any_part_is_tampered(tamper: dict[str, str | None]) -> None:
    key, query = parts(SIGNER.sign("outputs/j/00000.png", expires_s=600, filename="a.png", now=NOW))
    fields: dict[str, str | None] = {"key": key, "exp": query["exp"], "sig": query["sig"], "filename": query["dl"]}
    fields.update(tamper)
    assert fields["key"] is not None
    assert fields["exp"] is not None
    assert fields["sig"] is not None
    assert not SIGNER.verify(fields["key"], exp=fields["exp"], sig=fields["sig"], filename=fields["filename"], now=NOW)


def test_verify_refuses_link_when_filename_is_added_to_unnamed_link() -> None:
    key, query = parts(SIGNER.sign("a.png", expires_s=600, now=NOW))
    assert not SIGNER.verify(key, exp=query["exp"], sig=query["sig"], filename="a.png", now=NOW)


def test_verify_refuses_link_when_expired() -> None:
    key, query = parts(SIGNER.sign("a.png", expires_s=60, now=NOW))
    assert not SIGNER.verify(key, exp=query["exp"], sig=query["sig"], now=NOW + 61)


def test_verify_refuses_link_when_signed_with_another_secret() -> None:
    key, query = parts(LinkSigner(b"other", "https://peel.example").sign("a.png", expires_s=60, now=NOW))
    assert not SIGNER.verify(key, exp=query["exp"], sig=query["sig"], now=NOW)


def test_sign_raises_when_key_is_invalid() -> None:
    with pytest.raises(InvalidKeyError):
        SIGNER.sign("../etc/passwd", expires_s=60)


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("a.zip", 'attachment; filename="a.zip"'),
        ("chat é.png", "attachment; filename=\"chat _.png\"; filename*=UTF-8''chat%20%C3%A9.png"),
        ("", 'attachment; filename="download"'),
        ("a\\b.zip", 'attachment; filename="a_b.zip"'),
        ('x"y.png', "attachment; filename=\"x_y.png\"; filename*=UTF-8''x%22y.png"),
        ("line\r\nbreak.png", "attachment; filename=\"line__break.png\"; filename*=UTF-8''line%0D%0Abreak.png"),
        ("日本.png", "attachment; filename=\"__.png\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.png"),
    ],
)
def test_content_disposition_quotes_safely_when_name_is_unusual(filename: str, expected: str) -> None:
    value = content_disposition(filename)
    assert value == expected
    assert "\r" not in value
    assert "\n" not in value
