import pytest

from storage.imageformat import PNG_SIGNATURE, ImageFormat, png_dimensions, sniff_image


def png_header(width: int, height: int) -> bytes:
    return PNG_SIGNATURE + b"\x00\x00\x00\x0dIHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big")


def test_png_dimensions_reads_ihdr_when_header_is_png() -> None:
    assert png_dimensions(png_header(640, 480)) == (640, 480)


@pytest.mark.parametrize(
    "header", [b"", b"GIF89a" + b"\x00" * 30, PNG_SIGNATURE + b"\x00" * 16, png_header(0, 480), png_header(640, 0)]
)
def test_png_dimensions_is_none_when_not_a_png_with_a_size(header: bytes) -> None:
    assert png_dimensions(header) is None


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (png_header(1, 1), ImageFormat.PNG),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 8, ImageFormat.JPEG),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", ImageFormat.WEBP),
        (b"\xff\xd8\x00", None),
        (b"RIFF\x00\x00\x00\x00WAVE", None),
        (b"GIF89a", None),
        (b"", None),
    ],
)
def test_sniff_image_names_the_format_when_head_has_its_magic(head: bytes, expected: ImageFormat | None) -> None:
    assert sniff_image(head) is expected


def test_content_type_is_the_mime_type_when_format_is_known() -> None:
    assert [f.content_type for f in ImageFormat] == ["image/png", "image/jpeg", "image/webp"]
