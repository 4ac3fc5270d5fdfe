"""What the local Gemini answers, each shaped as the real API's.

Its error bodies (bad key, quota, 5xx, malformed), safety blocks, text-only answers, and the drawn image with its
usage metadata.

`local.gemini.server` decides which answer a request gets (its faults and statistics); this module only builds it.
"""

import asyncio
import base64
import hashlib
from typing import Literal

from aiohttp import web

from local.gemini.drawing import draw_image, draw_size
from local.gemini.faults import BlockAs, MalformedKind, NoImageReason
from local.gemini.tokens import count_response, image_size
from local.gemini.wire import JsonObject, ParsedRequest, error_response, new_response_id
from worker.catalogue import ModelSpec

# The thinking tokens a Gemini-3 image answer reports; the real ones vary with the prompt, a few hundred is usual.
THOUGHT_TOKENS = 180


def key_error(request: web.Request, api_key: str | None) -> web.Response | None:
    """Return the answer to a request without an accepted API key, or None when its key is accepted.

    The key is read from `x-goog-api-key` or `?key=` (https://ai.google.dev/gemini-api/docs/api-key). An
    `Authorization: Bearer …` header is an OAuth 2 access token to Google, checked before and whatever the API key:
    this server issues none, so any Bearer answers 401 UNAUTHENTICATED as Google answers an API key sent there
    (the message as seen from the API, e.g. cnpack/cnwizards#215: a key in the URL and an Authorization header).
    """
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.casefold() == "bearer" and token.strip():
        return error_response(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
            "valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ],
        )
    key = request.headers.get("x-goog-api-key") or request.query.get("key")
    if not key:
        return error_response(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
        )
    if api_key is not None and key != api_key:
        return error_response(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ],
        )
    return None


def quota_exceeded(spec: ModelSpec, retry_delay_s: float) -> web.Response:
    """Return a 429 RESOURCE_EXHAUSTED answer with its quota details and retry delay."""
    return error_response(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details. For more information on "
        "this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
        [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_paid_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
                        "quotaDimensions": {"location": "global", "model": spec.name},
                        "quotaValue": "500",
                    }
                ],
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_delay_s:g}s"},
        ],
    )


def server_error(status: int) -> web.Response:
    """Return a 5xx answer with the status and message Gemini gives for it.

    The 500, 503 and 504 wordings are Google's as clients quote them (e.g. "504 DEADLINE_EXCEEDED. {'error':
    {'code': 504, 'message': 'Deadline expired before operation could complete.', 'status': 'DEADLINE_EXCEEDED'}}"
    in google-genai's `ServerError`); the 502 one is assumed.
    """
    if status == 503:
        return error_response(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    if status == 504:
        return error_response(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.")
    if status == 502:
        return error_response(502, "UNAVAILABLE", "Bad Gateway")  # assumed: no 502 of Gemini's was found quoted
    return error_response(
        500,
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    )


def malformed(kind: MalformedKind) -> web.Response:
    """Return a 200 answer that is invalid JSON (`json`) or JSON of the wrong shape (`structure`)."""
    if kind == "json":
        return web.Response(status=200, text='{"candidates": [{"content": {"parts": [', content_type="application/json")
    return web.json_response({"candidates": "not-a-list", "usageMetadata": ["not", "an", "object"]})


def usage(spec: ModelSpec, parsed: ParsedRequest, *, images_out: int, text_tokens: int) -> JsonObject:
    """Return the usageMetadata of an answer with `images_out` images and `text_tokens` of text.

    Shaped as Google's (https://ai.google.dev/api/generate-content#UsageMetadata): `promptTokenCount` is what
    `countTokens` says of the same prompt (`local.gemini.tokens`: text by length, each image by its size), by
    modality in `promptTokensDetails`; `candidatesTokenCount` is the answer's image (the catalogue's output tokens
    per image size, https://ai.google.dev/gemini-api/docs/pricing) and text, by modality in
    `candidatesTokensDetails`; a thinking model's thoughts are counted apart, in `thoughtsTokenCount`, and all of it
    in `totalTokenCount`. A blocked prompt still reports its prompt: Gemini bills the input.
    """
    readable = _readable(parsed.images)
    counted = count_response(spec, parsed.texts or [parsed.prompt], readable)
    prompt_details: list[JsonObject] = list(counted["promptTokensDetails"])
    prompt_tokens = int(counted["totalTokens"])
    unreadable = len(parsed.images) - len(readable)
    if unreadable:  # the schema let it through; Google counts what it receives, so count it at the model's rate
        prompt_tokens += spec.input_image_tokens * unreadable
    image_tokens = spec.output_tokens.get(parsed.image_size or "1K", 1290) * images_out
    thoughts = THOUGHT_TOKENS if spec.thinking and images_out else 0
    usage: JsonObject = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": image_tokens + text_tokens,
        "totalTokenCount": prompt_tokens + image_tokens + text_tokens + thoughts,
        "promptTokensDetails": prompt_details,
    }
    if image_tokens or text_tokens:
        usage["candidatesTokensDetails"] = (
            [{"modality": "IMAGE", "tokenCount": image_tokens}] if images_out else []
        ) + ([{"modality": "TEXT", "tokenCount": text_tokens}] if text_tokens else [])
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _readable(images: list[bytes]) -> list[bytes]:
    """Return the images PIL can size (every one a request validated by `local.gemini.schema` normally holds)."""
    readable = []
    for data in images:
        try:
            image_size(data)
        except ValueError:
            continue
        readable.append(data)
    return readable


def envelope(spec: ModelSpec, usage: JsonObject) -> JsonObject:
    """Return the fields every answer carries: usage, model version and a new response id."""
    return {"usageMetadata": usage, "modelVersion": spec.name, "responseId": new_response_id()}


def blocked_body(spec: ModelSpec, parsed: ParsedRequest, block_as: BlockAs) -> JsonObject:
    """Return a safety block: of the prompt, of the image, or (`auto`) one of them by a hash of the prompt."""
    body = envelope(spec, usage(spec, parsed, images_out=0, text_tokens=0))
    mode = block_as
    if mode == "auto":
        mode = "prompt" if hashlib.sha256(parsed.prompt.encode()).digest()[0] % 2 == 0 else "image"
    if mode == "prompt":
        body["promptFeedback"] = {"blockReason": "PROHIBITED_CONTENT"}
    else:
        body["candidates"] = [
            {
                "finishReason": "IMAGE_SAFETY",
                "finishMessage": "Unable to show the generated image. The generated image was filtered because "
                "it violated Google's Generative AI Prohibited Use policy.",
                "index": 0,
            }
        ]
    return body


def no_image_body(spec: ModelSpec, reason: NoImageReason) -> JsonObject:
    """Return a text-only answer that ends with `reason`."""
    text = "I'm unable to create that image." if reason == "NO_IMAGE" else "Here is an image of what you asked:"
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": reason, "index": 0}],
        "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 9, "totalTokenCount": 17},
        "modelVersion": spec.name,
        "responseId": new_response_id(),
    }


async def success_body(
    spec: ModelSpec, parsed: ParsedRequest, *, draw_px: int | None, mislabel: bool, thoughts: bool
) -> JsonObject:
    """Return an answer with the drawn image (JPEG labelled PNG when `mislabel`; a draft first with thoughts)."""
    size = draw_size(spec.pixel_size(parsed.aspect_ratio, parsed.image_size), draw_px)
    image_format: Literal["PNG", "JPEG"] = "JPEG" if mislabel or spec.output_mime == "image/jpeg" else "PNG"
    mime = "image/png" if mislabel else spec.output_mime
    with_thoughts = spec.thinking and (parsed.include_thoughts or thoughts)
    final = asyncio.to_thread(
        draw_image,
        prompt=parsed.prompt,
        seed=parsed.seed,
        references=parsed.images,
        size=size,
        image_format=image_format,
    )
    if with_thoughts:
        draft_bytes, image = await asyncio.gather(
            asyncio.to_thread(
                draw_image,
                prompt=parsed.prompt,
                seed=parsed.seed,
                references=parsed.images,
                size=size,
                image_format=image_format,
                variant="draft",
            ),
            final,
        )
    else:
        draft_bytes, image = None, await final
    response_id = new_response_id()
    signatures = (base64.b64encode(hashlib.sha256(f"{response_id}:{i}".encode()).digest()).decode() for i in range(9))
    parts: list[JsonObject] = []
    if draft_bytes is not None:
        parts.append({"text": "**Planning the composition**\n\nI'll lay out the scene first.", "thought": True})
        parts.append(
            {"inlineData": {"mimeType": mime, "data": base64.b64encode(draft_bytes).decode()}, "thought": True}
        )
    with_text = parsed.modalities is None or "TEXT" in parsed.modalities
    if with_text:
        text_part: JsonObject = {"text": "Here is the image you asked for."}
        if spec.thinking:
            text_part["thoughtSignature"] = next(signatures)
        parts.append(text_part)
    image_part: JsonObject = {"inlineData": {"mimeType": mime, "data": base64.b64encode(image).decode()}}
    if spec.thinking:
        image_part["thoughtSignature"] = next(signatures)
    parts.append(image_part)
    body: JsonObject = {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": usage(spec, parsed, images_out=1, text_tokens=8 if with_text else 0),
        "modelVersion": spec.name,
        "responseId": response_id,
    }
    return body
