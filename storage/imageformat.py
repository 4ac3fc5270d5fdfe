"""Which image format a file is, read from its first bytes (pure: no Pillow, no I/O).

The one place Peel sniffs an image: uploads checked by `storage.intake`, images the worker gets from Gemini, the
output headers the dispatcher reads, and the local stand-ins all ask here. The format is decided by content,
never by a file's name.
"""

from enum import StrEnum

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Signature (8) + IHDR length (4) + b"IHDR" (4) + width (4) + height (4).
PNG_HEADER_BYTES = 24
_JPEG_SIGNATURE = b"\xff\xd8\xff"


class ImageFormat(StrEnum):
    """An accepted image format; the value is the file extension used in content keys."""

    PNG = "png"
    JPEG = "jpg"
    WEBP = "webp"

    @property
    def content_type(self) -> str:
        """The MIME type of the format."""
        return {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}[self.value]


def sniff_image(head: bytes) -> ImageFormat | None:
    """Return the accepted image format `head` starts with, or None."""
    if head.startswith(PNG_SIGNATURE):
        return ImageFormat.PNG
    if head.startswith(_JPEG_SIGNATURE):
        return ImageFormat.JPEG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ImageFormat.WEBP
    return None


def png_dimensions(head: bytes) -> tuple[int, int] | None:
    """Return (width, height) from the first 24 bytes of a PNG, or None when they are not a PNG header."""
    if len(head) < PNG_HEADER_BYTES or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if width == 0 or height == 0:
        return None
    return width, height
