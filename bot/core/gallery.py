"""The gallery's rules (pure): link tokens, filters, what one cell of the grid holds, search patterns and paging.

A gallery link is a capability URL for one group, `/g/{token}`. The token is 128 bits derived from the link secret
and a random nonce the ledger keeps (`gallery_token`); the ledger stores the nonce and the token's SHA-256, never
the token, so the owner can be shown the same link again while a copy of the ledger alone opens nothing.
"""

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from bot.core.item_errors import item_error_message
from worker.contract import ErrorCode

PAGE_SIZE = 60  # cells per grid page: one phone screen scrolls through it, a wide one shows about half
MAX_SELECTION = 10_000  # the most (job, index) pairs one ZIP or export takes
_TOKEN_BYTES = 16  # 128 bits, as `secrets.token_urlsafe(16)`
_DOMAIN = b"peel gallery link v1\n"  # no other signature of the same secret can pass for a gallery token
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22}$")
MAX_QUERY_CHARS = 100


class GalleryFilter(StrEnum):
    """Which items a grid shows."""

    ALL = "all"
    MADE = "made"  # the image exists
    FAILED = "failed"  # an error other than a safety block
    BLOCKED = "blocked"  # refused by Gemini's safety filters
    FAVOURITES = "favourites"  # made and starred

    @classmethod
    def parse(cls, value: str | None) -> "GalleryFilter":
        """Return the filter a query string names; anything unknown is `ALL`."""
        try:
            return cls(value or cls.ALL)
        except ValueError:
            return cls.ALL


BLOCKED_CODE = ErrorCode.SAFETY.value


def gallery_token(secret: bytes, group_id: str, nonce: str) -> str:
    """Return the gallery token of a group's link: base64url of 128 bits of HMAC-SHA256(secret, group and nonce)."""
    mac = hmac.new(secret, _DOMAIN + f"{group_id}\n{nonce}".encode(), hashlib.sha256).digest()[:_TOKEN_BYTES]
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def token_hash(token: str) -> str:
    """Return what the ledger stores to find a token again: its SHA-256 in hex."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def is_well_formed_token(token: str) -> bool:
    """Tell whether `token` has a gallery token's shape (22 base64url characters): others are refused unlooked."""
    return bool(_TOKEN.match(token))


def like_pattern(word: str) -> str:
    r"""Return a `LIKE … ESCAPE '\'` pattern matching text that contains `word`, its wildcards taken literally."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def clean_query(text: str | None) -> str:
    """Return a search as the gallery runs it: trimmed and at most `MAX_QUERY_CHARS` characters."""
    return (text or "").strip()[:MAX_QUERY_CHARS]


def page_count(total: int, size: int = PAGE_SIZE) -> int:
    """Return how many pages `total` cells fill (at least one, the empty page)."""
    return max(1, -(-total // size))


@dataclass(frozen=True, slots=True, kw_only=True)
class GalleryLinkRecord:
    """A gallery link as the ledger keeps it (no token: see `gallery_token`)."""

    group_id: str
    nonce: str
    issued_by: int
    created_at: datetime
    can_export: bool
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class GalleryCounts:
    """How many items each filter shows (for the current search and batch)."""

    all: int = 0
    made: int = 0
    failed: int = 0
    blocked: int = 0
    favourites: int = 0

    def of(self, which: GalleryFilter) -> int:
        """Return the count of one filter."""
        return int(getattr(self, which.value))


@dataclass(frozen=True, slots=True, kw_only=True)
class GalleryEntry:
    """One item of a group's jobs as the gallery shows it."""

    job_id: str
    index: int
    job_kind: str
    status: str  # the item's status: pending, submitted, ok, error, cancelled
    prompt: str
    seed: int | None
    model: str
    aspect_ratio: str | None
    image_size: str | None
    mode: str
    ref_keys: tuple[str, ...]
    source_name: str | None
    output_key: str | None  # set only when the image exists
    error_code: str | None
    favourite: bool
    created_at: datetime

    @property
    def made(self) -> bool:
        """Tell whether the image exists."""
        return self.output_key is not None

    @property
    def state(self) -> str:
        """Return the status a user reads: made, blocked, failed, cancelled or pending."""
        if self.made:
            return "made"
        if self.status == "error":
            return "blocked" if self.error_code == BLOCKED_CODE else "failed"
        if self.status == "cancelled":
            return "cancelled"
        return "pending"

    @property
    def reason(self) -> str | None:
        """Return the user's message for a failed or blocked item (never the operator's `error_message`)."""
        return item_error_message(self.error_code) if self.status == "error" else None


def parse_selection(values: list[str]) -> list[tuple[str, int]]:
    """Return the (job id, index) pairs of checkbox values `job:index`, in order, each once; malformed ones dropped."""
    seen: dict[tuple[str, int], None] = {}
    for value in values[:MAX_SELECTION]:
        job, sep, index = value.partition(":")
        if sep and job and index.isdigit() and len(index) <= 9:
            seen.setdefault((job, int(index)), None)
    return list(seen)


__all__ = [
    "BLOCKED_CODE",
    "MAX_SELECTION",
    "PAGE_SIZE",
    "GalleryCounts",
    "GalleryEntry",
    "GalleryFilter",
    "GalleryLinkRecord",
    "clean_query",
    "gallery_token",
    "is_well_formed_token",
    "like_pattern",
    "page_count",
    "parse_selection",
    "token_hash",
]
