"""The local Gemini is as strict as the real API: one test per rule, the valid form accepted, the invalid refused.

The rules and their sources are listed in `local.gemini.schema` (proto-JSON parsing), `local.gemini.wire`
(response modalities), `local.gemini.answers` (Bearer credentials) and `local.gemini.tokens` (countTokens).
"""

import asyncio
import base64
import io
import json
from typing import Any

import aiohttp
import pytest
from google import genai
from google.genai import errors, types
from PIL import Image

from local.gemini.server import LocalGemini
from tests.protocol.local.gemini.conftest import KEY
from tests.protocol.local.gemini.test_server import body, post
from worker.catalogue import MODELS, PREVIEW_ALIASES

BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


def violations(answer: dict[str, Any]) -> list[dict[str, str]]:
    """Return the BadRequest field violations of a Google error answer (and check the envelope)."""
    error = answer["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    (detail,) = error["details"]
    assert detail["@type"] == BAD_REQUEST
    assert error["message"] == "\n".join(v["description"] for v in detail["fieldViolations"])
    return list(detail["fieldViolations"])


async def refused(http: aiohttp.ClientSession, server: LocalGemini, payload: Any, **kw: Any) -> list[dict[str, str]]:
    status, answer = await post(http, server, payload, **kw)
    assert status == 400, answer
    return violations(answer)


async def accepted(http: aiohttp.ClientSession, server: LocalGemini, payload: Any, **kw: Any) -> None:
    status, answer = await post(http, server, payload, **kw)
    assert status == 200, answer


async def test_unknown_field_is_refused_with_its_path_when_nested(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    await accepted(http, local_gemini, body(imageConfig={"aspectRatio": "1:1"}))
    assert await refused(http, local_gemini, body(foo=1)) == [
        {
            "field": "generation_config",
            "description": "Invalid JSON payload received. Unknown name \"foo\" at 'generation_config': "
            "Cannot find field.",
        }
    ]
    payload = body(images=1)
    payload["contents"][0]["parts"][1]["inlineData"]["displayName"] = "x.png"
    (violation,) = await refused(http, local_gemini, payload)
    assert violation["field"] == "contents[0].parts[1].inline_data"
    assert 'Unknown name "displayName"' in violation["description"]


async def test_unknown_field_at_the_root_has_no_field_path_when_refused(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    assert await refused(http, local_gemini, {**body(), "temperature": 1}) == [
        {"description": 'Invalid JSON payload received. Unknown name "temperature": Cannot find field.'}
    ]


async def test_snake_and_camel_names_are_accepted_and_any_other_spelling_refused_when_sent(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    snake = {
        "contents": [{"role": "user", "parts": [{"text": "x"}]}],
        "generation_config": {"response_modalities": ["IMAGE"], "image_config": {"aspect_ratio": "1:1"}},
    }
    await accepted(http, local_gemini, snake)
    (violation,) = await refused(http, local_gemini, body(ImageConfig={"aspectRatio": "1:1"}))
    assert 'Unknown name "ImageConfig"' in violation["description"]


async def test_same_field_twice_in_both_spellings_is_refused_when_sent(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    (violation,) = await refused(http, local_gemini, body(top_k=2, topK=3))
    assert violation["field"] == "generation_config"
    assert "already been set" in violation["description"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [(2**31 - 1, True), ("42", True), (7.0, True), (-(2**31), True), (2**31, False), (1.5, False), ("abc", False)],
)
async def test_int32_field_takes_integers_in_range_when_sent(
    http: aiohttp.ClientSession, local_gemini: LocalGemini, value: object, ok: bool
) -> None:
    if ok:
        await accepted(http, local_gemini, body(seed=value))
        return
    (violation,) = await refused(http, local_gemini, body(seed=value))
    assert violation == {
        "field": "generation_config.seed",
        "description": f"Invalid value at 'generation_config.seed' (TYPE_INT32), {json.dumps(value)}",
    }


async def test_float_and_bool_fields_refuse_other_types_when_sent(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    await accepted(http, local_gemini, body(temperature="0.5", topP=1))
    (violation,) = await refused(http, local_gemini, body(temperature="hot"))
    assert violation["description"] == "Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\""
    await accepted(http, local_gemini, body(thinkingConfig={"includeThoughts": False}))
    (violation,) = await refused(http, local_gemini, body(thinkingConfig={"includeThoughts": "yes"}))
    assert violation["field"] == "generation_config.thinking_config.include_thoughts"
    assert "(TYPE_BOOL)" in violation["description"]


async def test_string_field_refuses_a_number_when_sent(http: aiohttp.ClientSession, local_gemini: LocalGemini) -> None:
    (violation,) = await refused(http, local_gemini, body(imageConfig={"aspectRatio": 1}))
    assert violation["description"] == "Invalid value at 'generation_config.image_config.aspect_ratio' (TYPE_STRING), 1"


async def test_bytes_field_refuses_what_is_not_base64_when_sent(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    payload = body()
    payload["contents"][0]["parts"].append({"inlineData": {"mimeType": "image/png", "data": "not base64!"}})
    (violation,) = await refused(http, local_gemini, payload)
    assert violation["field"] == "contents[0].parts[1].inline_data.data"
    assert "(TYPE_BYTES)" in violation["description"]


async def test_list_for_a_single_field_is_refused_when_sent(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    assert await refused(http, local_gemini, body(seed=[1])) == [
        {
            "field": "generation_config",
            "description": "Invalid JSON payload received. Unknown name \"seed\" at 'generation_config': "
            "Proto field is not repeating, cannot start list.",
        }
    ]


async def test_object_for_a_scalar_or_a_list_is_refused_when_sent(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    (violation,) = await refused(http, local_gemini, body(seed={"value": 1}))
    assert violation["description"] == (
        "Invalid value at 'generation_config' (seed), Starting an object on a scalar field"
    )
    (violation,) = await refused(http, local_gemini, {"contents": {"parts": [{"text": "x"}]}})
    assert violation["description"].startswith(
        "Invalid value at 'contents' (type.googleapis.com/google.ai.generativelanguage.v1beta.Content), "
    )


async def test_bad_enum_value_is_refused_with_its_type_when_sent(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    await accepted(http, local_gemini, body(responseModalities=["TEXT", "IMAGE"]))
    (violation,) = await refused(http, local_gemini, body(responseModalities=["IMAGE", "PICTURE"]), version="v1")
    assert violation == {
        "field": "generation_config.response_modalities[1]",
        "description": "Invalid value at 'generation_config.response_modalities[1]' "
        '(type.googleapis.com/google.ai.generativelanguage.v1.GenerationConfig.Modality), "PICTURE"',
    }


async def test_two_members_of_a_oneof_are_refused_when_in_one_part(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    payload = body(images=1)
    payload["contents"][0]["parts"][1]["text"] = "and a caption"
    (violation,) = await refused(http, local_gemini, payload)
    assert violation["field"] == "contents[0].parts[1]"
    assert "Oneof field 'data' is already set" in violation["description"]


async def test_every_violation_is_reported_when_several(http: aiohttp.ClientSession, local_gemini: LocalGemini) -> None:
    found = await refused(http, local_gemini, {**body(seed="x", bar=1), "foo": 2})
    assert sorted(v.get("field", "") for v in found) == ["", "generation_config", "generation_config.seed"]


@pytest.mark.parametrize(
    ("modalities", "ok"),
    [(["IMAGE"], True), (["TEXT", "IMAGE"], True), (["AUDIO"], False), (["TEXT"], False), (["IMAGE", "AUDIO"], False)],
)
async def test_image_model_takes_only_image_modalities_when_asked(
    http: aiohttp.ClientSession, local_gemini: LocalGemini, modalities: list[str], ok: bool
) -> None:
    status, answer = await post(http, local_gemini, body(responseModalities=modalities))
    if ok:
        assert status == 200
        return
    assert (status, answer["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert answer["error"]["message"].startswith(
        f"The requested combination of response modalities ({', '.join(modalities)}) is not supported by the "
        "model. models/gemini-2.5-flash-image accepts the following combination of response modalities:\n* IMAGE\n"
    )


async def test_bearer_token_is_refused_as_oauth_when_an_api_key_is_sent_there(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    url = local_gemini.url + f"/v1beta/models/gemini-2.5-flash-image:generateContent?key={KEY}"
    async with http.post(url, json=body(), headers={"Authorization": f"Bearer {KEY}"}) as resp:
        assert resp.status == 401
        error = (await resp.json())["error"]
    assert error["status"] == "UNAUTHENTICATED"
    assert error["message"].startswith(
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
        "valid authentication credential."
    )
    assert error["details"][0]["reason"] == "ACCESS_TOKEN_TYPE_UNSUPPORTED"
    async with http.post(url, json=body()) as resp:
        assert resp.status == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/v1beta/files"),
        ("GET", "/v1beta/models/gemini-2.5-flash-image:generateContent"),
        ("POST", "/v1beta/models/gemini-2.5-flash-image:streamGenerateContent"),
        ("POST", "/v9/models/gemini-2.5-flash-image:generateContent"),
        ("DELETE", "/v1beta/models/gemini-2.5-flash-image"),
    ],
)
async def test_unknown_path_or_method_answers_google_json_when_called(
    http: aiohttp.ClientSession, local_gemini: LocalGemini, method: str, path: str
) -> None:
    async with http.request(method, local_gemini.url + path, headers={"x-goog-api-key": KEY}, json={}) as resp:
        assert resp.status == 404
        assert resp.content_type == "application/json"
        error = (await resp.json())["error"]
    assert (error["code"], error["status"]) == (404, "NOT_FOUND")


async def test_models_get_answers_404_in_google_json_when_the_model_is_unknown(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    headers = {"x-goog-api-key": KEY}
    async with http.get(local_gemini.url + "/v1beta/models/gemini-2.5-flash-image", headers=headers) as resp:
        assert (await resp.json())["name"] == "models/gemini-2.5-flash-image"
    async with http.get(local_gemini.url + "/v1beta/models/no-such-model", headers=headers) as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["status"] == "NOT_FOUND"


async def test_models_list_pages_through_every_model_when_page_size_is_small(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    names: list[str] = []
    token = ""
    for _ in range(10):
        params = {"pageSize": "2"} | ({"pageToken": token} if token else {})
        async with http.get(
            local_gemini.url + "/v1beta/models", params=params, headers={"x-goog-api-key": KEY}
        ) as resp:
            assert resp.status == 200
            page = await resp.json()
        assert len(page["models"]) <= 2
        names += [m["name"] for m in page["models"]]
        token = page.get("nextPageToken", "")
        if not token:
            break
    assert sorted(names) == sorted(f"models/{n}" for n in [*MODELS, *PREVIEW_ALIASES])


@pytest.mark.parametrize("query", ["pageSize=-1", "pageSize=two", "pageToken=bogus"])
async def test_models_list_refuses_a_bad_page_when_asked(
    http: aiohttp.ClientSession, local_gemini: LocalGemini, query: str
) -> None:
    async with http.get(local_gemini.url + f"/v1beta/models?{query}", headers={"x-goog-api-key": KEY}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["status"] == "INVALID_ARGUMENT"


def image(width: int, height: int) -> dict[str, Any]:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (1, 2, 3)).save(out, format="PNG")
    return {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(out.getvalue()).decode()}}


async def count(http: aiohttp.ClientSession, server: LocalGemini, payload: Any, model: str) -> tuple[int, Any]:
    url = server.url + f"/v1beta/models/{model}:countTokens"
    async with http.post(url, json=payload, headers={"x-goog-api-key": KEY}) as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize(
    ("size", "model", "tokens"),
    [
        ((384, 384), "gemini-2.5-flash-image", 258),
        ((385, 100), "gemini-2.5-flash-image", 258),
        ((768, 768), "gemini-2.5-flash-image", 258),
        ((769, 768), "gemini-2.5-flash-image", 516),
        ((1536, 1537), "gemini-2.5-flash-image", 6 * 258),
        ((100, 100), "gemini-3.1-flash-image-preview", 1120),
    ],
)
async def test_count_tokens_counts_an_image_as_documented_when_sent(
    http: aiohttp.ClientSession, local_gemini: LocalGemini, size: tuple[int, int], model: str, tokens: int
) -> None:
    payload = {"contents": [{"parts": [{"text": "abcdefghi"}, image(*size)]}]}
    status, answer = await count(http, local_gemini, payload, model)
    assert status == 200
    assert answer == {
        "totalTokens": 3 + tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 3}, {"modality": "IMAGE", "tokenCount": tokens}],
    }


async def test_count_tokens_is_validated_like_generate_content_when_sent(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    contents = [{"parts": [{"text": "x"}]}]
    status, answer = await count(http, local_gemini, {"contents": contents, "foo": 1}, "gemini-2.5-flash-image")
    assert status == 400
    assert violations(answer)[0]["description"].endswith('Unknown name "foo": Cannot find field.')
    status, answer = await count(
        http, local_gemini, {"generateContentRequest": {"contents": contents}}, "gemini-2.5-flash-image"
    )
    assert (status, answer["totalTokens"]) == (200, 1)
    both = {"contents": contents, "generateContentRequest": {"contents": contents}}
    status, answer = await count(http, local_gemini, both, "gemini-2.5-flash-image")
    assert (status, answer["error"]["status"]) == (400, "INVALID_ARGUMENT")
    status, answer = await count(http, local_gemini, {"contents": contents}, "gemini-1.0-pro")
    assert (status, answer["error"]["status"]) == (404, "NOT_FOUND")


async def test_google_genai_lists_counts_and_is_refused_like_gemini_when_pointed_at_it(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    options = types.HttpOptions(
        base_url=local_gemini.url,
        api_version="v1beta",
        retry_options=types.HttpRetryOptions(attempts=1),
        aiohttp_client=http,  # as the worker does: the SDK's own session subclasses ClientSession (a warning)
    )
    client = await asyncio.to_thread(genai.Client, api_key=KEY, http_options=options)  # reads files: off the loop
    pager = await client.aio.models.list(config={"page_size": 2})
    names = [m.name async for m in pager]
    assert "models/gemini-2.5-flash-image" in names
    counted = await client.aio.models.count_tokens(model="gemini-2.5-flash-image", contents="abcdefgh")
    assert counted.total_tokens == 2
    with pytest.raises(errors.ClientError) as refused_audio:
        await client.aio.models.generate_content(
            model="gemini-2.5-flash-image",
            contents="x",
            config=types.GenerateContentConfig(response_modalities=["AUDIO"]),
        )
    assert refused_audio.value.code == 400
    assert "response modalities" in str(refused_audio.value.message)


def body_of_size(size: int) -> bytes:
    """Return a valid generateContent body of exactly `size` bytes (its prompt padded)."""
    empty = json.dumps(body(""), separators=(",", ":")).encode()
    payload = json.dumps(body("k" * (size - len(empty))), separators=(",", ":")).encode()
    assert len(payload) == size
    return payload


async def test_request_body_is_refused_one_byte_past_twenty_mib(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    url = local_gemini.url + "/v1beta/models/gemini-2.5-flash-image:generateContent"
    headers = {"x-goog-api-key": KEY, "Content-Type": "application/json"}
    async with http.post(url, data=io.BytesIO(body_of_size(20 * 1024 * 1024)), headers=headers) as resp:
        assert resp.status == 200, await resp.text()
    async with http.post(url, data=io.BytesIO(body_of_size(20 * 1024 * 1024 + 1)), headers=headers) as resp:
        assert resp.status == 400
        assert await resp.json() == {
            "error": {
                "code": 400,
                "message": "Request payload size exceeds the limit: 20971520 bytes.",
                "status": "INVALID_ARGUMENT",
            }
        }


def with_tools(*tools: dict[str, Any]) -> dict[str, Any]:
    return body() | {"tools": list(tools)}


PRO_IMAGE = "gemini-3-pro-image-preview"


async def test_a_tool_is_read_as_the_tool_message_and_an_unknown_member_or_field_is_refused(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    search = {"googleSearch": {"timeRangeFilter": {"startTime": "2025-01-01T00:00:00Z"}}}
    await accepted(http, local_gemini, with_tools(search), model=PRO_IMAGE)
    assert await refused(http, local_gemini, with_tools({"webSearch": {}}), model=PRO_IMAGE) == [
        {
            "field": "tools[0]",
            "description": "Invalid JSON payload received. Unknown name \"webSearch\" at 'tools[0]': "
            "Cannot find field.",
        }
    ]
    assert await refused(http, local_gemini, with_tools({"googleSearch": {"maxResults": 3}}), model=PRO_IMAGE) == [
        {
            "field": "tools[0].google_search",
            "description": "Invalid JSON payload received. Unknown name \"maxResults\" at 'tools[0].google_search': "
            "Cannot find field.",
        }
    ]
    wrong = {"googleSearch": {"timeRangeFilter": {"startTime": 5}}}
    assert await refused(http, local_gemini, with_tools(wrong), model=PRO_IMAGE) == [
        {
            "field": "tools[0].google_search.time_range_filter.start_time",
            "description": "Invalid value at 'tools[0].google_search.time_range_filter.start_time' (TYPE_STRING), 5",
        }
    ]


async def test_tool_config_is_read_as_its_message(http: aiohttp.ClientSession, local_gemini: LocalGemini) -> None:
    config = {"functionCallingConfig": {"mode": "NONE"}}
    await accepted(http, local_gemini, body() | {"toolConfig": config})
    assert await refused(http, local_gemini, body() | {"toolConfig": {"functionCallingConfig": {"mode": "SOME"}}}) == [
        {
            "field": "tool_config.function_calling_config.mode",
            "description": "Invalid value at 'tool_config.function_calling_config.mode' "
            '(type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), "SOME"',
        }
    ]


async def test_search_grounding_is_taken_by_gemini_3_image_models_only(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    await accepted(http, local_gemini, with_tools({"googleSearch": {}}), model=PRO_IMAGE)
    status, answer = await post(http, local_gemini, with_tools({"googleSearch": {}}))
    assert (status, answer) == (
        400,
        {
            "error": {
                "code": 400,
                "message": "Search as tool is not enabled for models/gemini-2.5-flash-image",
                "status": "INVALID_ARGUMENT",
            }
        },
    )


@pytest.mark.parametrize(
    ("tool", "refusal"),
    [
        ({"functionDeclarations": [{"name": "draw", "parameters": {"type": "OBJECT"}}]}, "Function calling"),
        ({"codeExecution": {}}, "Code execution"),
        ({"urlContext": {}}, "Url context as tool"),
        ({"googleSearchRetrieval": {}}, "Search as tool"),
    ],
)
async def test_tools_the_image_models_do_not_take_are_refused_even_by_gemini_3(
    http: aiohttp.ClientSession, local_gemini: LocalGemini, tool: dict[str, Any], refusal: str
) -> None:
    await accepted(http, local_gemini, with_tools({"functionDeclarations": []}), model=PRO_IMAGE)  # [] is "not set"
    status, answer = await post(http, local_gemini, with_tools(tool), model=PRO_IMAGE)
    assert status == 400
    assert answer["error"]["status"] == "INVALID_ARGUMENT"
    assert answer["error"]["message"].startswith(f"{refusal} is not enabled for models/gemini-3-pro-image")


async def test_count_tokens_reads_the_tools_of_its_generate_content_request(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    inner = with_tools({"googleSearch": {}}) | {"model": "models/gemini-2.5-flash-image"}
    status, answer = await count(http, local_gemini, {"generateContentRequest": inner}, "gemini-2.5-flash-image")
    assert status == 400
    assert answer["error"]["message"] == "Search as tool is not enabled for models/gemini-2.5-flash-image"
    inner["tools"] = [{"googleSearch": {"x": 1}}]
    status, answer = await count(http, local_gemini, {"generateContentRequest": inner}, "gemini-2.5-flash-image")
    assert status == 400
    assert (
        answer["error"]["details"][0]["fieldViolations"][0]["field"]
        == "generate_content_request.tools[0].google_search"
    )
