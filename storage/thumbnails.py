"""Gallery thumbnails: a small WebP of a stored image, written beside it under `storage.keys.thumb_key`.

The worker makes one with each image it writes; the gallery makes one for an image that has none (made before
thumbnails existed). Both use this, so a thumbnail looks the same whoever made it. Blocking CPU work: run it in a
thread.
"""

import io
import struct
import zlib

from PIL import Image, ImageOps, UnidentifiedImageError

from storage.keys import THUMB_MAX_PX

THUMB_CONTENT_TYPE = "image/webp"
# WebP's lossy quality (0-100): at 70 a 320 px thumbnail of a local Gemini drawing is 3-6 KB, and of a detailed
# (noisy) image about 30-45 KB, so a grid of 50 stays around 2 MB at worst.
# https://pillow.readthedocs.io/en/stable/handbook/image-file-formats.html#webp
THUMB_QUALITY = 70

# What a malformed file can make Pillow raise while opening or decoding it.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, struct.error, zlib.error)


class ThumbnailError(Exception):
    """The image could not be decoded, so it has no thumbnail."""


def make_thumbnail(data: bytes, *, max_px: int = THUMB_MAX_PX, quality: int = THUMB_QUALITY) -> bytes:
    """Return a WebP of the image `data` whose longest side is at most `max_px` (never enlarged); blocking.

    The aspect ratio is kept (`Image.thumbnail`, which first reduces by whole factors, so a 4K image is not
    resampled at full size: https://pillow.readthedocs.io/en/stable/reference/Image.html#PIL.Image.Image.thumbnail).

    Raises:
        ThumbnailError: the bytes are not a decodable image.
    """
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.thumbnail((max_px, max_px))
            image = ImageOps.exif_transpose(opened)
            if image.mode not in ("RGB", "RGBA"):
                has_alpha = "A" in image.mode or "transparency" in image.info
                image = image.convert("RGBA" if has_alpha else "RGB")
            out = io.BytesIO()
            image.save(out, format="WEBP", quality=quality)
    except (UnidentifiedImageError, *_DECODE_ERRORS) as exc:
        raise ThumbnailError(f"the image could not be decoded: {exc}") from exc
    return out.getvalue()


__all__ = ["THUMB_CONTENT_TYPE", "THUMB_QUALITY", "ThumbnailError", "make_thumbnail"]
