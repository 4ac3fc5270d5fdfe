"""`TokenUsage`: an item's attempts are summed, and a result without usage (an older worker) still parses."""

from worker.contract import ChunkResult, TokenUsage, add_usage


def test_usages_add_field_by_field_and_image_tokens_stay_unknown_only_when_both_are() -> None:
    first = TokenUsage(prompt_tokens=8, output_tokens=9)
    second = TokenUsage(prompt_tokens=5, output_tokens=1290, thoughts_tokens=3, image_output_tokens=1290)

    assert first + second == TokenUsage(
        prompt_tokens=13, output_tokens=1299, thoughts_tokens=3, image_output_tokens=1290
    )
    assert (first + first).image_output_tokens is None
    assert add_usage(None, first) == first and add_usage(first, None) == first and add_usage(None, None) is None


def test_a_result_from_a_worker_without_usage_parses_with_none() -> None:
    older = {
        "schema": 1,
        "type": "result",
        "ok": 1,
        "failed": 0,
        "results": [{"index": 0, "status": "ok", "key": "o/0.png", "width": 1, "height": 1}],
    }

    assert ChunkResult.model_validate(older).results[0].usage is None
