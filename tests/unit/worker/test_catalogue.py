"""The per-model table: limits checked before calling Gemini, pixel sizes and prices."""

import pytest

from bot.core.params import parse_prompt, resolve_model
from worker import contract
from worker.catalogue import (
    ASPECT_RATIOS_10,
    ASPECT_RATIOS_14,
    IMAGE_SIZES,
    MAX_SEED,
    MODEL_ALIASES,
    MODELS,
    PREVIEW_ALIASES,
    model_spec,
)


def test_check_names_the_limit_when_too_many_references() -> None:
    problem = model_spec("gemini-2.5-flash-image").check(references=5, aspect_ratio=None, image_size=None)
    assert problem == "gemini-2.5-flash-image takes at most 3 reference images; 5 given"


def test_check_counts_the_edit_source_when_editing() -> None:
    spec = model_spec("gemini-2.5-flash-image")
    assert spec.check(references=2, aspect_ratio=None, image_size=None, edit=True) is None
    problem = spec.check(references=3, aspect_ratio=None, image_size=None, edit=True)
    assert problem is not None
    assert "at most 3" in problem
    assert "4 given" in problem


def test_check_accepts_fourteen_references_when_gemini_3() -> None:
    assert model_spec("gemini-3-pro-image-preview").check(references=14, aspect_ratio=None, image_size=None) is None
    assert model_spec("gemini-3-pro-image-preview").check(references=15, aspect_ratio=None, image_size=None)


@pytest.mark.parametrize("ratio", ["1:4", "4:1", "1:8", "8:1", "7:3"])
def test_check_refuses_aspect_ratio_when_model_lacks_it(ratio: str) -> None:
    problem = model_spec("gemini-2.5-flash-image").check(references=0, aspect_ratio=ratio, image_size=None)
    assert problem is not None
    assert ratio in problem


def test_check_accepts_extreme_ratios_when_gemini_3_1_flash() -> None:
    spec = model_spec("gemini-3.1-flash-image-preview")
    assert all(spec.check(references=0, aspect_ratio=r, image_size=None) is None for r in ("1:8", "8:1", "1:4"))


def test_check_refuses_image_size_when_model_makes_1k_only() -> None:
    spec = model_spec("gemini-2.5-flash-image")
    assert not spec.takes_image_size
    assert spec.check(references=0, aspect_ratio=None, image_size="1K") is None
    problem = spec.check(references=0, aspect_ratio=None, image_size="2K")
    assert problem == "gemini-2.5-flash-image makes 1K images only; 2K asked"


def test_check_refuses_512_when_gemini_3_pro() -> None:
    spec = model_spec("gemini-3-pro-image")
    assert spec.check(references=0, aspect_ratio="16:9", image_size="4K") is None
    assert spec.check(references=0, aspect_ratio=None, image_size="512") is not None
    assert model_spec("gemini-3.1-flash-image").check(references=0, aspect_ratio=None, image_size="512") is None


def test_model_spec_is_permissive_when_model_unknown() -> None:
    spec = model_spec("gemini-9-ultra-image")
    assert not spec.known
    assert spec.check(references=14, aspect_ratio="3:7", image_size="4K") is None
    assert spec.takes_image_size
    assert spec.price("1K") is None


def test_model_spec_inherits_limits_when_name_extends_a_known_model() -> None:
    spec = model_spec("models/gemini-3-pro-image-preview-11-2025")
    assert spec.known
    assert spec.name == "gemini-3-pro-image-preview-11-2025"
    assert spec.max_input_images == 14
    assert model_spec("models/gemini-2.5-flash-image") is MODELS["gemini-2.5-flash-image"]


@pytest.mark.parametrize(
    ("model", "ratio", "size", "pixels"),
    [
        ("gemini-2.5-flash-image", None, None, (1024, 1024)),
        ("gemini-2.5-flash-image", "16:9", None, (1344, 768)),
        ("gemini-2.5-flash-image", "9:16", "1K", (768, 1344)),
        ("gemini-2.5-flash-image", "21:9", None, (1536, 672)),
        ("gemini-3-pro-image-preview", "1:1", "2K", (2048, 2048)),
        ("gemini-3-pro-image-preview", "16:9", "4K", (5504, 3072)),
        ("gemini-3.1-flash-image", "1:1", "512", (512, 512)),
        ("gemini-3.1-flash-image", "8:1", "1K", (3072, 384)),
        ("gemini-9-image", "2:1", None, (1456, 720)),
    ],
)
def test_pixel_size_matches_gemini_when_ratio_and_size_given(
    model: str, ratio: str | None, size: str | None, pixels: tuple[int, int]
) -> None:
    assert model_spec(model).pixel_size(ratio, size) == pixels


def test_every_known_ratio_has_a_pixel_size_when_listed() -> None:
    for spec in MODELS.values():
        assert spec.aspect_ratios is not None
        assert set(spec.aspect_ratios) <= set(spec.pixels_1k)
        assert set(ASPECT_RATIOS_10) <= set(spec.aspect_ratios)


def test_price_halves_when_batch() -> None:
    assert model_spec("gemini-2.5-flash-image").price() == pytest.approx(0.039)
    assert model_spec("gemini-2.5-flash-image").price(batch=True) == pytest.approx(0.0195)
    assert model_spec("gemini-3-pro-image-preview").price("4K") == pytest.approx(0.24)
    assert model_spec("gemini-3.1-flash-image").price("512") == pytest.approx(0.045)


@pytest.mark.parametrize(
    ("alias", "model"),
    [
        ("flash", "gemini-2.5-flash-image"),
        ("nano-banana", "gemini-2.5-flash-image"),
        ("pro", "gemini-3-pro-image-preview"),
        ("nano-banana-pro", "gemini-3-pro-image-preview"),
        ("flash3", "gemini-3.1-flash-image-preview"),
        ("nano-banana-2", "gemini-3.1-flash-image-preview"),
    ],
)
def test_short_name_resolves_as_before_when_typed_after_model(alias: str, model: str) -> None:
    assert MODEL_ALIASES[alias] == model
    assert resolve_model(alias.upper()) == model
    assert parse_prompt(f"a fox --model {alias}").params.model == model


def test_every_short_name_and_preview_name_is_a_known_model_when_looked_up() -> None:
    assert set(MODEL_ALIASES) == {"flash", "nano-banana", "pro", "nano-banana-pro", "flash3", "nano-banana-2"}
    for name in (*MODEL_ALIASES.values(), *PREVIEW_ALIASES):
        assert model_spec(name).known, name
    assert set(PREVIEW_ALIASES.values()) <= set(MODELS)


def test_contract_reexports_the_catalogue_when_the_bot_reads_it() -> None:
    assert contract.model_spec is model_spec
    assert contract.MODEL_ALIASES is MODEL_ALIASES
    assert contract.ASPECT_RATIOS_10 is ASPECT_RATIOS_10
    assert contract.IMAGE_SIZES == IMAGE_SIZES == ("512", "1K", "2K", "4K")
    assert ASPECT_RATIOS_14[: len(ASPECT_RATIOS_10)] == ASPECT_RATIOS_10


@pytest.mark.parametrize(("seed", "valid"), [(0, True), (MAX_SEED, True), (MAX_SEED + 1, False), (-1, False)])
def test_contract_takes_exactly_the_catalogue_seed_range_when_validating_an_item(seed: int, valid: bool) -> None:
    def make() -> contract.ChunkItem:
        return contract.ChunkItem(index=0, prompt="p", seed=seed, output_key="outputs/j/00000.png")

    if valid:
        assert make().seed == seed
    else:
        with pytest.raises(ValueError, match="seed"):
            make()
    assert MAX_SEED == 2**31 - 1


@pytest.mark.parametrize("size", IMAGE_SIZES)
def test_contract_takes_every_catalogue_size_when_validating_an_item(size: str) -> None:
    item = contract.ChunkItem.model_validate({"index": 0, "prompt": "p", "image_size": size, "output_key": "o.png"})
    assert item.image_size == size
