"""Vary (Region) on a model without masks: what Gemini is sent, and how its answer is put back (Pillow, blocking).

Gemini's image models take no mask (https://ai.google.dev/gemini-api/docs/image-generation: editing is by prompt
and images only), so the worker sends three things: the image itself, a copy with the region outlined, and the
region in words and percent with an instruction to change only that part. Whatever the model does elsewhere is then
discarded: only the region, feathered a few pixels inward, is taken from its answer (scaled to the source's size)
onto the source, so nothing outside the region changes (`composite_region`). The caller runs these in a thread.
"""

import io

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps

from worker.contract import RegionSpec

FEATHER_PX = 4
OUTLINE = (255, 0, 0)


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return ImageOps.exif_transpose(image).convert("RGB")


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def pixel_box(region: RegionSpec, width: int, height: int) -> tuple[int, int, int, int]:
    """Return the region in pixels of a `width`×`height` image: (left, top, right, bottom), right/bottom excluded."""
    left, right = round(region.left * width), round(region.right * width)
    top, bottom = round(region.top * height), round(region.bottom * height)
    return left, top, max(right, left + 1), max(bottom, top + 1)


def region_words(region: RegionSpec) -> str:
    """Return where the region is, in words a model reads ("from 0% to 33% of the width, from the left; …")."""
    pct = [round(v * 100) for v in (region.left, region.right, region.top, region.bottom)]
    return (
        f"the rectangle from {pct[0]}% to {pct[1]}% of the width (measured from the left edge) and from "
        f"{pct[2]}% to {pct[3]}% of the height (measured from the top edge)"
    )


def region_instruction(prompt: str, region: RegionSpec, *, references: int) -> str:
    """Return the text of a Vary (Region) request: the first image is edited, the second shows the region."""
    lines = [
        "Edit the first image. Change only the part inside "
        f"{region_words(region)}; the second image is the same picture with that part outlined in red.",
        f"In that part, draw: {prompt}",
        "Keep everything outside that part exactly as it is, blend the change naturally into its surroundings, and "
        "do not draw the red outline.",
    ]
    if references:
        lines.append("The other images are references for the change.")
    return "\n".join(lines)


def mark_region(data: bytes, region: RegionSpec) -> bytes:
    """Return a copy of the image with the region outlined in red (PNG), the line about 1 % of the image thick."""
    image = _open(data)
    left, top, right, bottom = pixel_box(region, image.width, image.height)
    width = max(2, round(min(image.size) / 100))
    ImageDraw.Draw(image).rectangle((left, top, right - 1, bottom - 1), outline=OUTLINE, width=width)
    return _png(image)


def region_mask(size: tuple[int, int], region: RegionSpec, *, feather_px: int = FEATHER_PX) -> Image.Image:
    """Return the compositing mask: 255 well inside the region, fading to 0 at its edge, and 0 everywhere outside.

    The feather is inward only: a box blur of a rectangle shrunk by the feather cannot reach past the region's
    edge, and the hard rectangle multiplied in makes sure of it.
    """
    left, top, right, bottom = pixel_box(region, *size)
    hard = Image.new("L", size, 0)
    ImageDraw.Draw(hard).rectangle((left, top, right - 1, bottom - 1), fill=255)
    inset = min(feather_px, (right - left) // 4, (bottom - top) // 4)
    if inset <= 0:
        return hard
    soft = Image.new("L", size, 0)
    ImageDraw.Draw(soft).rectangle((left + inset, top + inset, right - 1 - inset, bottom - 1 - inset), fill=255)
    return ImageChops.multiply(soft.filter(ImageFilter.BoxBlur(inset)), hard)


def composite_region(source: bytes, answer: bytes, region: RegionSpec, *, feather_px: int = FEATHER_PX) -> bytes:
    """Return the source with only the region taken from the model's answer (PNG, the source's size)."""
    base = _open(source)
    made = _open(answer)
    if made.size != base.size:
        made = made.resize(base.size, Image.Resampling.LANCZOS)
    return _png(Image.composite(made, base, region_mask(base.size, region, feather_px=feather_px)))


__all__ = [
    "FEATHER_PX",
    "composite_region",
    "mark_region",
    "pixel_box",
    "region_instruction",
    "region_mask",
    "region_words",
]
