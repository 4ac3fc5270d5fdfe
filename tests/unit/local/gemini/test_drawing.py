"""local_gemini's pictures are deterministic, sized as asked and shaped by their inputs; its faults parse."""

import io

import pytest
from PIL import Image

from local.gemini.drawing import draw_image, draw_size
from local.gemini.faults import Faults, parse_latency


def make_ref(colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def draw(**overrides: object) -> bytes:
    args: dict[str, object] = {"prompt": "a lighthouse at dusk", "seed": 7, "references": (), "size": (160, 96)}
    args.update(overrides)
    return draw_image(**args)  # type: ignore[arg-type]  # test helper forwarding keyword arguments


def pixels(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def test_draw_returns_the_same_bytes_when_inputs_are_the_same() -> None:
    ref = make_ref((200, 30, 30))
    assert draw(references=(ref,)) == draw(references=(ref,))


@pytest.mark.parametrize(
    "change", [{"seed": 8}, {"seed": None}, {"prompt": "a lighthouse at dawn"}, {"variant": "draft"}]
)
def test_draw_changes_the_picture_when_prompt_seed_or_variant_changes(change: dict[str, object]) -> None:
    assert pixels(draw(**change)).tobytes() != pixels(draw()).tobytes()


def test_draw_shows_the_reference_when_reference_changes() -> None:
    red = pixels(draw(references=(make_ref((220, 20, 20)),)))
    blue = pixels(draw(references=(make_ref((20, 20, 220)),)))
    assert red.tobytes() != blue.tobytes()
    # The reference's thumbnail sits in the bottom band: its colour is visible there.
    r, _, b = red.getpixel((5, red.height - 5))  # type: ignore[misc]  # RGB pixel
    assert r > 150
    assert b < 80
    r, _, b = blue.getpixel((5, blue.height - 5))  # type: ignore[misc]  # RGB pixel
    assert b > 150
    assert r < 80


def test_draw_uses_every_reference_when_several_given() -> None:
    one = draw(references=(make_ref((220, 20, 20)),))
    two = draw(references=(make_ref((220, 20, 20)), make_ref((20, 220, 20))))
    assert one != two


@pytest.mark.parametrize("size", [(1024, 1024), (1344, 768), (768, 1344), (1536, 672), (31, 7)])
def test_draw_honours_the_size_when_given(size: tuple[int, int]) -> None:
    assert pixels(draw(size=size)).size == size


def test_draw_encodes_jpeg_when_asked() -> None:
    data = draw(image_format="JPEG")
    assert data[:3] == b"\xff\xd8\xff"
    assert data == draw(image_format="JPEG")


def test_draw_skips_a_reference_when_it_is_not_an_image() -> None:
    assert pixels(draw(references=(b"\x89PNG\r\n\x1a\nbroken",))).size == (160, 96)


@pytest.mark.parametrize(
    ("size", "px", "expected"),
    [
        ((1344, 768), 64, (64, 37)),
        ((768, 1344), 64, (37, 64)),
        ((1024, 1024), None, (1024, 1024)),
        ((50, 20), 64, (50, 20)),
    ],
)
def test_draw_size_keeps_the_aspect_when_shrinking(
    size: tuple[int, int], px: int | None, expected: tuple[int, int]
) -> None:
    assert draw_size(size, px) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("0.5", (0.5, 0.5)), ("0.2-1.5", (0.2, 1.5)), (2, (2.0, 2.0)), ([0.1, 0.3], (0.1, 0.3))]
)
def test_parse_latency_reads_fixed_or_range_when_valid(value: object, expected: tuple[float, float]) -> None:
    assert parse_latency(value) == expected


@pytest.mark.parametrize("value", ["fast", "2-1", -1, True, [1]])
def test_parse_latency_raises_when_invalid(value: object) -> None:
    with pytest.raises(ValueError, match="latency"):
        parse_latency(value)


def test_faults_read_env_when_set() -> None:
    faults = Faults.from_env(
        {
            "LOCAL_GEMINI_LATENCY": "0.2-1.5",
            "LOCAL_GEMINI_RATE_429": "0.1",
            "LOCAL_GEMINI_RATE_5XX": "0.05",
            "LOCAL_GEMINI_BLOCK_WORD": "forbidden",
            "LOCAL_GEMINI_RETRY_DELAY": "3",
        }
    )
    assert faults.latency_s == (0.2, 1.5)
    assert faults.rate_429 == 0.1
    assert faults.rate_5xx == 0.05
    assert faults.block_word == "forbidden"
    assert faults.retry_delay_s == 3.0


def test_faults_update_changes_nothing_when_one_field_is_invalid() -> None:
    faults = Faults()
    with pytest.raises(ValueError, match="rate_429"):
        faults.update({"next_429": 2, "rate_429": 3})
    assert faults.next_429 == 0
    with pytest.raises(ValueError, match="unknown"):
        faults.update({"nope": 1})
    faults.update({"next_429": 2, "latency": "0.1-0.2", "block_as": "image", "thoughts": True})
    assert (faults.next_429, faults.latency_s, faults.block_as, faults.thoughts) == (2, (0.1, 0.2), "image", True)
    assert faults.to_json()["latency"] == [0.1, 0.2]
