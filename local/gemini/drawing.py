"""The local Gemini server's pictures: deterministic drawings of the prompt, seed and references (blocking)."""

import hashlib
import io
import random
from collections.abc import Sequence
from typing import Literal, cast

from PIL import Image, ImageDraw, ImageFont

Rgb = tuple[int, int, int]


def draw_size(size: tuple[int, int], draw_px: int | None) -> tuple[int, int]:
    """Shrink `size` so its longest side is at most `draw_px`, keeping its aspect; unchanged when None."""
    width, height = size
    longest = max(width, height)
    if draw_px is None or longest <= draw_px:
        return size
    scale = draw_px / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def _reference_thumbnail(data: bytes, box: int) -> Image.Image | None:
    try:
        with Image.open(io.BytesIO(data)) as source:
            source.draft("RGB", (box, box))
            thumb = source.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    thumb.thumbnail((box, box))
    return thumb


def _mix(a: Rgb, b: Rgb, weight: float) -> Rgb:
    return (
        round(a[0] * (1 - weight) + b[0] * weight),
        round(a[1] * (1 - weight) + b[1] * weight),
        round(a[2] * (1 - weight) + b[2] * weight),
    )


def draw_image(
    *,
    prompt: str,
    seed: int | None,
    references: Sequence[bytes] = (),
    size: tuple[int, int],
    image_format: Literal["PNG", "JPEG"] = "PNG",
    variant: str = "",
) -> bytes:
    """Draw the picture of (prompt, seed, references) at `size`, encoded as PNG or JPEG; blocking, deterministic.

    The background gradient and the palette come from a hash of the prompt, seed and `variant` (a draft is
    drawn with another variant); each reference's average colour tints one palette entry and the references
    are shown as thumbnails in a band along the bottom, so changing a reference changes the picture.
    """
    width, height = size
    key = hashlib.sha256(f"{variant}\x00{seed}\x00{prompt}".encode()).digest()
    rng = random.Random(key)  # noqa: S311 - a deterministic picture, not a secret
    box = max(8, min(256, height // 4, width // max(1, len(references))))
    thumbs = [thumb for data in references if (thumb := _reference_thumbnail(data, box)) is not None]
    palette: list[Rgb] = [(key[i], key[i + 1], key[i + 2]) for i in range(0, 18, 3)]
    for i, thumb in enumerate(thumbs):
        average = cast("Rgb", thumb.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0)))
        palette[i % len(palette)] = _mix(palette[i % len(palette)], average, 0.7)

    top = Image.new("RGB", size, palette[0])
    bottom = Image.new("RGB", size, palette[1])
    gradient = Image.linear_gradient("L").resize(size, Image.Resampling.BILINEAR)
    canvas = Image.composite(bottom, top, gradient)
    draw = ImageDraw.Draw(canvas)
    unit = max(2, min(width, height) // 6)
    for i in range(5 + key[20] % 8):
        cx, cy = rng.randrange(width), rng.randrange(height)
        rx, ry = rng.randint(unit // 2, unit * 2), rng.randint(unit // 2, unit * 2)
        bbox = (cx - rx, cy - ry, cx + rx, cy + ry)
        colour = palette[2 + i % 4]
        outline = palette[(3 + i) % len(palette)]
        match rng.randrange(3):
            case 0:
                draw.ellipse(bbox, fill=colour, outline=outline, width=max(1, unit // 16))
            case 1:
                draw.rectangle(bbox, fill=colour, outline=outline, width=max(1, unit // 16))
            case _:
                points = [(rng.randrange(width), rng.randrange(height)) for _ in range(3)]
                draw.polygon(points, fill=colour, outline=outline)
    if thumbs:
        band = max(t.height for t in thumbs) + 4
        draw.rectangle((0, height - band, width, height), fill=(255, 255, 255))
        x = 2
        for thumb in thumbs:
            canvas.paste(thumb, (x, height - band + 2))
            x += thumb.width + 4
    if width >= 96 and height >= 48:
        font = ImageFont.load_default(size=max(10, min(width, height) // 24))
        caption = prompt.strip().replace("\n", " ")[:60]
        draw.text((unit // 4 + 1, unit // 4 + 1), caption, fill=(0, 0, 0), font=font)
        draw.text((unit // 4, unit // 4), caption, fill=(255, 255, 255), font=font)
    out = io.BytesIO()
    if image_format == "JPEG":
        canvas.save(out, format="JPEG", quality=85)
    else:
        canvas.save(out, format="PNG", compress_level=1)
    return out.getvalue()
