"""`cost_of`: Gemini's reported usage priced as https://ai.google.dev/gemini-api/docs/pricing prices it."""

import pytest

from bot.core.pricing import cost_of
from worker.catalogue import MODELS
from worker.contract import TokenUsage, model_spec


def test_a_flash_image_of_1290_tokens_costs_its_published_price_plus_the_prompt() -> None:
    # $0.30 per 1M input tokens, $30 per 1M image tokens: 1290 tokens = $0.0387, the page's "$0.039 per image".
    usage = TokenUsage(prompt_tokens=10, output_tokens=1290, image_output_tokens=1290)

    assert cost_of("gemini-2.5-flash-image", usage, batch=False) == pytest.approx(0.0387 + 0.000003)


def test_the_batch_api_charges_half_of_every_token() -> None:
    usage = TokenUsage(prompt_tokens=10, output_tokens=1290, image_output_tokens=1290)

    assert cost_of("gemini-2.5-flash-image", usage, batch=True) == pytest.approx((0.0387 + 0.000003) / 2)


def test_a_pro_4k_image_with_thoughts_and_a_reference_prices_each_kind_of_token_at_its_rate() -> None:
    # 3 Pro Image: $2 input, $12 text and thinking, $120 image output per 1M tokens; a 4K image is 2000 tokens.
    usage = TokenUsage(prompt_tokens=570, output_tokens=2008, thoughts_tokens=200, image_output_tokens=2000)

    expected = 570 * 2 / 1e6 + 2000 * 120 / 1e6 + (8 + 200) * 12 / 1e6
    assert cost_of("gemini-3-pro-image-preview", usage, batch=False) == pytest.approx(expected)
    assert expected == pytest.approx(0.001140 + 0.24 + 0.002496)


def test_a_blocked_prompt_costs_its_input_tokens() -> None:
    assert cost_of("gemini-3.1-flash-image-preview", TokenUsage(prompt_tokens=1000), batch=False) == pytest.approx(
        0.0005
    )


def test_output_not_broken_down_by_modality_is_priced_as_image_output() -> None:
    usage = TokenUsage(output_tokens=1120)

    assert cost_of("gemini-3.1-flash-image", usage, batch=False) == pytest.approx(1120 * 60 / 1e6)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_models_image_price_is_its_output_tokens_at_the_image_rate_to_the_published_cent(name: str) -> None:
    spec = model_spec(name)
    for size, tokens in spec.output_tokens.items():
        usage = TokenUsage(output_tokens=tokens, image_output_tokens=tokens)
        assert cost_of(name, usage, batch=False) == pytest.approx(spec.price(size), abs=0.0005)


def test_without_usage_a_made_image_costs_the_catalogue_price_of_its_size_and_a_failure_nothing() -> None:
    assert cost_of("gemini-3.1-flash-image", None, batch=False, image_size="2K") == pytest.approx(0.101)
    assert cost_of("gemini-3.1-flash-image", None, batch=True, image_size="2K") == pytest.approx(0.0505)
    assert cost_of("gemini-3.1-flash-image", None, batch=False, image_size="2K", made=False) == 0.0


def test_a_model_the_table_does_not_price_has_no_cost() -> None:
    assert cost_of("gemini-9-image", TokenUsage(prompt_tokens=5, output_tokens=1000), batch=False) is None
    assert cost_of("gemini-9-image", None, batch=False) is None
