"""Discord's rate limits: per-route buckets per top-level resource, the global limit, headers and 429 bodies.

Discord limits every bot per route and globally, and answers every request with ``X-RateLimit-*`` headers
(https://discord.com/developers/docs/topics/rate-limits):

- **Per-route buckets** count requests per *top-level resource* in the path: ``channel_id``, ``guild_id``, or
  ``webhook_id`` + ``webhook_token``. ``X-RateLimit-Bucket`` names the route's bucket, the same for every channel.
- **The global limit** is 50 requests per second per bot token. "Interaction endpoints are not bound to the bot's
  Global Rate Limit": interaction callbacks and follow-ups (webhook routes with an interaction token) skip it.
- **A 429** carries ``{"message", "retry_after", "global"}`` (``code`` only "for some limits"), ``Retry-After``,
  and ``X-RateLimit-Scope`` (``user`` for a route's limit, ``global``); a global 429 also carries
  ``X-RateLimit-Global: true``.

Discord does not publish per-route values ("rate limits should not be hard coded"). The playground uses values
widely observed in the headers Discord sends (as reported by the discord.py, discord.js and JDA communities), and
every value is settable so tests can tighten or loosen it:

| bucket | routes | limit (per resource) | source |
|---|---|---|---|
| ``global`` | all but interaction callbacks and follow-ups | 50 per 1 s per token | documented |
| ``message-create`` | ``POST /channels/{id}/messages`` | 5 per 5 s per channel | observed |
| ``message-edit`` | ``PATCH .../messages/{id}``, webhook message edits in the channel | 5 per 5 s | observed |
| ``message-delete`` | ``DELETE /channels/{id}/messages/{id}`` | 5 per 1 s per channel | observed |
| ``reaction`` | ``PUT``/``DELETE .../reactions/{emoji}/...`` | 1 per 0.25 s per channel | observed |
| ``thread-create`` | ``POST .../threads``, ``.../messages/{id}/threads`` | 5 per 5 s per channel | as sends (1) |
| ``channel-edit`` | ``PATCH /channels/{id}`` | 5 per 5 s per channel | observed |
| ``webhook`` | ``POST``/``PATCH``/``DELETE /webhooks/{id}/{token}...`` | 5 per 2 s per webhook + token | observed |
| ``interaction-callback`` | ``POST /interactions/{id}/{token}/callback`` | 5 per 5 s per interaction | (1) |
| ``default`` | any other route | 50 per 1 s per route and resource | the global value |

(1) not published and not commonly reported; the playground takes message sends' value.

discord.py reads these headers and waits pre-emptively when ``Remaining`` reaches 0; on a 429 it sleeps
``retry_after`` (only if the response has a ``Via`` header; without one it assumes a Cloudflare ban and raises).
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

GLOBAL = "global"
DEFAULT_BUCKET = "default"


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``limit`` requests per ``window_s`` seconds."""

    limit: int
    window_s: float


DEFAULT_LIMITS: dict[str, Limit] = {
    GLOBAL: Limit(50, 1.0),
    "message-create": Limit(5, 5.0),
    "message-edit": Limit(5, 5.0),
    "message-delete": Limit(5, 1.0),
    "reaction": Limit(1, 0.25),
    "thread-create": Limit(5, 5.0),
    "channel-edit": Limit(5, 5.0),
    "webhook": Limit(5, 2.0),
    "interaction-callback": Limit(5, 5.0),
    DEFAULT_BUCKET: Limit(50, 1.0),
}

# (method, path under /api/v{n}) -> bucket; the table above says where each value comes from.
ROUTE_BUCKETS: dict[tuple[str, str], str] = {
    ("POST", "/channels/{cid}/messages"): "message-create",
    ("PATCH", "/channels/{cid}/messages/{mid}"): "message-edit",
    ("DELETE", "/channels/{cid}/messages/{mid}"): "message-delete",
    ("PUT", "/channels/{cid}/messages/{mid}/reactions/{emoji}/@me"): "reaction",
    ("DELETE", "/channels/{cid}/messages/{mid}/reactions/{emoji}/{uid}"): "reaction",
    ("POST", "/channels/{cid}/threads"): "thread-create",
    ("POST", "/channels/{cid}/messages/{mid}/threads"): "thread-create",
    ("PATCH", "/channels/{cid}"): "channel-edit",
    ("POST", "/webhooks/{app}/{token}"): "webhook",
    ("PATCH", "/webhooks/{app}/{token}/messages/{mid}"): "webhook",
    ("DELETE", "/webhooks/{app}/{token}/messages/{mid}"): "webhook",
    ("POST", "/interactions/{iid}/{token}/callback"): "interaction-callback",
}

# "Interaction endpoints are not bound to the bot's Global Rate Limit" (every playground webhook is an interaction's).
_OUTSIDE_GLOBAL = re.compile(r"/(interactions|webhooks)/")


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


@dataclass(slots=True)
class _Window:
    started_at: float
    used: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The outcome of one request against a bucket, with the headers to send."""

    allowed: bool
    limit: int
    remaining: int
    reset_after_s: float
    bucket: str
    wall_reset_at: float
    is_global: bool = False

    def headers(self) -> dict[str, str]:
        """Return Discord's headers: ``X-RateLimit-*`` always, ``Retry-After``, scope and ``Via`` on a 429."""
        if self.is_global:
            # A global 429 carries only these (the docs' global example): no route bucket was consulted.
            out = {"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"}
        else:
            out = {
                "X-RateLimit-Limit": str(self.limit),
                "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-Reset": f"{self.wall_reset_at:.3f}",
                "X-RateLimit-Reset-After": f"{self.reset_after_s:.3f}",
                "X-RateLimit-Bucket": self.bucket,
            }
        if not self.allowed:
            out["Retry-After"] = str(max(1, math.ceil(self.reset_after_s)))
            out.setdefault("X-RateLimit-Scope", "user")
            out["Via"] = "1.1 google"  # discord.py treats a 429 without Via as a Cloudflare ban
        return out

    def body(self) -> dict[str, Any]:
        """Return Discord's 429 JSON body (``code`` is sent "for some limits" only; none of these)."""
        retry_after = round(self.reset_after_s, 3)
        return {"message": "You are being rate limited.", "retry_after": retry_after, "global": self.is_global}


# The request key under which a handler leaves a second bucket's decision (see RateLimits.hit).
EXTRA_DECISION = web.RequestKey("local.discord.ratelimit.extra", Decision)


@dataclass(slots=True)
class RateLimiter:
    """Allow ``limit`` requests per ``window_s`` for each key (e.g. one channel's message edits)."""

    limit: int = 5
    window_s: float = 5.0
    name: str = "message-edit"
    clock: Callable[[], float] = time.monotonic
    is_global: bool = False
    _windows: dict[str, _Window] = field(default_factory=dict)

    def hit(self, key: str) -> Decision:
        """Count one request for ``key`` and say whether it may proceed (a refused request is not counted)."""
        now = self.clock()
        window = self._windows.get(key)
        if window is None or now - window.started_at >= self.window_s:
            window = _Window(started_at=now)
            self._windows[key] = window
        reset_after = max(0.0, window.started_at + self.window_s - now)
        allowed = window.used < self.limit
        if allowed:
            window.used += 1
        return Decision(
            allowed=allowed,
            limit=self.limit,
            remaining=max(0, self.limit - window.used),
            reset_after_s=reset_after,
            bucket=_hash(self.name),  # one hash per route bucket; the resource keys it apart, as on Discord
            wall_reset_at=time.time() + reset_after,
            is_global=self.is_global,
        )


class RateLimits:
    """Every bucket of the playground, and the global limit, keyed as Discord keys them."""

    def __init__(
        self,
        *,
        overrides: Mapping[str, Limit] | None = None,
        window_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Build the buckets.

        Args:
            overrides: bucket name -> limit, taken as given (not scaled).
            window_scale: multiplies the default windows (tests use 0.1 to wait a tenth as long).
            clock: the monotonic clock (tests inject a fake one).
        """
        unknown = set(overrides or {}) - set(DEFAULT_LIMITS)
        if unknown:
            raise ValueError(f"unknown rate-limit buckets: {sorted(unknown)}")
        self.limiters: dict[str, RateLimiter] = {}
        for name, default in DEFAULT_LIMITS.items():
            chosen = (overrides or {}).get(name) or Limit(default.limit, default.window_s * window_scale)
            self.limiters[name] = RateLimiter(
                limit=chosen.limit, window_s=chosen.window_s, name=name, clock=clock, is_global=name == GLOBAL
            )

    def check(self, method: str, template: str, match_info: Mapping[str, str], token: str) -> Decision:
        """Count one request to a route: the global limit first, then the route's bucket for its resource.

        Args:
            method: the HTTP method.
            template: the route's path under ``/api/v{n}`` with its ``{placeholders}``.
            match_info: the placeholders' values.
            token: the caller's token (the global limit is per token).
        """
        if not _OUTSIDE_GLOBAL.match(template):
            decision = self.limiters[GLOBAL].hit(token)
            if not decision.allowed:
                return decision
        name = ROUTE_BUCKETS.get((method, template), DEFAULT_BUCKET)
        key = _resource(match_info)
        if name == DEFAULT_BUCKET:
            key = f"{method} {template} {key}"  # each unlisted route is its own bucket
        return self.limiters[name].hit(key)

    def hit(self, name: str, key: str) -> Decision:
        """Count one request against a named bucket (for a route that also counts against another's)."""
        return self.limiters[name].hit(key)


def _resource(match_info: Mapping[str, str]) -> str:
    """Return the top-level resource a bucket is kept for: channel, guild, webhook + token, or interaction."""
    if "app" in match_info and "token" in match_info:
        return f"webhook:{match_info['app']}:{match_info['token']}"
    for name in ("cid", "gid", "iid"):
        if name in match_info:
            return f"{name}:{match_info[name]}"
    return ""


class NameChangeLimit:
    """Two name changes per channel (a thread included) per 10 minutes, kept apart from the route's bucket.

    Discord does not document it (discord/discord-api-docs#2760: "we do not typically document rate limits"); it is
    reported in discord/discord-api-docs#1900 (the third rename in 10 minutes: 429, `retry_after` of minutes,
    while the route's headers still show requests left) and by discord.py's maintainer in Rapptz/discord.py#9073.
    """

    def __init__(self, *, limit: int = 2, window_s: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._changes: dict[str, list[float]] = {}

    def retry_after(self, channel_id: str) -> float | None:
        """Count a name change of `channel_id`; return None when it may go, else the seconds to wait."""
        now = self._clock()
        recent = [t for t in self._changes.get(channel_id, []) if now - t < self.window_s]
        if len(recent) >= self.limit:
            self._changes[channel_id] = recent
            return round(self.window_s - (now - recent[0]), 3)
        self._changes[channel_id] = [*recent, now]
        return None
