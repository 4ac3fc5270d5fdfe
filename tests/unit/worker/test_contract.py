"""The bot ⇄ worker contract round-trips its documented examples and refuses what it must."""

import pytest
from pydantic import ValidationError

from worker.contract import (
    ChunkInput,
    ChunkOutput,
    ChunkProgress,
    ChunkResult,
    ErrorCode,
    ItemError,
    ItemOk,
    parse_top_level_error,
)

ITEM: dict[str, object] = {
    "index": 75,
    "prompt": "a fox",
    "ref_keys": ["inputs/ab12.png"],
    "aspect_ratio": "1:1",
    "image_size": "1K",
    "seed": 123,
    "output_key": "outputs/j_abc/00075.png",
}
DESIGN_EXAMPLE: dict[str, object] = {
    "schema": 1,
    "job_id": "j_abc",
    "chunk": 3,
    "model": "gemini-2.5-flash-image",
    "concurrency": 8,
    "items": [ITEM],
}


def test_documented_example_round_trips_when_parsed_and_dumped() -> None:
    parsed = ChunkInput.model_validate(DESIGN_EXAMPLE)
    assert parsed.to_payload() == DESIGN_EXAMPLE


def test_edit_part_is_accepted_when_given() -> None:
    item = {**ITEM, "edit": {"source_key": "outputs/j_a/00000.png", "history": ["make it red"]}}
    parsed = ChunkInput.model_validate({**DESIGN_EXAMPLE, "items": [item]})
    assert parsed.items[0].edit is not None
    assert parsed.items[0].edit.history == ["make it red"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("schema", 2),
        ("items", []),
        ("concurrency", 0),
        ("job_id", "../x"),
        ("unexpected", 1),
    ],
)
def test_input_is_refused_when_a_field_is_wrong(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        ChunkInput.model_validate({**DESIGN_EXAMPLE, field: value})


@pytest.mark.parametrize("key", ["/etc/passwd", "../up.png", "a\\b.png", "a\nb"])
def test_item_is_refused_when_a_key_is_unsafe(key: str) -> None:
    item = {**ITEM, "output_key": key}
    with pytest.raises(ValidationError):
        ChunkInput.model_validate({**DESIGN_EXAMPLE, "items": [item]})


def test_output_is_told_apart_by_type_when_parsed() -> None:
    progress = ChunkOutput.validate_python({"type": "progress", "done": 1, "total": 2, "results": []})
    result = ChunkOutput.validate_python(
        {
            "schema": 1,
            "type": "result",
            "ok": 1,
            "failed": 1,
            "results": [
                {"index": 0, "status": "ok", "key": "outputs/j/00000.png", "width": 8, "height": 8},
                {"index": 1, "status": "error", "code": "SAFETY", "message": "IMAGE_SAFETY", "retryable": False},
            ],
        }
    )
    assert isinstance(progress, ChunkProgress)
    assert isinstance(result, ChunkResult)
    assert isinstance(result.results[0], ItemOk)
    assert isinstance(result.results[1], ItemError)
    assert result.results[1].code is ErrorCode.SAFETY


def test_retryable_codes_are_exactly_the_transient_ones() -> None:
    retryable = {ErrorCode.RATE_LIMITED, ErrorCode.UPSTREAM, ErrorCode.NO_IMAGE, ErrorCode.STORAGE, ErrorCode.STOPPED}
    assert {c for c in ErrorCode if c.is_retryable} == retryable


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        ("BAD_INPUT: items.0.prompt empty", ErrorCode.BAD_INPUT, "items.0.prompt empty"),
        ("Traceback: boom", None, "Traceback: boom"),
        ("plain", None, "plain"),
    ],
)
def test_top_level_error_is_split_when_parsed(error: str, code: ErrorCode | None, message: str) -> None:
    assert parse_top_level_error(error) == (code, message)
