"""Pillow work the bot does itself: grid previews, zoom and pan canvases, the region picker's numbered grid.

Grid previews fit Discord's upload limit; the picker's 3×3 overlay is what Vary (Region) shows to pick cells on.

Every function here is synchronous and CPU-bound; callers run them with `asyncio.to_thread`.
"""

import io
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from PIL import Image, ImageDraw, ImageFont, ImageOps

GRID_GAP_PX = 8
GRID_BACKGROUND = (32, 34, 37)
MAX_GRID_SIDE_PX = 2048
_QUALITIES = (90, 82, 74, 66, 58, 50)


@dataclass(frozen=True, slots=True, kw_only=True)
class EncodedImage:
    """Image bytes ready to upload, with the file name and size to use."""

    data: bytes
    filename: str
    width: int
    height: int


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return ImageOps.exif_transpose(image).convert("RGB")


def _layout(n: int) -> tuple[int, int]:
    if n <= 1:
        return 1, 1
    if n == 2:
        return 2, 1
    if n <= 4:
        return 2, 2
    cols = 3 if n <= 9 else 4
    return cols, -(-n // cols)


def compose_grid(images: Sequence[bytes | None], *, max_side_px: int = MAX_GRID_SIDE_PX) -> Image.Image:
    """Lay images out as Midjourney does (2x2 for four, side by side for two); a None slot stays empty.

    Cells take the size of the first image, scaled so the whole grid's longer side is at most `max_side_px`.
    """
    opened = [None if d is None else _open(d) for d in images]
    first = next((im for im in opened if im is not None), None)
    cell_w, cell_h = first.size if first is not None else (512, 512)
    cols, rows = _layout(len(opened))
    gap = GRID_GAP_PX if len(opened) > 1 else 0
    room = max_side_px - gap * (max(cols, rows) - 1)
    scale = min(1.0, room / max(cols * cell_w, rows * cell_h))
    cell_w, cell_h = max(1, int(cell_w * scale)), max(1, int(cell_h * scale))
    grid = Image.new("RGB", (cols * cell_w + (cols - 1) * gap, rows * cell_h + (rows - 1) * gap), GRID_BACKGROUND)
    for i, im in enumerate(opened):
        if im is None:
            continue
        cell = ImageOps.fit(im, (cell_w, cell_h), Image.Resampling.LANCZOS)
        grid.paste(cell, ((i % cols) * (cell_w + gap), (i // cols) * (cell_h + gap)))
    return grid


def encode_to_fit(image: Image.Image, *, max_bytes: int, stem: str) -> EncodedImage:
    """Encode `image` as PNG if it fits `max_bytes`, else as ever smaller JPEG, shrinking the picture if needed."""
    buf = io.BytesIO()
    image.save(buf, "PNG", optimize=False)
    if buf.tell() <= max_bytes:
        return EncodedImage(data=buf.getvalue(), filename=f"{stem}.png", width=image.width, height=image.height)
    current = image
    while True:
        for quality in _QUALITIES:
            buf = io.BytesIO()
            current.save(buf, "JPEG", quality=quality, optimize=True)
            if buf.tell() <= max_bytes:
                return EncodedImage(
                    data=buf.getvalue(), filename=f"{stem}.jpg", width=current.width, height=current.height
                )
        if max(current.size) <= 64:
            raise ValueError(f"cannot encode the image within {max_bytes} bytes")
        current = current.resize((max(1, current.width * 3 // 4), max(1, current.height * 3 // 4)))


def grid_preview(images: Sequence[bytes | None], *, max_bytes: int, stem: str = "grid") -> EncodedImage:
    """Return the grid of `images` encoded to fit an upload limit of `max_bytes`."""
    return encode_to_fit(compose_grid(images), max_bytes=max_bytes, stem=stem)


def fit_for_upload(data: bytes, *, max_bytes: int, stem: str) -> EncodedImage:
    """Return the image as is when it fits `max_bytes`, else a compressed copy that does."""
    image = _open(data)
    if len(data) <= max_bytes:
        return EncodedImage(data=data, filename=f"{stem}.png", width=image.width, height=image.height)
    return encode_to_fit(image, max_bytes=max_bytes, stem=stem)


class Direction(StrEnum):
    """Where a pan extends the canvas."""

    LEFT = "left"
    RIGHT = "right"
    UP = "up"
    DOWN = "down"


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def zoom_out_canvas(data: bytes, factor: float) -> bytes:
    """Return the image centred on a canvas `factor` times larger (PNG), the new border neutral grey to be filled."""
    if not 1.0 < factor <= 4.0:
        raise ValueError("zoom factor must be in (1, 4]")
    image = _open(data)
    w, h = image.size
    canvas = Image.new("RGB", (round(w * factor), round(h * factor)), (128, 128, 128))
    canvas.paste(image, ((canvas.width - w) // 2, (canvas.height - h) // 2))
    return _png(canvas)


def zoom_canvas(data: bytes, factor: float, *, ratio: tuple[int, int] | None = None) -> bytes:
    """Return the image centred on a canvas `factor` times larger, widened or heightened to `ratio` (W, H) (PNG).

    Midjourney's Custom Zoom takes 1.0–2.0 and may change the aspect ratio
    (https://docs.midjourney.com/hc/en-us/articles/32683616989197-Zoom-Out): 1.0 keeps the frame (only the prompt
    changes the picture). Make Square is a zoom of 1.0 to 1:1. The canvas only grows, so the image is never cut.
    """
    if not 1.0 <= factor <= 4.0:
        raise ValueError("zoom factor must be in [1, 4]")
    image = _open(data)
    w, h = image.size
    cw, ch = round(w * factor), round(h * factor)
    if ratio is not None:
        rw, rh = ratio
        if cw * rh > ch * rw:  # wider than the ratio: add height
            ch = round(cw * rh / rw)
        else:
            cw = round(ch * rw / rh)
    canvas = Image.new("RGB", (cw, ch), (128, 128, 128))
    canvas.paste(image, ((cw - w) // 2, (ch - h) // 2))
    return _png(canvas)


def pan_canvas(data: bytes, direction: Direction, *, share: float = 0.5) -> bytes:
    """Return the image on a canvas extended by `share` of its size towards `direction` (PNG)."""
    image = _open(data)
    w, h = image.size
    horizontal = direction in (Direction.LEFT, Direction.RIGHT)
    extra = round((w if horizontal else h) * share)
    size = (w + extra, h) if horizontal else (w, h + extra)
    canvas = Image.new("RGB", size, (128, 128, 128))
    offset = {
        Direction.LEFT: (extra, 0),
        Direction.RIGHT: (0, 0),
        Direction.UP: (0, extra),
        Direction.DOWN: (0, 0),
    }[direction]
    canvas.paste(image, offset)
    return _png(canvas)


def image_size(data: bytes) -> tuple[int, int]:
    """Return an image's (width, height) from its header."""
    with Image.open(io.BytesIO(data)) as image:
        return image.size


PICKER_SIDE_PX = 1024  # the picker is a preview: small to upload, large enough to see what each cell holds


def region_picker_overlay(data: bytes, *, max_side_px: int = PICKER_SIDE_PX) -> bytes:
    """Return the image (at most `max_side_px` on its longer side) under a 3×3 grid with cells numbered 1–9 (PNG).

    Lines and numbers are white edged in black, and each number sits on a dark disc, so they read on any image;
    the discs sit in the cells' top-left corners, so what each cell holds stays visible.
    The cells are numbered left to right, top to bottom, as `bot.core.regions.cells_region` reads them.
    """
    image = _open(data)
    image.thumbnail((max_side_px, max_side_px), Image.Resampling.LANCZOS)
    w, h = image.size
    draw = ImageDraw.Draw(image)
    line = max(1, round(min(w, h) / 300))
    for k in (1, 2):
        x, y = round(w * k / 3), round(h * k / 3)
        draw.line([(x, 0), (x, h)], fill="black", width=line + 2)
        draw.line([(0, y), (w, y)], fill="black", width=line + 2)
        draw.line([(x, 0), (x, h)], fill="white", width=line)
        draw.line([(0, y), (w, y)], fill="white", width=line)
    radius = max(8, round(min(w, h) / 24))
    font = ImageFont.load_default(size=round(radius * 1.2))
    for cell in range(9):
        cx, cy = round(w * (cell % 3) / 3) + radius * 3 // 2, round(h * (cell // 3) / 3) + radius * 3 // 2
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(0, 0, 0), outline="white", width=line)
        draw.text((cx, cy), str(cell + 1), fill="white", font=font, anchor="mm", stroke_width=1, stroke_fill="black")
    return _png(image)
