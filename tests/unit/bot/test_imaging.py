"""Grid previews fit the upload limit; zoom and pan canvases grow the picture the right way."""

import io
import random

import pytest
from PIL import Image

from bot.app.imaging import (
    Direction,
    compose_grid,
    fit_for_upload,
    grid_preview,
    image_size,
    pan_canvas,
    region_picker_overlay,
    zoom_canvas,
    zoom_out_canvas,
)


def make_png(w: int, h: int, *, noise: bool = False, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    if noise:
        rnd = random.Random(w * h)
        image = Image.frombytes("RGB", (w, h), bytes(rnd.getrandbits(8) for _ in range(w * h * 3)))
    else:
        image = Image.new("RGB", (w, h), color)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_four_images_make_a_two_by_two_grid() -> None:
    grid = compose_grid([make_png(100, 60, color=(i * 60, 0, 0)) for i in range(4)])
    assert grid.size == (2 * 100 + 8, 2 * 60 + 8)
    assert grid.getpixel((10, 10)) == (0, 0, 0)
    assert grid.getpixel((100 + 8 + 10, 60 + 8 + 10)) == (180, 0, 0)


def test_missing_slot_stays_background_when_one_image_failed() -> None:
    grid = compose_grid([make_png(50, 50), None, make_png(50, 50), make_png(50, 50)])
    assert grid.getpixel((50 + 8 + 10, 10)) == (32, 34, 37)


def test_two_images_sit_side_by_side() -> None:
    assert compose_grid([make_png(40, 40), make_png(40, 40)]).size == (88, 40)


def test_grid_is_scaled_down_when_images_are_large() -> None:
    assert max(compose_grid([make_png(2048, 2048)] * 4, max_side_px=1000).size) <= 1000


def test_preview_fits_the_limit_when_the_png_is_too_big() -> None:
    tiles = [make_png(300, 300, noise=True) for _ in range(4)]
    preview = grid_preview(tiles, max_bytes=60_000)
    assert len(preview.data) <= 60_000
    assert preview.filename.endswith(".jpg")
    assert Image.open(io.BytesIO(preview.data)).format == "JPEG"


def test_preview_stays_png_when_it_fits() -> None:
    preview = grid_preview([make_png(64, 64)] * 4, max_bytes=10 * 1024 * 1024)
    assert preview.filename == "grid.png"


def test_single_image_is_uploaded_as_is_when_it_fits() -> None:
    data = make_png(64, 64)
    assert fit_for_upload(data, max_bytes=1 << 20, stem="x").data == data


def test_zoom_out_centres_the_image_on_a_larger_canvas() -> None:
    out = zoom_out_canvas(make_png(100, 50), 2.0)
    assert image_size(out) == (200, 100)
    im = Image.open(io.BytesIO(out)).convert("RGB")
    assert im.getpixel((100, 50)) == (200, 40, 40)
    assert im.getpixel((5, 5)) == (128, 128, 128)


@pytest.mark.parametrize("factor", [1.0, 5.0])
def test_zoom_out_is_refused_when_factor_is_out_of_range(factor: float) -> None:
    with pytest.raises(ValueError, match="zoom factor"):
        zoom_out_canvas(make_png(10, 10), factor)


@pytest.mark.parametrize(
    ("direction", "size", "kept"),
    [
        (Direction.LEFT, (150, 50), (140, 25)),
        (Direction.RIGHT, (150, 50), (10, 25)),
        (Direction.UP, (100, 75), (50, 70)),
        (Direction.DOWN, (100, 75), (50, 5)),
    ],
)
def test_pan_extends_the_canvas_towards_the_direction(
    direction: Direction, size: tuple[int, int], kept: tuple[int, int]
) -> None:
    out = Image.open(io.BytesIO(pan_canvas(make_png(100, 50), direction))).convert("RGB")
    assert out.size == size
    assert out.getpixel(kept) == (200, 40, 40)


@pytest.mark.parametrize(
    ("size", "factor", "ratio", "canvas"),
    [
        ((120, 80), 1.0, (1, 1), (120, 120)),  # Make Square: the bands above and below
        ((80, 120), 1.0, (1, 1), (120, 120)),
        ((100, 100), 1.5, None, (150, 150)),  # Custom Zoom keeps the shape
        ((100, 100), 1.0, (16, 9), (178, 100)),  # --ar widens, never cuts
        ((100, 100), 2.0, (9, 16), (200, 356)),
    ],
)
def test_zoom_canvas_grows_to_the_factor_and_shape_and_keeps_the_image_in_the_middle(
    size: tuple[int, int], factor: float, ratio: tuple[int, int] | None, canvas: tuple[int, int]
) -> None:
    out = Image.open(io.BytesIO(zoom_canvas(make_png(*size), factor, ratio=ratio)))
    assert out.size == canvas
    assert out.getpixel((canvas[0] // 2, canvas[1] // 2)) == (200, 40, 40)
    assert out.getpixel((0, 0)) == (128, 128, 128) or out.size == size


@pytest.mark.parametrize("color", [(0, 0, 0), (255, 255, 255), (200, 180, 40)])
def test_region_picker_overlay_draws_a_visible_three_by_three_grid_on_any_image(color: tuple[int, int, int]) -> None:
    overlay = Image.open(io.BytesIO(region_picker_overlay(make_png(1536, 1024, color=color)))).convert("RGB")
    assert overlay.size == (1024, 683)  # scaled to the picker's side, shape kept
    for k in (1, 2):
        column = {overlay.getpixel((round(1024 * k / 3) + dx, 600)) for dx in (-2, -1, 0, 1, 2)}
        row = {overlay.getpixel((900, round(683 * k / 3) + dy)) for dy in (-2, -1, 0, 1, 2)}
        # white edged in black: one of the two differs from any background colour
        assert {(255, 255, 255), (0, 0, 0)} <= column and {(255, 255, 255), (0, 0, 0)} <= row
    assert overlay.getpixel((1024 // 2 + 100, 683 // 2 + 100)) == color  # the cells themselves are left as they were
