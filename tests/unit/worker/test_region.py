"""Vary (Region) in the worker: the outlined copy, the instruction, and compositing that leaves the outside alone."""

import io

import pytest
from PIL import Image, ImageChops
from pydantic import ValidationError

from worker.contract import ChunkItem, RegionSpec
from worker.region import composite_region, mark_region, pixel_box, region_instruction, region_mask


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _noise(size: tuple[int, int], seed: int) -> Image.Image:
    return Image.frombytes("RGB", size, bytes((i * 7919 + seed * 31) % 251 for i in range(size[0] * size[1] * 3)))


REGION = RegionSpec(left=0.25, top=0.5, right=0.75, bottom=1.0)


def test_pixel_box_rounds_the_fractions_to_pixels() -> None:
    assert pixel_box(REGION, 200, 100) == (50, 50, 150, 100)


def test_composite_keeps_every_pixel_outside_the_region_when_the_answer_differs_everywhere() -> None:
    source = _noise((200, 120), 1)
    answer = Image.new("RGB", (400, 240), (0, 255, 0))  # another size: scaled to the source's first
    out = Image.open(io.BytesIO(composite_region(_png(source), _png(answer), REGION))).convert("RGB")
    assert out.size == source.size
    left, top, right, bottom = pixel_box(REGION, *source.size)
    outside = Image.new("L", source.size, 255)
    outside.paste(0, (left, top, right, bottom))
    diff = ImageChops.difference(out, source).convert("L")
    assert ImageChops.multiply(diff, outside).getbbox() is None  # nothing changed outside the region
    inner = out.crop((left + 8, top + 8, right - 8, bottom - 8))
    assert inner.getcolors() == [(inner.width * inner.height, (0, 255, 0))]  # the inside is the model's


def test_region_mask_feathers_inward_only() -> None:
    mask = region_mask((100, 100), RegionSpec(left=0.2, top=0.2, right=0.8, bottom=0.8), feather_px=4)
    assert mask.getpixel((19, 50)) == 0 and mask.getpixel((80, 50)) == 0  # just outside
    edge = mask.getpixel((21, 50))
    assert edge is not None and not isinstance(edge, tuple) and 0 < edge < 255  # the edge fades
    assert mask.getpixel((50, 50)) == 255


def test_mark_region_outlines_the_region_in_red_on_a_copy() -> None:
    source = Image.new("RGB", (100, 100), (10, 10, 10))
    marked = Image.open(io.BytesIO(mark_region(_png(source), REGION))).convert("RGB")
    assert marked.getpixel((25, 75)) == (255, 0, 0)
    assert marked.getpixel((50, 75)) == (10, 10, 10) and marked.getpixel((5, 5)) == (10, 10, 10)


def test_region_instruction_names_the_region_in_percent_and_the_change() -> None:
    text = region_instruction("a kite", REGION, references=0)
    assert "from 25% to 75% of the width" in text and "from 50% to 100% of the height" in text
    assert "draw: a kite" in text and "outside that part exactly as it is" in text


def test_contract_refuses_an_empty_region_or_one_without_a_source() -> None:
    with pytest.raises(ValidationError):
        RegionSpec(left=0.5, top=0.1, right=0.5, bottom=0.2)
    with pytest.raises(ValidationError, match="source"):
        ChunkItem(index=0, prompt="x", output_key="outputs/j/0.png", region=REGION)
