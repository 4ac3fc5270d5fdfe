"""Discord's limits on a message, and how Peel fits a message to them before it leaves.

Pure: texts and embeds as plain data (an embed as `discord.Embed.to_dict()` shapes it); the Discord layer converts.
Discord refuses a whole message with 400/50035 when one part breaks a limit, so a message is fitted here rather
than refused there. Sources:

- Message content 2,000 characters, ≤ 10 embeds, ≤ 10 attachments:
  https://discord.com/developers/docs/resources/message#create-message-jsonform-params
- Embed limits (title 256, description 4,096, 25 fields, field name 256 and value 1,024, footer text 2,048,
  author name 256, 6,000 characters in all the embeds of a message):
  https://discord.com/developers/docs/resources/message#embed-object-embed-limits
- Components (≤ 5 action rows, ≤ 5 buttons a row, label 80, custom_id 100, link url 512, select ≤ 25 options and
  placeholder 150, modal title 45, text-input label 45): https://discord.com/developers/docs/components/reference
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_ATTACHMENTS = 10
EMBED_TITLE = 256
EMBED_DESCRIPTION = 4096
EMBED_FIELDS = 25
EMBED_FIELD_NAME = 256
EMBED_FIELD_VALUE = 1024
EMBED_FOOTER = 2048
EMBED_AUTHOR = 256
EMBED_TOTAL = 6000
MAX_ROWS = 5
MAX_BUTTONS_PER_ROW = 5
BUTTON_LABEL = 80
CUSTOM_ID = 100
LINK_URL = 512
SELECT_OPTIONS = 25
SELECT_PLACEHOLDER = 150
MODAL_TITLE = 45
TEXT_INPUT_LABEL = 45

ELLIPSIS = "…"

# Pieces that must not be cut in half: a cut inside one moves before it. A masked link `[text](url)`, an
# autolink-suppressed `<https://…>`, a mention or channel `<@123>`/`<@!123>`/`<@&123>`/`<#123>`, a slash command
# `</name:123>`, a custom emoji `<:name:123>`/`<a:name:123>`, a timestamp `<t:123:R>`, a code block or span, and
# a markdown escape `\*` (its backslash alone would show, or escape what follows the cut).
_UNBREAKABLE = re.compile(
    r"\[[^\]\n]*\]\([^)\s]*\)"
    r"|<https?://[^>\s]+>"
    r"|<(?:@[!&]?|#)\d+>"
    r"|</[^:>\s]+:\d+>"
    r"|<a?:\w+:\d+>"
    r"|<t:-?\d+(?::[tTdDfFR])?>"
    r"|```.*?```"
    r"|`[^`\n]+`"
    r"|\\.",
    re.DOTALL,
)


def cut_point(text: str, at: int) -> int:
    """Return where to cut `text` at or before `at` so that no unbreakable piece is split."""
    at = max(0, min(at, len(text)))
    for match in _UNBREAKABLE.finditer(text):
        if match.start() >= at:
            break
        if match.end() > at:  # the cut falls inside this piece: cut before it
            return match.start()
    if 0 < at < len(text) and "\udc00" <= text[at] <= "\udfff":  # never split a surrogate pair
        at -= 1
    return at


def fit_text(text: str, limit: int, *, ellipsis: str = ELLIPSIS) -> str:
    """Return `text` if it fits in `limit` characters, else cut safely before the limit and ending in `ellipsis`."""
    if len(text) <= limit:
        return text
    return text[: cut_point(text, limit - len(ellipsis))].rstrip() + ellipsis


def fit_content(content: str) -> str:
    """Return message content that fits Discord's 2,000 characters."""
    return fit_text(content, MAX_CONTENT)


def embed_length(embed: Mapping[str, Any]) -> int:
    """Return the characters of an embed that count toward Discord's 6,000 per message."""
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    total += len((embed.get("footer") or {}).get("text") or "") + len((embed.get("author") or {}).get("name") or "")
    for item in embed.get("fields") or []:
        total += len(item.get("name") or "") + len(item.get("value") or "")
    return total


def _fitted(value: Any, limit: int) -> Any:
    return fit_text(value, limit) if isinstance(value, str) else value


def fit_embed(embed: Mapping[str, Any], *, budget: int = EMBED_TOTAL) -> dict[str, Any]:
    """Return a copy of an embed (`Embed.to_dict()` shape) cut to Discord's limits and to `budget` characters in all.

    Each text is cut to its own limit, fields past the 25th are dropped, and when the whole is still over the budget
    the description gives way first, then the fields from the last.
    """
    fitted = dict(embed)
    fitted["title"] = _fitted(fitted.get("title"), EMBED_TITLE)
    fitted["description"] = _fitted(fitted.get("description"), EMBED_DESCRIPTION)
    if isinstance(fitted.get("footer"), Mapping):
        fitted["footer"] = {**fitted["footer"], "text": _fitted(fitted["footer"].get("text"), EMBED_FOOTER)}
    if isinstance(fitted.get("author"), Mapping):
        fitted["author"] = {**fitted["author"], "name": _fitted(fitted["author"].get("name"), EMBED_AUTHOR)}
    fields = [
        {
            **item,
            "name": _fitted(item.get("name"), EMBED_FIELD_NAME),
            "value": _fitted(item.get("value"), EMBED_FIELD_VALUE),
        }
        for item in (fitted.get("fields") or [])[:EMBED_FIELDS]
    ]
    fitted = {key: value for key, value in fitted.items() if value is not None and key != "fields"}
    if fields:
        fitted["fields"] = fields
    over = embed_length(fitted) - budget
    if over > 0 and fitted.get("description"):
        description = fitted["description"]
        fitted["description"] = fit_text(description, max(len(ELLIPSIS), len(description) - over))
        over = embed_length(fitted) - budget
    while over > 0 and fitted.get("fields"):
        fitted["fields"] = fitted["fields"][:-1]
        over = embed_length(fitted) - budget
    if over > 0 and fitted.get("title"):
        fitted["title"] = fit_text(fitted["title"], max(len(ELLIPSIS), len(fitted["title"]) - over))
    return fitted


def fit_embeds(embeds: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return at most 10 embeds, fitted so that together they stay within Discord's 6,000 characters."""
    fitted: list[dict[str, Any]] = []
    budget = EMBED_TOTAL
    for embed in embeds[:MAX_EMBEDS]:
        if budget <= 0:
            break
        one = fit_embed(embed, budget=budget)
        budget -= embed_length(one)
        fitted.append(one)
    return fitted


def fit_link_url(url: str) -> str | None:
    """Return a link button's url, or None when Discord would refuse it (and the message with it) as too long."""
    return url if len(url) <= LINK_URL else None
