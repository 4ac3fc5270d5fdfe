"""Blocking checks of one in-memory upload: is it a whole PNG, JPEG or WebP image of a sane size?

Everything here is CPU work on bytes already in memory; callers run it in a worker thread.

Why the Pillow plugin classes are built directly instead of through `Image.open`: `Image.open` runs Pillow's own
decompression-bomb check, which *warns* (a `DecompressionBombWarning`, an error under `-W error`) between 89 and
179 megapixels and raises above. Our own limit is lower and must become a skip reason, not a warning, and toggling
`warnings` filters is not thread-safe. Constructing the plugin class parses only the header (PNG: up to the first
IDAT; JPEG: up to the first scan), so we compare the size with our limit before any pixel buffer exists. WebP is
the exception: Pillow's WebP plugin creates libwebp's decoder, which allocates the whole canvas, while opening, so
its canvas size is read from the RIFF header first.
"""

import io
import struct
import zlib
from dataclasses import dataclass
from enum import StrEnum

from PIL import Image, UnidentifiedImageError
from PIL.ImageFile import ImageFile
from PIL.JpegImagePlugin import JpegImageFile
from PIL.PngImagePlugin import PngImageFile
from PIL.WebPImagePlugin import WebPImageFile

from storage.imageformat import ImageFormat, sniff_image

# Magic numbers of archive and compressed formats (a nested archive is refused, whatever its name says).
_ARCHIVE_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"PK\x03\x04", "zip"),
    (0, b"PK\x05\x06", "zip"),
    (0, b"PK\x07\x08", "zip"),
    (0, b"7z\xbc\xaf\x27\x1c", "7z"),
    (0, b"Rar!\x1a\x07", "rar"),
    (0, b"\x1f\x8b", "gzip"),
    (0, b"BZh", "bzip2"),
    (0, b"\xfd7zXZ\x00", "xz"),
    (0, b"\x28\xb5\x2f\xfd", "zstd"),
    (0, b"MSCF", "cab"),
    (257, b"ustar", "tar"),
)
ARCHIVE_SUFFIXES = frozenset(
    {".zip", ".7z", ".rar", ".tar", ".gz", ".tgz", ".bz2", ".tbz2", ".xz", ".txz", ".zst", ".cab", ".jar", ".apk"}
)

_PLUGINS: dict[ImageFormat, type[ImageFile]] = {
    ImageFormat.PNG: PngImageFile,
    ImageFormat.JPEG: JpegImageFile,
    ImageFormat.WEBP: WebPImageFile,
}

# What a malformed file can make Pillow's parsers and decoders raise.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    KeyError,
    struct.error,
    zlib.error,
    UnidentifiedImageError,
)


class ImageProblem(StrEnum):
    """Why bytes were refused as an image."""

    NESTED_ARCHIVE = "nested_archive"
    NOT_AN_IMAGE = "not_an_image"
    CORRUPT_IMAGE = "corrupt_image"
    TOO_MANY_PIXELS = "too_many_pixels"


class ImageRejectedError(Exception):
    """The bytes are not an acceptable image; `problem` says why, the message says it for humans."""

    def __init__(self, problem: ImageProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageFacts:
    """What a successful check learnt about an image."""

    format: ImageFormat
    width: int
    height: int


def sniff_archive(head: bytes) -> str | None:
    """Return the archive kind whose magic number `head` starts with, or None."""
    for offset, magic, kind in _ARCHIVE_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    return None


def webp_canvas_size(head: bytes) -> tuple[int, int] | None:
    """Read a WebP canvas size from the first 30 bytes (VP8X, lossy VP8 or lossless VP8L header), or None."""
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        return (
            int.from_bytes(head[26:28], "little") & 0x3FFF,
            int.from_bytes(head[28:30], "little") & 0x3FFF,
        )
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageRejectedError(ImageProblem.CORRUPT_IMAGE, f"image claims an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageRejectedError(
            ImageProblem.TOO_MANY_PIXELS,
            f"image is {width}x{height} ({width * height:,} pixels), over the limit of {max_pixels:,} pixels",
        )


def check_image(data: bytes, *, max_pixels: int) -> ImageFacts:
    """Check that `data` is one whole PNG, JPEG or WebP image of at most `max_pixels`; blocking.

    The format is decided by content, never by name. The size is checked from the header before anything is
    decoded; then `verify()` checks the structure (PNG chunk CRCs up to IEND) and a full `load()` decodes the
    pixels, which is what catches truncated JPEG scans and corrupt deflate streams that `verify()` lets through.
    JPEGs are decoded with libjpeg's DCT scaling at 1/8 (`draft`): every scan is still entropy-decoded, so
    truncation and corruption are still found, for a 64th of the pixel memory and a fraction of the time.

    Raises:
        ImageRejectedError: the bytes are an archive, not an accepted image, corrupt or truncated, or too big.
    """
    fmt = sniff_image(data[:32])
    if fmt is None:
        # Image magic first: tar's "ustar" sits at offset 257, where any image may hold those bytes by chance.
        archive = sniff_archive(data[:512])
        if archive is not None:
            raise ImageRejectedError(ImageProblem.NESTED_ARCHIVE, f"content is a {archive} archive, not an image")
        raise ImageRejectedError(
            ImageProblem.NOT_AN_IMAGE, "content is not a PNG, JPEG or WebP image (checked by content, not name)"
        )
    if fmt is ImageFormat.WEBP:
        canvas = webp_canvas_size(data[:30])
        if canvas is None:
            raise ImageRejectedError(ImageProblem.CORRUPT_IMAGE, "WebP header is malformed")
        _check_pixels(canvas, max_pixels)
    plugin = _PLUGINS[fmt]
    try:
        with plugin(io.BytesIO(data)) as header:
            size = header.size
            _check_pixels(size, max_pixels)
            header.verify()
        with plugin(io.BytesIO(data)) as image:
            if image.size != size:
                raise ImageRejectedError(ImageProblem.CORRUPT_IMAGE, "image size changed between two reads")
            if fmt is ImageFormat.JPEG:
                image.draft(image.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
            image.load()
    except ImageRejectedError:
        raise
    except Image.DecompressionBombError as exc:
        # Only reachable when max_pixels is set above Pillow's own limit.
        raise ImageRejectedError(ImageProblem.TOO_MANY_PIXELS, "image is a decompression bomb") from exc
    except _DECODE_ERRORS as exc:
        raise ImageRejectedError(ImageProblem.CORRUPT_IMAGE, f"{fmt.name} image is truncated or corrupt") from exc
    return ImageFacts(format=fmt, width=size[0], height=size[1])
