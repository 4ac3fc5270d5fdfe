"""Discord's message rules, checked the way Discord checks them.

Pure functions over wire JSON. A violation raises :class:`ApiError` carrying the same HTTP status, JSON error
code and (for 50035 "Invalid Form Body") the same nested ``errors`` tree Discord returns, so discord.py raises
the same ``HTTPException`` against the playground as against discord.com. Field errors nest by key and list
index (``{"components": {"0": {"components": {"1": {"url": {"_errors": [...]}}}}}}``).

Sources (D = https://discord.com/developers/docs):

- content <= 2,000; <= 10 embeds; <= 10 attachments: D/resources/message#create-message
- embed title 256, description 4,096, <= 25 fields (name 256, value 1,024), footer 2,048, author name 256,
  6,000 in all the message's embeds: D/resources/message#embed-object-embed-limits
- <= 5 action rows, <= 5 buttons a row, a select alone in its row, custom_id <= 100 and unique in the message:
  D/components/reference#action-row, D/components/reference#anatomy-of-a-component-custom-id
- button label <= 80; a link button (style 5) has a url <= 512 and no custom_id, other styles a custom_id and no
  url; a label or an emoji: D/components/reference#button
- select: 1-25 options, option label/value/description <= 100, placeholder <= 150, min_values 0-25, max_values
  1-25: D/components/reference#string-select
- modal: title <= 45, custom_id <= 100, 1-5 rows: D/interactions/receiving-and-responding#interaction-response-
  object-modal; text input label <= 45, placeholder <= 100, value <= 4,000, min_length 0-4,000, max_length
  1-4,000: D/components/reference#text-input; label component text <= 45: D/components/reference#label
- allowed_mentions: parse holds roles/users/everyone, parse "users" with users (or "roles" with roles) is
  refused, and only what it allows is mentioned: D/resources/message#allowed-mentions-object

The field-error codes (``BASE_TYPE_MAX_LENGTH``, ``BASE_TYPE_REQUIRED``...) are those Discord sends; the docs do
not list them, so where Discord's exact code for a rule is not known the playground names it in the same style.

Error codes: https://discord.com/developers/docs/topics/opcodes-and-status-codes#json
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_ACTION_ROWS = 5
MAX_ROW_COMPONENTS = 5
MAX_CUSTOM_ID = 100
MAX_BUTTON_LABEL = 80
MAX_SELECT_OPTIONS = 25
MAX_OPTION_TEXT = 100  # option label, value and description
MAX_SELECT_PLACEHOLDER = 150
MAX_LINK_URL = 512
MAX_ATTACHMENTS = 10
MAX_MODAL_TITLE = 45
MAX_TEXT_INPUT_LABEL = 45
MAX_TEXT_INPUT_PLACEHOLDER = 100
MAX_TEXT_INPUT_LENGTH = 4000
EMBED_TEXT_LIMITS = {"title": 256, "description": 4096}
EMBED_NESTED_LIMITS = {("author", "name"): 256, ("footer", "text"): 2048}
MAX_EMBED_FIELDS = 25
FIELD_LIMITS = {"name": 256, "value": 1024}

ACTION_ROW = 1
BUTTON = 2
STRING_SELECT = 3
TEXT_INPUT = 4
LABEL = 18
PREMIUM_STYLE = 6
LINK_STYLE = 5
SELECT_TYPES = frozenset({3, 5, 6, 7, 8})


class ApiError(Exception):
    """A request Discord would reject: HTTP status, JSON error code, message and optional field errors."""

    def __init__(self, status: int, code: int, message: str, errors: JSON | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> JSON:
        """Return the JSON body Discord sends for this error."""
        out: JSON = {"message": self.message, "code": self.code}
        if self.errors:
            out["errors"] = self.errors
        return out


class FormErrors:
    """Collects field errors into Discord's nested ``{"a": {"0": {"b": {"_errors": [...]}}}}`` tree."""

    def __init__(self) -> None:
        self.tree: JSON = {}

    def add(self, path: tuple[str | int, ...], code: str, message: str) -> None:
        """Record one error at a dotted field path."""
        node = self.tree
        for part in path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def too_long(self, path: tuple[str | int, ...], limit: int) -> None:
        """Record Discord's BASE_TYPE_MAX_LENGTH error."""
        self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def too_short(self, path: tuple[str | int, ...], limit: int) -> None:
        """Record Discord's BASE_TYPE_MIN_LENGTH error."""
        self.add(path, "BASE_TYPE_MIN_LENGTH", f"Must be {limit} or more in length.")

    def required(self, path: tuple[str | int, ...]) -> None:
        """Record Discord's BASE_TYPE_REQUIRED error."""
        self.add(path, "BASE_TYPE_REQUIRED", "This field is required")

    def out_of_range(self, path: tuple[str | int, ...], value: object, low: int, high: int) -> None:
        """Record Discord's NUMBER_TYPE_MIN / NUMBER_TYPE_MAX error when ``value`` is outside ``low..high``."""
        if not isinstance(value, int) or isinstance(value, bool):
            return
        if value < low:
            self.add(path, "NUMBER_TYPE_MIN", f"int value should be greater than or equal to {low}.")
        elif value > high:
            self.add(path, "NUMBER_TYPE_MAX", f"int value should be less than or equal to {high}.")

    def limit_text(self, parent: JSON, key: str, path: tuple[str | int, ...], limit: int) -> None:
        """Record BASE_TYPE_MAX_LENGTH when ``parent[key]`` is a string longer than ``limit``."""
        if _text_len(parent.get(key)) > limit:
            self.too_long((*path, key), limit)

    def raise_if_any(self) -> None:
        """Raise 400/50035 Invalid Form Body when anything was recorded."""
        if self.tree:
            raise ApiError(400, 50035, "Invalid Form Body", self.tree)


def _text_len(value: object) -> int:
    return len(value) if isinstance(value, str) else 0


def check_embeds(embeds: object, errors: FormErrors) -> None:
    """Check the per-field embed limits and the 6,000-character total."""
    if not isinstance(embeds, list):
        return
    if len(embeds) > MAX_EMBEDS:
        errors.too_long(("embeds",), MAX_EMBEDS)
        return
    total = 0
    for i, embed in enumerate(embeds):
        if not isinstance(embed, dict):
            errors.add(("embeds", i), "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            continue
        for key, limit in EMBED_TEXT_LIMITS.items():
            n = _text_len(embed.get(key))
            total += n
            if n > limit:
                errors.too_long(("embeds", i, key), limit)
        for (outer, inner), limit in EMBED_NESTED_LIMITS.items():
            part = embed.get(outer)
            n = _text_len(part.get(inner)) if isinstance(part, dict) else 0
            total += n
            if n > limit:
                errors.too_long(("embeds", i, outer, inner), limit)
        fields = embed.get("fields") or []
        if isinstance(fields, list):
            if len(fields) > MAX_EMBED_FIELDS:
                errors.too_long(("embeds", i, "fields"), MAX_EMBED_FIELDS)
            for j, field in enumerate(fields):
                if not isinstance(field, dict):
                    continue
                for key, limit in FIELD_LIMITS.items():
                    n = _text_len(field.get(key))
                    total += n
                    if n > limit:
                        errors.too_long(("embeds", i, "fields", j, key), limit)
    if total > MAX_EMBED_TOTAL:
        errors.add(("embeds",), "MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {MAX_EMBED_TOTAL}")


def _check_component(comp: JSON, path: tuple[str | int, ...], errors: FormErrors, seen: set[str]) -> None:
    custom_id = comp.get("custom_id")
    if isinstance(custom_id, str):
        if len(custom_id) > MAX_CUSTOM_ID:
            errors.too_long((*path, "custom_id"), MAX_CUSTOM_ID)
        elif custom_id in seen:
            errors.add(
                (*path, "custom_id"), "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated"
            )
        seen.add(custom_id)
    ctype = comp.get("type")
    if ctype == BUTTON:
        _check_button(comp, path, errors)
    elif ctype in SELECT_TYPES:
        _check_select(comp, path, errors)


def _check_button(comp: JSON, path: tuple[str | int, ...], errors: FormErrors) -> None:
    """A link button has a url of at most 512 characters and no custom_id; others a custom_id and no url."""
    style = comp.get("style")
    if style == LINK_STYLE:
        url = comp.get("url")
        if not url:
            errors.add((*path, "url"), "BASE_TYPE_REQUIRED", "A url is required")
        errors.limit_text(comp, "url", path, MAX_LINK_URL)
        if comp.get("custom_id") is not None:
            errors.add(
                (*path, "custom_id"), "BUTTON_COMPONENT_CUSTOM_ID_NOT_ALLOWED", "A link button cannot have a custom id"
            )
    elif style != PREMIUM_STYLE:  # a premium button is identified by its sku_id
        if not comp.get("custom_id"):
            errors.required((*path, "custom_id"))
        if comp.get("url") is not None:
            errors.add((*path, "url"), "BUTTON_COMPONENT_URL_NOT_ALLOWED", "Only a link button can have a url")
        if not comp.get("label") and not comp.get("emoji"):
            errors.add((*path, "label"), "BUTTON_COMPONENT_LABEL_OR_EMOJI_REQUIRED", "A label or an emoji is required")
    errors.limit_text(comp, "label", path, MAX_BUTTON_LABEL)


def _check_select(comp: JSON, path: tuple[str | int, ...], errors: FormErrors) -> None:
    """A string select has 1 to 25 options of short texts; every select a short placeholder and sane bounds."""
    errors.limit_text(comp, "placeholder", path, MAX_SELECT_PLACEHOLDER)
    errors.out_of_range((*path, "min_values"), comp.get("min_values"), 0, MAX_SELECT_OPTIONS)
    errors.out_of_range((*path, "max_values"), comp.get("max_values"), 1, MAX_SELECT_OPTIONS)
    if comp.get("type") != STRING_SELECT:
        return
    options = comp.get("options")
    if not isinstance(options, list) or not options:
        errors.too_short((*path, "options"), 1)
        return
    if len(options) > MAX_SELECT_OPTIONS:
        errors.too_long((*path, "options"), MAX_SELECT_OPTIONS)
    for k, option in enumerate(options):
        if isinstance(option, dict):
            for key in ("label", "value", "description"):
                errors.limit_text(option, key, (*path, "options", k), MAX_OPTION_TEXT)


def check_components(components: object, errors: FormErrors) -> None:
    """Check at most 5 action rows of at most 5 components, unique custom ids of at most 100 characters."""
    if not isinstance(components, list):
        return
    if len(components) > MAX_ACTION_ROWS:
        errors.too_long(("components",), MAX_ACTION_ROWS)
    seen: set[str] = set()
    for i, row in enumerate(components):
        if not isinstance(row, dict):
            continue
        if row.get("type") != ACTION_ROW:
            # Components v2 top-level components (sections, containers...) are accepted as-is.
            _check_component(row, ("components", i), errors, seen)
            continue
        children = row.get("components") or []
        if not isinstance(children, list):
            continue
        if len(children) > MAX_ROW_COMPONENTS:
            errors.too_long(("components", i, "components"), MAX_ROW_COMPONENTS)
        has_select = any(isinstance(c, dict) and c.get("type") in SELECT_TYPES for c in children)
        if has_select and len(children) > 1:
            errors.add(
                ("components", i, "components"),
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                "The specified component exceeds the maximum width",
            )
        for j, comp in enumerate(children):
            if isinstance(comp, dict):
                _check_component(comp, ("components", i, "components", j), errors, seen)


def check_message(payload: JSON, *, has_files: bool, require_body: bool = True, file_count: int = 0) -> None:
    """Validate a message create/edit body like Discord does.

    Args:
        payload: the JSON body (``payload_json`` for multipart requests).
        has_files: whether the request uploads or keeps at least one attachment.
        require_body: ``True`` for creates (an empty message is 50006), ``False`` for edits.
        file_count: how many files the request uploads.

    Raises:
        ApiError: 400 with code 50035 and field errors, or 50006 for an empty message.
    """
    errors = FormErrors()
    content = payload.get("content")
    if isinstance(content, str) and len(content) > MAX_CONTENT:
        errors.too_long(("content",), MAX_CONTENT)
    check_embeds(payload.get("embeds"), errors)
    check_components(payload.get("components"), errors)
    specs = payload.get("attachments")
    if max(len(specs) if isinstance(specs, list) else 0, file_count) > MAX_ATTACHMENTS:
        errors.too_long(("attachments",), MAX_ATTACHMENTS)
    _check_allowed_mentions(payload.get("allowed_mentions"), errors)
    errors.raise_if_any()
    if require_body and not (
        content or payload.get("embeds") or payload.get("components") or payload.get("sticker_ids") or has_files
    ):
        raise ApiError(400, 50006, "Cannot send an empty message")


_MENTION_TYPES = ("roles", "users", "everyone")


def _check_allowed_mentions(allowed: object, errors: FormErrors) -> None:
    """``parse`` holds only roles/users/everyone; a type in ``parse`` cannot also be listed by id."""
    if not isinstance(allowed, dict):
        return
    parse = allowed.get("parse") or []
    for i, kind in enumerate(parse if isinstance(parse, list) else []):
        if kind not in _MENTION_TYPES:
            errors.add(
                ("allowed_mentions", "parse", i),
                "BASE_TYPE_CHOICES",
                f"Value must be one of {{{', '.join(repr(k) for k in _MENTION_TYPES)}}}.",
            )
    if isinstance(parse, list) and "roles" in parse and allowed.get("roles"):
        errors.add(
            ("allowed_mentions",),
            "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
            'parse:["roles"] and roles: [ids...] are mutually exclusive.',
        )


def check_modal(data: JSON) -> None:
    """Validate a MODAL callback: its title and custom id, 1 to 5 rows, and each text input's limits."""
    errors = FormErrors()
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        errors.required(("data", "custom_id"))
    elif len(custom_id) > MAX_CUSTOM_ID:
        errors.too_long(("data", "custom_id"), MAX_CUSTOM_ID)
    errors.limit_text(data, "title", ("data",), MAX_MODAL_TITLE)
    components = data.get("components")
    if not isinstance(components, list) or not components:
        errors.required(("data", "components"))
    elif len(components) > MAX_ACTION_ROWS:
        errors.too_long(("data", "components"), MAX_ACTION_ROWS)
    else:
        seen: set[str] = set()
        for i, row in enumerate(components):
            if isinstance(row, dict):
                _check_modal_row(row, ("data", "components", i), errors, seen)
    errors.raise_if_any()


def _check_modal_row(row: JSON, path: tuple[str | int, ...], errors: FormErrors, seen: set[str]) -> None:
    """A modal row is an action row holding one text input, or a label (type 18) wrapping one component."""
    if row.get("type") == LABEL:
        errors.limit_text(row, "label", path, MAX_TEXT_INPUT_LABEL)
        errors.limit_text(row, "description", path, MAX_OPTION_TEXT)
        inner = row.get("component")
        if isinstance(inner, dict):
            _check_modal_input(inner, (*path, "component"), errors, seen)
        return
    children = row.get("components")
    if row.get("type") == ACTION_ROW and isinstance(children, list):
        if len(children) > 1:
            errors.too_long((*path, "components"), 1)
        for j, comp in enumerate(children):
            if isinstance(comp, dict):
                _check_modal_input(comp, (*path, "components", j), errors, seen)


def _check_modal_input(comp: JSON, path: tuple[str | int, ...], errors: FormErrors, seen: set[str]) -> None:
    _check_component(comp, path, errors, seen)
    if comp.get("type") != TEXT_INPUT:
        return
    if not comp.get("custom_id"):
        errors.required((*path, "custom_id"))
    errors.limit_text(comp, "label", path, MAX_TEXT_INPUT_LABEL)
    errors.limit_text(comp, "placeholder", path, MAX_TEXT_INPUT_PLACEHOLDER)
    errors.limit_text(comp, "value", path, MAX_TEXT_INPUT_LENGTH)
    errors.out_of_range((*path, "min_length"), comp.get("min_length"), 0, MAX_TEXT_INPUT_LENGTH)
    errors.out_of_range((*path, "max_length"), comp.get("max_length"), 1, MAX_TEXT_INPUT_LENGTH)
