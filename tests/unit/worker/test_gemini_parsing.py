"""GeminiImageGenerator's pure parts: answers parsed from Gemini's JSON, errors classified, backoff, requests built."""

import base64
import io
import json
import random
from typing import Any

import aiohttp
import pydantic
import pytest
from google.genai import errors, types
from PIL import Image

from worker.contract import ErrorCode
from worker.errors import GenerationError
from worker.gemini import (
    GeminiImageGenerator,
    build_config,
    build_contents,
    classify,
    edit_instruction,
    parse_response,
    retry_delay_of,
)
from worker.generation import GenerationRequest, InputImage


def encoded(fmt: str = "PNG") -> str:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(out, format=fmt)
    return base64.b64encode(out.getvalue()).decode()


def answer(parts: list[dict[str, Any]] | None, finish: str = "STOP", **extra: object) -> types.GenerateContentResponse:
    candidate: dict[str, object] = {"finishReason": finish, "index": 0}
    if parts is not None:
        candidate["content"] = {"role": "model", "parts": parts}
    return types.GenerateContentResponse.model_validate({"candidates": [candidate], **extra})


def parse_error(response: types.GenerateContentResponse) -> GenerationError:
    with pytest.raises(GenerationError) as info:
        parse_response(response)
    return info.value


@pytest.mark.parametrize(
    "reason",
    [
        "IMAGE_SAFETY",
        "PROHIBITED_CONTENT",
        "SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_RECITATION",
    ],
)
def test_parse_raises_safety_with_the_reason_when_finish_reason_blocks(reason: str) -> None:
    error = parse_error(answer(None, reason))
    assert error.code is ErrorCode.SAFETY
    assert reason in error.message


def test_parse_raises_safety_when_prompt_feedback_blocks() -> None:
    response = types.GenerateContentResponse.model_validate(
        {"promptFeedback": {"blockReason": "OTHER", "blockReasonMessage": "nope"}}
    )
    error = parse_error(response)
    assert error.code is ErrorCode.SAFETY
    assert "OTHER" in error.message
    assert "nope" in error.message


@pytest.mark.parametrize("finish", ["NO_IMAGE", "STOP", "IMAGE_OTHER", "MAX_TOKENS"])
def test_parse_raises_no_image_with_the_text_when_only_text_came(finish: str) -> None:
    error = parse_error(answer([{"text": "I can't draw that."}], finish))
    assert error.code is ErrorCode.NO_IMAGE
    assert finish in error.message
    assert "I can't draw that." in error.message


def test_parse_raises_no_image_when_there_is_no_candidate() -> None:
    assert parse_error(types.GenerateContentResponse.model_validate({})).code is ErrorCode.NO_IMAGE


def test_parse_ignores_thought_images_when_only_drafts_came() -> None:
    draft = {"inlineData": {"mimeType": "image/png", "data": encoded()}, "thought": True}
    assert parse_error(answer([draft])).code is ErrorCode.NO_IMAGE


def test_parse_takes_the_last_non_thought_image_and_sniffs_it_when_several_came() -> None:
    first = {"inlineData": {"mimeType": "image/png", "data": encoded()}}
    last = {"inlineData": {"mimeType": "image/png", "data": encoded("JPEG")}, "thoughtSignature": "c2ln"}
    thought = {"inlineData": {"mimeType": "image/png", "data": encoded("WEBP")}, "thought": True}
    image = parse_response(answer([{"text": "plan", "thought": True}, first, {"text": " Done. "}, last, thought]))
    assert image.mime_type == "image/jpeg"
    assert image.note == "Done."


def test_parse_raises_upstream_when_image_bytes_are_not_an_image() -> None:
    part = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(b"garbage").decode()}}
    assert parse_error(answer([part])).code is ErrorCode.UPSTREAM


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (
            errors.ClientError(429, {"error": {"code": 429, "message": "q", "status": "RESOURCE_EXHAUSTED"}}),
            "RATE_LIMITED",
        ),
        (errors.ServerError(500, {"error": {"code": 500, "message": "x", "status": "INTERNAL"}}), "UPSTREAM"),
        (errors.ServerError(503, {"error": {"code": 503, "message": "x", "status": "UNAVAILABLE"}}), "UPSTREAM"),
        (errors.ClientError(408, {"error": {"code": 408, "message": "x", "status": "DEADLINE"}}), "UPSTREAM"),
        (errors.ClientError(400, {"error": {"code": 400, "message": "x", "status": "INVALID_ARGUMENT"}}), "BAD_INPUT"),
        # A refused key or an unknown model is the deployment's fault, not the request's (Gemini's troubleshooting).
        (errors.ClientError(401, {"error": {"code": 401, "message": "x", "status": "UNAUTHENTICATED"}}), "CONFIG"),
        (errors.ClientError(403, {"error": {"code": 403, "message": "x", "status": "PERMISSION_DENIED"}}), "CONFIG"),
        (errors.ClientError(404, {"error": {"code": 404, "message": "x", "status": "NOT_FOUND"}}), "CONFIG"),
        (
            errors.ClientError(
                400,
                {
                    "error": {
                        "code": 400,
                        "message": "API key not valid. Please pass a valid API key.",
                        "status": "INVALID_ARGUMENT",
                        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
                    }
                },
            ),
            "CONFIG",
        ),
        (errors.ClientError(400, {"error": {"code": 400, "message": "x", "status": "FAILED_PRECONDITION"}}), "CONFIG"),
        (TimeoutError(), "UPSTREAM"),
        (aiohttp.ServerDisconnectedError(), "UPSTREAM"),
        (json.JSONDecodeError("x", "doc", 0), "UPSTREAM"),
    ],
)
def test_classify_maps_to_the_contract_code_when_the_call_fails(exc: BaseException, code: str) -> None:
    assert classify(exc).code is ErrorCode(code)


def test_classify_maps_a_validation_error_to_upstream_when_the_answer_has_the_wrong_shape() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        types.GenerateContentResponse.model_validate({"candidates": "nope"})
    assert classify(info.value).code is ErrorCode.UPSTREAM


def test_retry_delay_is_read_when_retry_info_is_present() -> None:
    details = [
        {"@type": "type.googleapis.com/google.rpc.Help", "links": []},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "28.5s"},
    ]
    error = errors.ClientError(429, {"error": {"code": 429, "message": "q", "status": "R", "details": details}})
    assert retry_delay_of(error) == 28.5
    assert classify(error).retry_after_s == 28.5
    assert retry_delay_of(errors.ClientError(429, {"error": {"code": 429, "message": "q"}})) is None


def test_backoff_doubles_with_jitter_and_respects_server_delay_when_computed() -> None:
    generator = GeminiImageGenerator(api_key="k", backoff_base_s=1.0, backoff_cap_s=8.0, rng=random.Random(3))
    for attempt in range(1, 7):
        nominal = min(8.0, 2.0 ** (attempt - 1))
        assert 0.5 * nominal <= generator.backoff_s(attempt) <= 1.5 * nominal
    assert generator.backoff_s(1, 20.0) == 20.0


def png_input() -> InputImage:
    return InputImage(data=base64.b64decode(encoded()), mime_type="image/png")


def test_build_contents_puts_prompt_then_references_when_generating() -> None:
    request = GenerationRequest(model="m", prompt="a cat", references=(png_input(), png_input()))
    (content,) = build_contents(request)
    assert content.role == "user"
    assert content.parts is not None
    assert content.parts[0].text == "a cat"
    assert [p.inline_data is not None for p in content.parts] == [False, True, True]


def test_build_contents_puts_source_first_and_one_instruction_last_when_editing() -> None:
    request = GenerationRequest(
        model="m", prompt="make it blue", edit_source=png_input(), references=(png_input(),), history=("a car",)
    )
    (content,) = build_contents(request)
    assert content.parts is not None
    assert [p.inline_data is not None for p in content.parts] == [True, True, False]
    assert content.parts[-1].text == edit_instruction(("a car",), "make it blue", references=1)
    assert "1. a car" in content.parts[-1].text


def test_build_config_sends_size_only_when_the_model_takes_it() -> None:
    flash = build_config(
        GenerationRequest(model="gemini-2.5-flash-image", prompt="p", image_size="1K"), with_text=False
    )
    pro = build_config(
        GenerationRequest(model="gemini-3-pro-image-preview", prompt="p", image_size="2K", aspect_ratio="4:3", seed=9),
        with_text=True,
    )
    assert flash.image_config is not None
    assert flash.image_config.image_size is None
    assert flash.response_modalities == ["IMAGE"]
    assert pro.image_config is not None
    assert (pro.image_config.image_size, pro.image_config.aspect_ratio, pro.seed) == ("2K", "4:3", 9)
    assert pro.response_modalities == ["TEXT", "IMAGE"]
