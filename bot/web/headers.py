"""Pure HTTP helpers of the link server: Range parsing, Content-Disposition, content types and validators.

Nothing here does I/O, so the rules are unit-tested with tables (RFC 9110 §14 for ranges, RFC 6266 for
Content-Disposition).
"""

import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from pathlib import PurePosixPath

OCTET_STREAM = "application/octet-stream"

# The types the bot hands out links for; anything else keeps what the store says (or octet-stream).
CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".zip": "application/zip",
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
}

_RANGE = re.compile(r"^\s*([0-9]*)\s*-\s*([0-9]*)\s*$")

# A byte position of more digits than this is past the end of any object the server could hold. Such positions are
# not converted: `int()` refuses strings over 4,300 digits (CVE-2020-10735) and converting long ones costs
# quadratic time, so a position like that reads as `_PAST_ANY_END`.
_MAX_POSITION_DIGITS = 18
_PAST_ANY_END = 10**_MAX_POSITION_DIGITS


@dataclass(frozen=True, slots=True)
class ByteRange:
    """A satisfiable byte range: `start` to `end`, both inclusive, as in `Content-Range`."""

    start: int
    end: int

    @property
    def length(self) -> int:
        """The number of bytes in the range."""
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        """Return the `Content-Range` value of this range of an object of `size` bytes."""
        return f"bytes {self.start}-{self.end}/{size}"


class UnsatisfiableRangeError(ValueError):
    """The Range header is well formed but selects no byte of the object (answer 416)."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """Return the single byte range `header` asks for, or None to send the whole object.

    A missing, malformed, non-`bytes` or multi-range header yields None: RFC 9110 lets a server ignore a Range
    it does not support, and answering 200 with the whole object is always correct.

    Raises:
        UnsatisfiableRangeError: the range starts at or past the end, or is an empty suffix (`bytes=-0`).
    """
    if not header:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = _RANGE.match(spec)
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        suffix = _position(last)
        if suffix == 0 or size == 0:
            raise UnsatisfiableRangeError(header)
        return ByteRange(max(0, size - suffix), size - 1)
    start = _position(first)
    if last and _position(last) < start:
        return None  # an invalid range-spec: ignore the header
    if start >= size:
        raise UnsatisfiableRangeError(header)
    return ByteRange(start, min(_position(last), size - 1) if last else size - 1)


def _position(digits: str) -> int:
    """Return a byte position from its ASCII digits; any position past `_PAST_ANY_END` reads as `_PAST_ANY_END`.

    Two positions both past it compare equal, which can only turn an ignored range-spec (last before first) into
    a 416 for a range that starts past the end of the object anyway.
    """
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= _MAX_POSITION_DIGITS else _PAST_ANY_END


def content_type_for(key: str, stored: str | None) -> str:
    """Return the Content-Type to serve `key` with: the bot's own types by extension, else what the store says."""
    known = CONTENT_TYPES.get(PurePosixPath(key).suffix.lower())
    if known is not None:
        return known
    return stored or OCTET_STREAM


def make_etag(size: int, modified_at: datetime | None) -> str | None:
    """Return a strong ETag from size and modification time, or None when the store gives no time.

    Writes replace objects atomically and every write sets a new modification time, so size plus time in
    microseconds identifies one version for as long as the clock only moves forward.
    """
    if modified_at is None:
        return None
    return f'"{size:x}-{int(modified_at.timestamp() * 1_000_000):x}"'


def http_date(moment: datetime) -> str:
    """Format an aware datetime as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`)."""
    return format_datetime(moment, usegmt=True)


def etag_matches(header: str, etag: str) -> bool:
    """Tell whether an `If-None-Match` value matches `etag` (weak comparison, `*` matches anything)."""
    if header.strip() == "*":
        return True
    candidates = (part.strip().removeprefix("W/") for part in header.split(","))
    return etag.removeprefix("W/") in candidates
