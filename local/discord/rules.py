"""Discord's message rules, checked the way Discord checks them.

Pure functions over wire JSON. A violation raises :class:`ApiError` carrying the same HTTP status, JSON error
code and (for 50035 "Invalid Form Body") the same nested ``errors`` tree Discord returns, so discord.py raises
the same ``HTTPException`` against the playground as against discord.com.

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
MAX_MODAL_TITLE = 45
EMBED_TEXT_LIMITS = {"title": 256, "description": 4096}
EMBED_NESTED_LIMITS = {("author", "name"): 256, ("footer", "text"): 2048}
MAX_EMBED_FIELDS = 25
FIELD_LIMITS = {"name": 256, "value": 1024}

ACTION_ROW = 1
BUTTON = 2
TEXT_INPUT = 4
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
    ctype = comp.get("type")
    if isinstance(custom_id, str):
        if len(custom_id) > MAX_CUSTOM_ID:
            errors.too_long((*path, "custom_id"), MAX_CUSTOM_ID)
        elif custom_id in seen:
            errors.add(
                (*path, "custom_id"), "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated"
            )
        seen.add(custom_id)
    if ctype == BUTTON:
        if comp.get("style") == LINK_STYLE:
            if not comp.get("url"):
                errors.add((*path, "url"), "BASE_TYPE_REQUIRED", "This field is required")
        elif not custom_id and comp.get("style") != 6:  # 6 = premium button, identified by sku_id
            errors.add((*path, "custom_id"), "BASE_TYPE_REQUIRED", "This field is required")
        if _text_len(comp.get("label")) > MAX_BUTTON_LABEL:
            errors.too_long((*path, "label"), MAX_BUTTON_LABEL)
    elif ctype in SELECT_TYPES:
        options = comp.get("options")
        if isinstance(options, list) and len(options) > MAX_SELECT_OPTIONS:
            errors.too_long((*path, "options"), MAX_SELECT_OPTIONS)


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


def check_message(payload: JSON, *, has_files: bool, require_body: bool = True) -> None:
    """Validate a message create/edit body like Discord does.

    Args:
        payload: the JSON body (``payload_json`` for multipart requests).
        has_files: whether the request uploads or keeps at least one attachment.
        require_body: ``True`` for creates (an empty message is 50006), ``False`` for edits.

    Raises:
        ApiError: 400 with code 50035 and field errors, or 50006 for an empty message.
    """
    errors = FormErrors()
    content = payload.get("content")
    if isinstance(content, str) and len(content) > MAX_CONTENT:
        errors.too_long(("content",), MAX_CONTENT)
    check_embeds(payload.get("embeds"), errors)
    check_components(payload.get("components"), errors)
    errors.raise_if_any()
    if require_body and not (
        content or payload.get("embeds") or payload.get("components") or payload.get("sticker_ids") or has_files
    ):
        raise ApiError(400, 50006, "Cannot send an empty message")


def check_modal(data: JSON) -> None:
    """Validate a MODAL callback: custom id, title of at most 45 characters, 1 to 5 components."""
    errors = FormErrors()
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        errors.add(("data", "custom_id"), "BASE_TYPE_REQUIRED", "This field is required")
    elif len(custom_id) > MAX_CUSTOM_ID:
        errors.too_long(("data", "custom_id"), MAX_CUSTOM_ID)
    if _text_len(data.get("title")) > MAX_MODAL_TITLE:
        errors.too_long(("data", "title"), MAX_MODAL_TITLE)
    components = data.get("components")
    if not isinstance(components, list) or not components:
        errors.add(("data", "components"), "BASE_TYPE_REQUIRED", "This field is required")
    elif len(components) > MAX_ACTION_ROWS:
        errors.too_long(("data", "components"), MAX_ACTION_ROWS)
    errors.raise_if_any()
