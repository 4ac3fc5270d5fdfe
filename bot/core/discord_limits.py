"""Discord's limits on a message, and how Peel fits a message to them before it leaves.

Pure: texts and embeds as plain data (an embed as `discord.Embed.to_dict()` shapes it); the Discord layer converts.
Discord refuses a whole message with 400/50035 when one part breaks a limit, so a message is fitted here rather
than refused there. Sources:

- Message content 2,000 characters, ≤ 10 embeds, ≤ 10 attachments:
  https://discord.com/developers/docs/resources/message#create-message-jsonform-params
- Embed limits (title 256, description 4,096, 25 fields, field name 256 and value 1,024, footer text 2,048,
  author name 256, 6,000 characters in all the embeds of a message):
  https://discord.com/developers/docs/resources/message#embed-object-embed-limits
- Components (≤ 5 action rows, ≤ 5 buttons a row, a select alone in its row, custom_id 100 and unique in a
  message, button label 80, link url 512 and no custom_id, a non-link button a custom_id and no url, a label or an
  emoji; select ≤ 25 options, placeholder 150, option label/value/description 100; text input label 45,
  placeholder 100, value 4,000, min_length 0-4,000, max_length 1-4,000; label component text 45 and description
  100): https://discord.com/developers/docs/components/reference
- Modal title 45 and 1-5 rows:
  https://discord.com/developers/docs/interactions/receiving-and-responding#interaction-response-object-modal
- Thread name 1-100 characters:
  https://discord.com/developers/docs/resources/channel#start-thread-from-message-json-params

Components and modals are plain data too (discord.py's `View.to_components()` and `Modal.to_dict()` shapes). Texts
a user may have written (labels, placeholders, options, a text input's value) are cut to fit; what only Peel's own
code decides (custom ids, the layout, a button's kind) raises `ValueError` when it breaks a rule, a programming
error for the tests to catch, not something to cut silently. A link button whose url is too long is dropped: Peel
links long store URLs through its own short stable links, and Discord would refuse the whole message over one.
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
OPTION_TEXT = 100  # a select option's label, value and description
MODAL_TITLE = 45
MODAL_ROWS = 5
TEXT_INPUT_LABEL = 45
TEXT_INPUT_PLACEHOLDER = 100
TEXT_INPUT_VALUE = 4000  # also the bound of min_length and max_length
LABEL_DESCRIPTION = 100
THREAD_NAME = 100

# Component types and button styles: https://discord.com/developers/docs/components/reference#component-object
ACTION_ROW, BUTTON, STRING_SELECT, TEXT_INPUT, LABEL = 1, 2, 3, 4, 18
SELECT_TYPES = frozenset({3, 5, 6, 7, 8})  # string, user, role, mentionable, channel
LINK_STYLE, PREMIUM_STYLE = 5, 6

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


def fit_thread_name(name: str) -> str:
    """Return a thread name that fits Discord's 1 to 100 characters (an empty name becomes "Thread")."""
    return fit_text(name.strip(), THREAD_NAME) or "Thread"


def _check_custom_id(component: Mapping[str, Any], seen: set[str]) -> None:
    custom_id = component.get("custom_id")
    if custom_id is None:
        return
    if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= CUSTOM_ID:
        raise ValueError(f"custom_id must be 1 to {CUSTOM_ID} characters: {custom_id!r}")
    if custom_id in seen:
        raise ValueError(f"custom_id {custom_id!r} is used twice in one message")
    seen.add(custom_id)


def fit_button(button: Mapping[str, Any]) -> dict[str, Any] | None:
    """Return a button with its label cut to 80 characters, or None for a link button whose url is too long.

    Raises:
        ValueError: a link button with a custom_id, another button without a custom_id or with a url, or a button
            with neither a label nor an emoji.
    """
    style = button.get("style")
    if style == LINK_STYLE:
        if button.get("custom_id") is not None:
            raise ValueError("a link button cannot have a custom_id")
        if not isinstance(button.get("url"), str) or fit_link_url(button["url"]) is None:
            return None
    elif style != PREMIUM_STYLE:  # a premium button is identified by its sku_id
        if not button.get("custom_id"):
            raise ValueError("a non-link button needs a custom_id")
        if button.get("url") is not None:
            raise ValueError("only a link button can have a url")
    if style != PREMIUM_STYLE and not button.get("label") and not button.get("emoji"):
        raise ValueError("a button needs a label or an emoji")
    fitted = dict(button)
    if isinstance(fitted.get("label"), str):
        fitted["label"] = fit_text(fitted["label"], BUTTON_LABEL)
    return fitted


def _fit_option(option: Mapping[str, Any]) -> dict[str, Any]:
    value = option.get("value")
    if not isinstance(value, str) or len(value) > OPTION_TEXT:  # Peel's own identifier: cutting it would change it
        raise ValueError(f"a select option's value must be a string of at most {OPTION_TEXT} characters: {value!r}")
    fitted = dict(option)
    fitted["label"] = fit_text(str(option.get("label") or ""), OPTION_TEXT)
    if isinstance(option.get("description"), str):
        fitted["description"] = fit_text(option["description"], OPTION_TEXT)
    return fitted


def fit_select(select: Mapping[str, Any]) -> dict[str, Any]:
    """Return a select with its placeholder cut to 150 characters and at most its first 25 options, each fitted.

    Raises:
        ValueError: an option value over 100 characters (Peel's own identifier, which a cut would change).
    """
    fitted = dict(select)
    if isinstance(fitted.get("placeholder"), str):
        fitted["placeholder"] = fit_text(fitted["placeholder"], SELECT_PLACEHOLDER)
    if select.get("type") == STRING_SELECT and isinstance(select.get("options"), list):
        options = [_fit_option(option) for option in select["options"][:SELECT_OPTIONS]]
        fitted["options"] = options
        for bound in ("min_values", "max_values"):  # a bound past the options kept would be refused
            if isinstance(fitted.get(bound), int) and options:
                fitted[bound] = min(fitted[bound], len(options))
    return fitted


def fit_text_input(text_input: Mapping[str, Any]) -> dict[str, Any]:
    """Return a text input with label (45), placeholder (100) and lengths (0-4,000) fitted, its value cut to fit.

    The value is cut without an ellipsis: it is text the user edits and submits, like a Remix prompt.
    """
    fitted = dict(text_input)
    if isinstance(fitted.get("label"), str):
        fitted["label"] = fit_text(fitted["label"], TEXT_INPUT_LABEL)
    if isinstance(fitted.get("placeholder"), str):
        fitted["placeholder"] = fit_text(fitted["placeholder"], TEXT_INPUT_PLACEHOLDER)
    if isinstance(fitted.get("min_length"), int):
        fitted["min_length"] = max(0, min(fitted["min_length"], TEXT_INPUT_VALUE))
    if isinstance(fitted.get("max_length"), int):
        fitted["max_length"] = max(1, min(fitted["max_length"], TEXT_INPUT_VALUE))
    value = fitted.get("value")
    if isinstance(value, str):
        longest = min(TEXT_INPUT_VALUE, fitted.get("max_length") or TEXT_INPUT_VALUE)
        fitted["value"] = value if len(value) <= longest else value[: cut_point(value, longest)]
    return fitted


def _fit_component(component: Mapping[str, Any], seen: set[str]) -> dict[str, Any] | None:
    _check_custom_id(component, seen)
    kind = component.get("type")
    if kind == BUTTON:
        return fit_button(component)
    if kind in SELECT_TYPES:
        return fit_select(component)
    if kind == TEXT_INPUT:
        return fit_text_input(component)
    raise ValueError(f"Peel builds no component of type {kind!r} here")


def fit_components(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return a message's action rows (`View.to_components()` shape) with every text fitted.

    A link button whose url Discord would refuse is left out, and a row it leaves empty with it.

    Raises:
        ValueError: more than 5 rows, more than 5 components in a row, a select sharing its row, a custom_id over
            100 characters or used twice, or a button Discord would refuse (see `fit_button`).
    """
    if len(rows) > MAX_ROWS:
        raise ValueError(f"a message holds at most {MAX_ROWS} action rows, not {len(rows)}")
    seen: set[str] = set()
    fitted_rows: list[dict[str, Any]] = []
    for row in rows:
        children = row.get("components") or []
        if row.get("type") != ACTION_ROW:
            raise ValueError(f"Peel's messages hold action rows only, not type {row.get('type')!r}")
        if len(children) > MAX_BUTTONS_PER_ROW:
            raise ValueError(f"an action row holds at most {MAX_BUTTONS_PER_ROW} components, not {len(children)}")
        if len(children) > 1 and any(child.get("type") in SELECT_TYPES for child in children):
            raise ValueError("a select takes a whole action row")
        kept = [one for one in (_fit_component(child, seen) for child in children) if one is not None]
        if kept:
            fitted_rows.append({**row, "components": kept})
    return fitted_rows


def _fit_modal_row(row: Mapping[str, Any], seen: set[str]) -> dict[str, Any]:
    if row.get("type") == LABEL:  # a label wrapping one input (discord.py's `ui.Label`)
        fitted = dict(row)
        fitted["label"] = fit_text(str(row.get("label") or ""), TEXT_INPUT_LABEL)
        if isinstance(row.get("description"), str):
            fitted["description"] = fit_text(row["description"], LABEL_DESCRIPTION)
        inner = _fit_component(row.get("component") or {}, seen)
        if inner is None:
            raise ValueError("a modal's label must wrap an input")
        fitted["component"] = inner
        return fitted
    children = row.get("components") or []
    if row.get("type") != ACTION_ROW or len(children) != 1:
        raise ValueError("a modal row is a label, or an action row of exactly one text input")
    inner = _fit_component(children[0], seen)
    assert inner is not None  # only link buttons drop out, and a modal's row is no button
    return {**row, "components": [inner]}


def fit_modal(modal: Mapping[str, Any]) -> dict[str, Any]:
    """Return a modal (`Modal.to_dict()` shape) with its title cut to 45 characters and every input fitted.

    Raises:
        ValueError: a custom_id over 100 characters or used twice, no rows or more than 5, or a row that is not
            one input.
    """
    rows = modal.get("components") or []
    if not 1 <= len(rows) <= MODAL_ROWS:
        raise ValueError(f"a modal holds 1 to {MODAL_ROWS} rows, not {len(rows)}")
    seen: set[str] = set()
    _check_custom_id(modal, seen)
    if not modal.get("custom_id"):
        raise ValueError("a modal needs a custom_id")
    fitted = dict(modal)
    fitted["title"] = fit_text(str(modal.get("title") or ""), MODAL_TITLE)
    fitted["components"] = [_fit_modal_row(row, seen) for row in rows]
    return fitted
