"""Validation of storage keys: the one gate every store passes keys through."""

import re

from storage.errors import InvalidKeyError

MAX_KEY_LENGTH = 1024
_ALLOWED = re.compile(r"^[A-Za-z0-9_.=+@-][A-Za-z0-9/_.=+@-]*$")


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is safe to use in any store, else raise InvalidKeyError.

    A key is a relative, `/`-separated path of ASCII letters, digits and `_ . = + @ -`: no absolute path,
    no `..` or `.` segment, no empty segment, no backslash, no control or non-ASCII character.
    """
    if not key:
        raise InvalidKeyError("empty key")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"key longer than {MAX_KEY_LENGTH} characters")
    if "\\" in key:
        raise InvalidKeyError(f"backslash in key {key!r}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise InvalidKeyError(f"control character in key {key!r}")
    if key.startswith("/"):
        raise InvalidKeyError(f"absolute key {key!r}")
    if not _ALLOWED.fullmatch(key):
        raise InvalidKeyError(f"unsupported character in key {key!r}")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidKeyError(f"empty, '.' or '..' segment in key {key!r}")
    return key


def is_valid_key(key: str) -> bool:
    """Tell whether `key` passes `validate_key`."""
    try:
        validate_key(key)
    except InvalidKeyError:
        return False
    return True


def validate_prefix(prefix: str) -> str:
    """Validate a listing prefix: empty, or a key, optionally ending with `/`."""
    if prefix == "":
        return prefix
    validate_key(prefix.removesuffix("/"))
    return prefix


THUMB_SUFFIX = ".thumb.webp"
THUMB_MAX_PX = 320  # a thumbnail's longest side: a gallery grid cell on a wide screen at 2x density


def thumb_key(key: str) -> str:
    """Return where the thumbnail of the image at `key` is stored: beside it, its extension replaced.

    `outputs/j_1/00002.png` → `outputs/j_1/00002.thumb.webp`. The worker writes it with the image; the gallery makes
    it once on first view for an image that has none (made before thumbnails existed).
    """
    stem, dot, ext = key.rpartition(".")
    base = stem if dot and "/" not in ext else key
    return validate_key(base + THUMB_SUFFIX)
