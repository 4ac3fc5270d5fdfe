"""Blocking image work of the handler: PNG headers, PNG text metadata, JPEG/WebP → PNG, reference checks.

Everything here is CPU work on bytes already in memory; the handler runs it in a worker thread.

A PNG from Gemini is kept byte for byte (no re-encode: that would cost CPU and drop the chunks Gemini adds, such
as provenance data); the text chunks are spliced in before `IEND`. JPEG and WebP are decoded once and saved as PNG
with the same text chunks.
"""

import io
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError
from PIL.PngImagePlugin import PngImageFile

from storage._imagecheck import ImageRejectedError, check_image
from storage.imageformat import PNG_HEADER_BYTES, PNG_SIGNATURE, ImageFormat, png_dimensions, sniff_image
from worker.generation import InputImage

# What a malformed file can make Pillow raise while opening, verifying or decoding it.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, struct.error, zlib.error)


class ImageDecodeError(Exception):
    """The model's bytes are not a decodable PNG, JPEG or WebP image."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FinishedPng:
    """A PNG ready to store, with its size."""

    data: bytes
    width: int
    height: int
    converted_from: str | None = None  # the source MIME type when it was not PNG


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def text_chunks(metadata: Mapping[str, str]) -> bytes:
    """Encode `metadata` as PNG text chunks: tEXt for Latin-1 values, iTXt (UTF-8) for the others.

    Keywords must be 1-79 Latin-1 characters (PNG spec §11.3.4); longer ones are cut.
    """
    out = bytearray()
    for key, value in metadata.items():
        keyword = key.encode("latin-1", "replace")[:79]
        try:
            out += _chunk(b"tEXt", keyword + b"\0" + value.encode("latin-1"))
        except UnicodeEncodeError:
            # iTXt: keyword, NUL, compression flag 0, method 0, empty language tag, NUL, empty translation, NUL.
            out += _chunk(b"iTXt", keyword + b"\0\0\0\0\0" + value.encode("utf-8"))
    return bytes(out)


def _iend_offset(data: bytes) -> int:
    """Return the offset of the IEND chunk, walking the chunk list (raises ImageDecodeError when malformed)."""
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        if kind == b"IEND":
            return offset
        offset += 12 + length
    raise ImageDecodeError("PNG has no IEND chunk (truncated)")


def _png_size_checked(data: bytes) -> tuple[int, int]:
    try:
        with PngImageFile(io.BytesIO(data)) as image:
            size = image.size
            image.verify()
    except _DECODE_ERRORS as exc:
        raise ImageDecodeError(f"PNG is truncated or corrupt: {exc}") from exc
    return size


def finish_png(data: bytes, mime_type: str, metadata: Mapping[str, str]) -> FinishedPng:
    """Return the model's image as a PNG carrying `metadata` in text chunks; blocking.

    The format is sniffed from the bytes; `mime_type` (what the model said) is only reported back on conversion.

    Raises:
        ImageDecodeError: the bytes are not a whole PNG, JPEG or WebP image.
    """
    fmt = sniff_image(data[:32])
    converted_from: str | None = None
    if fmt is None:
        raise ImageDecodeError(f"model returned {len(data)} bytes that are not a PNG, JPEG or WebP image")
    if fmt is not ImageFormat.PNG:
        data = _to_png(data, fmt)
        converted_from = mime_type or fmt.content_type
    width, height = _png_size_checked(data)
    iend = _iend_offset(data)
    return FinishedPng(
        data=data[:iend] + text_chunks(metadata) + data[iend:],
        width=width,
        height=height,
        converted_from=converted_from,
    )


def _to_png(data: bytes, fmt: ImageFormat) -> bytes:
    try:
        with Image.open(io.BytesIO(data), formats=[fmt.name]) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            if image.mode not in ("RGB", "RGBA", "L", "LA"):
                image = image.convert("RGBA" if "A" in image.mode or "transparency" in image.info else "RGB")
            out = io.BytesIO()
            image.save(out, format="PNG")
    except (UnidentifiedImageError, *_DECODE_ERRORS) as exc:
        raise ImageDecodeError(f"{fmt.name} image from the model is truncated or corrupt: {exc}") from exc
    return out.getvalue()


def load_reference(data: bytes, *, max_pixels: int) -> InputImage:
    """Check a reference image and return it with its sniffed MIME type; blocking.

    Raises:
        ImageRejectedError: the bytes are not a whole PNG, JPEG or WebP image of at most `max_pixels`.
    """
    facts = check_image(data, max_pixels=max_pixels)
    return InputImage(data=data, mime_type=facts.format.content_type)


__all__ = [
    "PNG_HEADER_BYTES",
    "FinishedPng",
    "ImageDecodeError",
    "ImageRejectedError",
    "finish_png",
    "load_reference",
    "png_dimensions",
    "text_chunks",
]
