"""The describe job's pure parts: the prompts cleaned, the answer parsed, the ratio snapped, the answer's key."""

import json

import pytest
from google.genai import types

from worker.contract import DESCRIBE_PROMPTS, MAX_DESCRIBED_PROMPT_CHARS, ErrorCode, describe_key
from worker.describe import clean_prompt, prompts_of, response_schema, snap_ratio
from worker.errors import GenerationError


def answer(text: str, **extra: object) -> types.GenerateContentResponse:
    return types.GenerateContentResponse.model_validate(
        {
            "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 300, "candidatesTokenCount": 80, "totalTokenCount": 380},
            **extra,
        }
    )


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("a red fox in snow", "a red fox in snow"),
        ("1. **a red fox** in _snow_", "a red fox in snow"),
        ("2\ufe0f\u20e3 a fox", "a fox"),
        ("a fox <@123456789> and @everyone @here", "a fox and"),
        ("a fox\x00\x1b[31m\nat dawn", "a fox 31m at dawn"),
        ("\u201ca fox at dusk\u201d", "a fox at dusk"),
        ("a fox --v 6 --stylize 250", "a fox - v 6 - stylize 250"),
        ("> # a `fox` ||spoiler||", "a fox spoiler"),
        ("   ", None),
        ("**", None),
    ],
)
def test_clean_prompt(raw: str, clean: str | None) -> None:
    assert clean_prompt(raw) == clean


def test_a_long_prompt_is_cut_at_a_word_within_the_limit() -> None:
    cleaned = clean_prompt("word " * 1000)
    assert cleaned is not None
    assert len(cleaned) <= MAX_DESCRIBED_PROMPT_CHARS - 12
    assert cleaned.endswith("word")


def test_the_answer_gives_four_distinct_cleaned_prompts() -> None:
    prompts = ["**a fox**", "a fox", "an owl at night", "a heron", "a deer <@1>"]
    assert prompts_of(answer(json.dumps({"prompts": prompts}))) == ["a fox", "an owl at night", "a heron", "a deer"]


@pytest.mark.parametrize(
    "text", ["not json", json.dumps({"prompts": ["a", "b", "a"]}), json.dumps(["a", "b", "c", "d"]), "{}"]
)
def test_an_answer_without_four_usable_prompts_is_retryable_upstream_with_its_usage(text: str) -> None:
    with pytest.raises(GenerationError) as caught:
        prompts_of(answer(text))
    assert caught.value.code is ErrorCode.UPSTREAM and caught.value.retryable
    assert caught.value.usage is not None and caught.value.usage.prompt_tokens == 300


def test_a_blocked_prompt_is_safety() -> None:
    blocked = types.GenerateContentResponse.model_validate(
        {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 300}}
    )
    with pytest.raises(GenerationError) as caught:
        prompts_of(blocked)
    assert caught.value.code is ErrorCode.SAFETY and not caught.value.retryable


def test_the_schema_asks_for_exactly_four_strings() -> None:
    schema = response_schema().model_dump(mode="json", exclude_none=True)
    prompts = schema["properties"]["prompts"]
    assert prompts["min_items"] == prompts["max_items"] == DESCRIBE_PROMPTS
    assert prompts["items"]["type"] == "STRING"
    assert schema["required"] == ["prompts"]


@pytest.mark.parametrize(
    ("size", "ratio"), [((300, 200), "3:2"), ((1000, 1000), "1:1"), ((1080, 1920), "9:16"), ((5000, 1000), "21:9")]
)
def test_snap_ratio(size: tuple[int, int], ratio: str) -> None:
    assert snap_ratio(*size) == ratio


def test_describe_key() -> None:
    assert describe_key("outputs/j_1/00000.png") == "outputs/j_1/00000.describe.json"
