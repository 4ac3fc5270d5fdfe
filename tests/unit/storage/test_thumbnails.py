"""Gallery thumbnails: WebP, the longest side at most THUMB_MAX_PX, the aspect ratio kept, never enlarged."""

import io

import pytest
from PIL import Image

from storage.keys import THUMB_MAX_PX
from storage.thumbnails import ThumbnailError, make_thumbnail


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(
    ("size", "expected"),
    [((1024, 512), (THUMB_MAX_PX, THUMB_MAX_PX // 2)), ((600, 1200), (160, THUMB_MAX_PX)), ((100, 80), (100, 80))],
)
def test_the_longest_side_is_cut_to_the_maximum_keeping_the_ratio(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    thumb = opened(make_thumbnail(encoded(Image.new("RGB", size, (10, 120, 200)))))

    assert (thumb.format, thumb.size) == ("WEBP", expected)


@pytest.mark.parametrize("mode", ["P", "LA", "I;16", "CMYK"])
def test_any_image_mode_becomes_a_webp(mode: str) -> None:
    source = Image.new("RGB", (400, 400), (200, 30, 30)).convert(mode)

    thumb = opened(make_thumbnail(encoded(source, "TIFF" if mode == "CMYK" else "PNG")))

    assert thumb.format == "WEBP" and max(thumb.size) == THUMB_MAX_PX


def test_a_jpeg_thumbnail_is_small() -> None:
    noise = Image.effect_noise((1024, 1024), 60).convert("RGB")

    assert len(make_thumbnail(encoded(noise, "JPEG"))) < 40_000


@pytest.mark.parametrize("data", [b"", b"not an image", encoded(Image.new("RGB", (64, 64)))[:60]])
def test_undecodable_bytes_raise_thumbnail_error(data: bytes) -> None:
    with pytest.raises(ThumbnailError):
        make_thumbnail(data)
