"""Relax mode's pure parts: a batch line's request is the online call's, a result line is judged as an answer is."""

import base64
import io
import re
from typing import Any

import pytest
from google import genai
from google.genai import _common, models, types
from PIL import Image

from worker.contract import ErrorCode
from worker.errors import GenerationError
from worker.gemini import build_config, build_contents, classify_status, parse_response_json, request_json
from worker.generation import GenerationRequest, InputImage
from worker.relax import _LineSplitter


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(out, format="PNG")
    return out.getvalue()


def camel(value: Any) -> Any:
    """Name every key in lowerCamelCase; proto3's JSON parsers take either form.

    https://protobuf.dev/programming-guides/proto3/#json: "Parsers accept both the lowerCamelCase name (or the one
    specified by the json_name option) and the original proto field name."
    """
    if isinstance(value, dict):
        return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value


def online_body(request: GenerationRequest) -> dict[str, Any]:
    """Return the generateContent body google-genai sends for `request` (its own converter, as `generate` calls it)."""
    client = genai.Client(api_key="unused", http_options=types.HttpOptions(api_version="v1beta"))
    params = types._GenerateContentParameters(
        model=request.model, contents=build_contents(request), config=build_config(request, with_text=False)
    )
    body = models._GenerateContentParameters_to_mldev(client._api_client, params)
    body.pop("_url", None)
    return dict(_common.encode_unserializable_types(_common.convert_to_dict(body)))


REFERENCE = InputImage(data=png_bytes(), mime_type="image/png")


@pytest.mark.parametrize(
    "request_",
    [
        GenerationRequest(model="gemini-2.5-flash-image", prompt="a lighthouse"),
        GenerationRequest(
            model="gemini-3-pro-image-preview",
            prompt="a lighthouse at dusk",
            references=(REFERENCE, REFERENCE),
            aspect_ratio="16:9",
            image_size="2K",
            seed=42,
        ),
        GenerationRequest(
            model="gemini-2.5-flash-image",
            prompt="make it blue",
            edit_source=REFERENCE,
            references=(
                InputImage(data=b"", mime_type="image/png", file_uri="https://x/v1beta/files/r", file_bytes=9),
            ),
            history=("a red car",),
            seed=7,
        ),
    ],
)
def test_a_batch_line_holds_the_request_the_online_call_sends(request_: GenerationRequest) -> None:
    assert request_json(request_) == camel(online_body(request_))


def test_a_shared_reference_is_named_by_uri_and_weighs_as_if_inline() -> None:
    shared = InputImage(data=b"", mime_type="image/png", file_uri="https://x/v1beta/files/r", file_bytes=123)
    line = request_json(GenerationRequest(model="gemini-2.5-flash-image", prompt="p", references=(shared,)))
    assert line["contents"][0]["parts"][1] == {
        "fileData": {"fileUri": "https://x/v1beta/files/r", "mimeType": "image/png"}
    }
    assert shared.inline_bytes == 123 and REFERENCE.inline_bytes == len(REFERENCE.data)


def test_a_result_response_is_read_as_an_online_answer() -> None:
    data = png_bytes()
    response = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {
                            "inlineData": {"mimeType": "image/png", "data": base64.b64encode(b"draft").decode()},
                            "thought": True,
                        },
                        {"text": "done"},
                        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(data).decode()}},
                    ],
                },
                "finishReason": "STOP",
                "aFieldGoogleAddsLater": 1,
            }
        ],
        "usageMetadata": {"promptTokenCount": 3},
    }
    image = parse_response_json(response)
    assert (image.data, image.mime_type, image.note) == (data, "image/png", "done")


@pytest.mark.parametrize(
    ("response", "code"),
    [
        ({"promptFeedback": {"blockReason": "SAFETY"}}, ErrorCode.SAFETY),
        ({"candidates": [{"finishReason": "IMAGE_SAFETY"}]}, ErrorCode.SAFETY),
        ({"candidates": [{"content": {"parts": [{"text": "no"}]}, "finishReason": "STOP"}]}, ErrorCode.NO_IMAGE),
        ({"candidates": "not a list"}, ErrorCode.UPSTREAM),
        ("not an object", ErrorCode.UPSTREAM),
    ],
)
def test_a_result_response_without_an_image_is_classified_as_online(response: object, code: ErrorCode) -> None:
    with pytest.raises(GenerationError) as raised:
        parse_response_json(response)
    assert raised.value.code is code


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ({"code": 8, "message": "quota"}, ErrorCode.RATE_LIMITED),
        ({"code": 429, "status": "RESOURCE_EXHAUSTED"}, ErrorCode.RATE_LIMITED),
        ({"code": 3, "message": "bad aspect ratio"}, ErrorCode.BAD_INPUT),
        ({"code": 13}, ErrorCode.UPSTREAM),
        ({"code": 14, "status": "UNAVAILABLE"}, ErrorCode.UPSTREAM),
        ({"code": 4}, ErrorCode.UPSTREAM),
        ({"code": 5, "message": "File files/r not found"}, ErrorCode.UPSTREAM),  # an expired reference, not the key
        ({"code": 7}, ErrorCode.UPSTREAM),
        ({"code": 9, "status": "FAILED_PRECONDITION"}, ErrorCode.CONFIG),
        ({}, ErrorCode.UPSTREAM),
        (None, ErrorCode.UPSTREAM),
    ],
)
def test_a_result_error_maps_to_the_code_an_online_error_gets(status: object, code: ErrorCode) -> None:
    assert classify_status(status).code is code


def test_lines_are_cut_across_chunks_and_an_overlong_one_is_dropped_with_its_key() -> None:
    splitter = _LineSplitter(max_bytes=20, buffer=bytearray())
    assert splitter.feed(b'{"a":1}\n{"b"') == ([b'{"a":1}'], [])
    assert splitter.feed(b':2}\n\n{"key": "7", "x": "') == ([b'{"b":2}'], [])
    assert splitter.feed(b"0123456789") == ([], [])  # over 20 bytes: dropped, its key kept
    assert splitter.feed(b'still"}\n{"c":3}') == ([], ["7"])
    assert splitter.finish() == ([b'{"c":3}'], [])
    assert splitter.finish() == ([], [])
