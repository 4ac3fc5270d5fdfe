from datetime import UTC, datetime

import pytest

from bot.web.headers import (
    ByteRange,
    UnsatisfiableRangeError,
    content_type_for,
    etag_matches,
    make_etag,
    parse_range,
)


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("", 100, None),
        ("bytes=0-0", 100, ByteRange(0, 0)),
        ("bytes=0-99", 100, ByteRange(0, 99)),
        ("bytes=10-500", 100, ByteRange(10, 99)),
        ("bytes=50-", 100, ByteRange(50, 99)),
        ("bytes=-1", 100, ByteRange(99, 99)),
        ("bytes=-500", 100, ByteRange(0, 99)),
        ("BYTES = 5 - 6", 100, ByteRange(5, 6)),
        ("bytes=6-5", 100, None),
        ("bytes=0-1,4-5", 100, None),
        ("items=0-1", 100, None),
        ("bytes=-", 100, None),
        ("bytes=a-b", 100, None),
        ("bytes", 100, None),
        ("bytes=1-2-3", 100, None),
        ("bytes=٣-٤", 100, None),  # Arabic-Indic digits are not HTTP DIGITs
        ("bytes=0-" + "9" * 5000, 100, ByteRange(0, 99)),
        ("bytes=-" + "9" * 5000, 100, ByteRange(0, 99)),
        ("bytes=" + "0" * 5000 + "7-" + "0" * 5000 + "8", 100, ByteRange(7, 8)),
    ],
)
def test_parse_range_selects_bytes_when_header_is_given(header: str | None, size: int, expected: ByteRange) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=100-", 100),
        ("bytes=100-200", 100),
        ("bytes=-0", 100),
        ("bytes=-5", 0),
        ("bytes=0-", 0),
        ("bytes=" + "9" * 5000 + "-", 100),
        ("bytes=" + "9" * 5000 + "-" + "9" * 5001, 100),
    ],
)
def test_parse_range_raises_when_range_is_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(UnsatisfiableRangeError):
        parse_range(header, size)


def test_byte_range_formats_content_range_when_asked() -> None:
    assert ByteRange(10, 19).length == 10
    assert ByteRange(10, 19).content_range(100) == "bytes 10-19/100"


@pytest.mark.parametrize(
    ("key", "stored", "expected"),
    [
        ("a.PNG", "application/octet-stream", "image/png"),
        ("a.jpeg", None, "image/jpeg"),
        ("a.webp", "application/octet-stream", "image/webp"),
        ("a.json", "text/plain", "application/json"),
        ("a.gif", "image/gif", "image/gif"),
        ("a", None, "application/octet-stream"),
    ],
)
def test_content_type_for_prefers_known_extension_when_store_guesses(
    key: str, stored: str | None, expected: str
) -> None:
    assert content_type_for(key, stored) == expected


def test_make_etag_changes_when_size_or_time_changes() -> None:
    moment = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    etag = make_etag(10, moment)
    assert etag is not None
    assert etag.startswith('"')
    assert etag != make_etag(11, moment)
    assert etag != make_etag(10, moment.replace(microsecond=123457))
    assert make_etag(10, None) is None


@pytest.mark.parametrize(
    ("header", "matches"),
    [('"abc"', True), ('W/"abc"', True), ('"x", "abc"', True), ("*", True), ('"abd"', False)],
)
def test_etag_matches_compares_weakly_when_if_none_match_is_sent(header: str, matches: bool) -> None:
    assert etag_matches(header, '"abc"') is matches
