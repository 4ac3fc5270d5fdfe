"""The playground's records and wire constants: snowflakes, events, stored files, uploads and interactions.

Also the bodies of the form errors Discord answers with, shared by every part of the world that validates input.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from local.discord.rules import JSON

DISCORD_EPOCH_MS = 1_420_070_400_000
MIB = 1024 * 1024
DEFAULT_UPLOAD_LIMIT = 10 * MIB
ALL_PERMISSIONS = str((1 << 51) - 1)
EVERYONE_PERMISSIONS = "2248473465835073"  # Discord's default @everyone permission set
ADMINISTRATOR = "8"

# Interaction types
PING, APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 1, 2, 3, 4, 5
# Interaction callback types
PONG, CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE = 1, 4, 5, 6, 7
AUTOCOMPLETE_RESULT, MODAL = 8, 9
# Message flags
EPHEMERAL, LOADING = 64, 128
# Channel types
GUILD_TEXT, DM, PUBLIC_THREAD, PRIVATE_THREAD = 0, 1, 11, 12
THREAD_TYPES = frozenset({10, PUBLIC_THREAD, PRIVATE_THREAD})
MAX_CHANNEL_NAME = 100


TOKEN_EPOCH_S = 1_293_840_000  # 2011-01-01: the epoch of a token's timestamp part


def bot_token(app_id: str, secret: bytes | None = None) -> str:
    """Return a bot token shaped as Discord's: the bot's id, a timestamp and an HMAC, base64url each, dot-joined.

    Libraries read the bot's id from the first part (base64 of the id's decimal digits) and some check the shape;
    Discord does not document the format, so this follows the tokens the developer portal issues.
    """
    part_id = _b64(app_id.encode())
    part_time = _b64(max(0, int(time.time()) - TOKEN_EPOCH_S).to_bytes(4, "big"))
    mac = hmac.new(secret or secrets.token_bytes(32), f"{part_id}.{part_time}".encode(), hashlib.sha1).digest()
    return f"{part_id}.{part_time}.{_b64(mac)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def now_iso() -> str:
    """Return the current time as Discord's ISO 8601 timestamp."""
    return datetime.now(UTC).isoformat()


class Snowflakes:
    """Strictly increasing Discord snowflakes, so ids sort in creation order like Discord's."""

    def __init__(self) -> None:
        self._last = 0
        self._counter = itertools.count()

    def next(self) -> str:
        """Return a new snowflake id as a string."""
        value = ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (next(self._counter) & 0xFFF)
        self._last = max(value, self._last + 1)
        return str(self._last)

    def at_least(self, taken: int) -> None:
        """Make every later id greater than ``taken`` (an id of a world loaded from disk), whatever the clock says."""
        self._last = max(self._last, taken)


@dataclass(frozen=True, slots=True)
class Event:
    """One change in the world.

    ``gateway`` says whether the bot receives it as a dispatch; ``visible_to`` restricts an ephemeral message to
    one user's view; ``intent`` is the gateway intent bit the bot needs to receive it.
    """

    name: str
    data: JSON
    gateway: bool = True
    visible_to: str | None = None
    intent: int = 0


Listener = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class StoredFile:
    """An attachment's bytes, served from the playground's CDN path."""

    data: bytes
    filename: str
    content_type: str


@dataclass(frozen=True, slots=True)
class Upload:
    """A file a user or the bot uploads."""

    filename: str
    data: bytes
    content_type: str | None = None
    description: str | None = None


@dataclass(slots=True)
class Interaction:
    """One interaction and what the bot has answered so far."""

    id: str
    token: str
    type: int
    user_id: str
    channel_id: str
    payload: JSON
    created_at: float
    acked: bool = False
    failed: bool = False
    callback_type: int | None = None
    callback: JSON | None = None
    ack_latency_s: float | None = None
    original_id: str | None = None
    modal: JSON | None = None
    choices: list[JSON] | None = None
    followed_up: bool = False
    followups: list[str] = field(default_factory=list)


def unknown_attachment_error(sid: str) -> JSON:
    """Return the form error for an attachment spec with no uploaded part."""
    return {"code": "ATTACHMENT_NOT_FOUND", "message": f"Attachment {sid} was not found in the request files"}


def unknown_error(kind: str) -> JSON:
    """Return the form error for an unknown user, channel, ...."""
    return {"code": "UNKNOWN_" + kind.upper(), "message": f"Unknown {kind}"}


def required_error() -> JSON:
    """Return the form error for a missing required field."""
    return {"code": "BASE_TYPE_REQUIRED", "message": "This field is required"}


def length_error(low: int, high: int) -> JSON:
    """Return the form error for a string outside ``low..high`` characters."""
    return {"code": "BASE_TYPE_BAD_LENGTH", "message": f"Must be between {low} and {high} in length."}


def choice_error(allowed: frozenset[int]) -> JSON:
    """Return the form error for a value outside ``allowed``."""
    values = ", ".join(str(v) for v in sorted(allowed))
    return {"code": "BASE_TYPE_CHOICES", "message": f"Value must be one of {{{values}}}."}
