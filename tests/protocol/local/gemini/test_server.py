"""The local Gemini server over raw HTTP: auth, validation, error JSON and answer shapes; admin and stats routes."""

import asyncio
import base64
import hashlib
import io
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from local.gemini.server import LocalGemini
from tests.protocol.local.gemini.conftest import KEY

ROOT = Path(__file__).resolve().parents[4]
MODEL_URL = "/v1beta/models/{model}:generateContent"


def png(colour: tuple[int, int, int] = (10, 200, 10)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(out, format="PNG")
    return out.getvalue()


def body(prompt: str = "a red kite", *, images: int = 0, snake: bool = False, **config: Any) -> dict[str, Any]:
    data, mime = ("inline_data", "mime_type") if snake else ("inlineData", "mimeType")
    parts: list[dict[str, Any]] = [{"text": prompt}]
    parts += [{data: {mime: "image/png", "data": base64.b64encode(png()).decode()}} for _ in range(images)]
    return {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}


async def post(
    http: aiohttp.ClientSession,
    server: LocalGemini,
    payload: dict[str, Any],
    *,
    model: str = "gemini-2.5-flash-image",
    key: str | None = KEY,
    version: str = "v1beta",
) -> tuple[int, Any]:
    headers = {"x-goog-api-key": key} if key is not None else {}
    url = server.url + f"/{version}/models/{model}:generateContent"
    async with http.post(url, json=payload, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def stats(http: aiohttp.ClientSession, server: LocalGemini) -> dict[str, int]:
    async with http.get(server.url + "/stats") as resp:
        return dict(await resp.json())


async def test_answer_has_gemini_shape_when_request_is_valid(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    status, answer = await post(http, local_gemini, body(responseModalities=["TEXT", "IMAGE"]))
    assert status == 200
    candidate = answer["candidates"][0]
    assert candidate["finishReason"] == "STOP"
    assert candidate["content"]["role"] == "model"
    text, image = candidate["content"]["parts"]
    assert text["text"]
    assert image["inlineData"]["mimeType"] == "image/png"
    assert Image.open(io.BytesIO(base64.b64decode(image["inlineData"]["data"]))).size == (1024, 1024)
    assert answer["usageMetadata"]["candidatesTokensDetails"][0] == {"modality": "IMAGE", "tokenCount": 1290}
    assert answer["modelVersion"] == "gemini-2.5-flash-image"
    assert answer["responseId"]


async def test_answer_omits_text_when_only_image_asked(http: aiohttp.ClientSession, local_gemini: LocalGemini) -> None:
    _, answer = await post(http, local_gemini, body(responseModalities=["IMAGE"]))
    assert [list(p) for p in answer["candidates"][0]["content"]["parts"]] == [["inlineData"]]


async def test_snake_case_and_v1_are_accepted_when_sent(http: aiohttp.ClientSession, local_gemini: LocalGemini) -> None:
    status, _ = await post(http, local_gemini, body(images=2, snake=True), version="v1")
    assert status == 200
    assert local_gemini.received[-1].images == 2
    assert local_gemini.received[-1].api_version == "v1"


async def test_key_is_accepted_when_given_as_query(http: aiohttp.ClientSession, local_gemini: LocalGemini) -> None:
    url = local_gemini.url + MODEL_URL.format(model="gemini-2.5-flash-image") + f"?key={KEY}"
    async with http.post(url, json=body()) as resp:
        assert resp.status == 200


async def test_missing_key_is_403_when_no_key_sent(http: aiohttp.ClientSession, local_gemini: LocalGemini) -> None:
    status, answer = await post(http, local_gemini, body(), key=None)
    assert status == 403
    assert answer["error"]["status"] == "PERMISSION_DENIED"


async def test_wrong_key_is_400_api_key_invalid_when_key_differs(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    status, answer = await post(http, local_gemini, body(), key="nope")
    assert status == 400
    assert answer["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert (await stats(http, local_gemini))["unauthorized"] == 1


async def test_any_key_is_accepted_when_no_key_configured(http: aiohttp.ClientSession) -> None:
    async with LocalGemini(port=0) as server:
        assert (await post(http, server, body(), key="whatever"))[0] == 200


async def test_request_is_refused_like_gemini_when_options_are_invalid(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    cases = [
        (body(imageConfig={"aspectRatio": "7:5"}), "gemini-2.5-flash-image", "aspect ratio"),
        (body(imageConfig={"imageSize": "1K"}), "gemini-2.5-flash-image", "imageSize is not supported"),
        (body(imageConfig={"imageSize": "512"}), "gemini-3-pro-image-preview", "Unsupported image size"),
        (body(images=4), "gemini-2.5-flash-image", "Too many images"),
        (body(images=15), "gemini-3-pro-image-preview", "Too many images"),
        (body(candidateCount=2), "gemini-2.5-flash-image", "Multiple candidates"),
        ({"contents": []}, "gemini-2.5-flash-image", "contents is not specified"),
    ]
    for payload, model, message in cases:
        status, answer = await post(http, local_gemini, payload, model=model)
        assert (status, answer["error"]["status"]) == (400, "INVALID_ARGUMENT"), message
        assert message in answer["error"]["message"]
    assert (await stats(http, local_gemini))["rejected"] == len(cases)


async def test_unknown_model_is_404_when_not_an_image_model(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    status, answer = await post(http, local_gemini, body(), model="gemini-1.0-pro")
    assert status == 404
    assert answer["error"]["status"] == "NOT_FOUND"
    assert (await post(http, local_gemini, body(), model="gemini-9-image"))[0] == 200


async def test_urlsafe_and_standard_base64_give_the_same_image_when_sent(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    raw = bytes(range(256)) * 4  # contains bytes whose base64 differs between alphabets
    payloads = []
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        image = png() + raw  # a PNG with trailing bytes is still sniffed as PNG
        payloads.append(
            {
                "contents": [
                    {
                        "parts": [
                            {"text": "x"},
                            {"inlineData": {"mimeType": "image/png", "data": encode(image).decode()}},
                        ]
                    }
                ]
            }
        )
    answers = [await post(http, local_gemini, p) for p in payloads]
    assert [s for s, _ in answers] == [200, 200]
    assert local_gemini.received[0].image_sha256 == local_gemini.received[1].image_sha256


async def test_5xx_alternate_500_and_503_when_scripted(http: aiohttp.ClientSession, local_gemini: LocalGemini) -> None:
    local_gemini.set_faults(next_5xx=3)
    statuses = [(await post(http, local_gemini, body()))[0] for _ in range(4)]
    assert statuses == [500, 503, 500, 200]
    assert (await stats(http, local_gemini))["errors_injected"] == 3


async def test_429_carries_retry_info_when_scripted(http: aiohttp.ClientSession, local_gemini: LocalGemini) -> None:
    async with http.post(local_gemini.url + "/admin/faults", json={"next_429": 1, "retry_delay_s": 2.5}) as resp:
        assert resp.status == 200
        assert (await resp.json())["next_429"] == 1
    status, answer = await post(http, local_gemini, body())
    assert status == 429
    assert answer["error"]["status"] == "RESOURCE_EXHAUSTED"
    retry = [d for d in answer["error"]["details"] if d["@type"].endswith("google.rpc.RetryInfo")]
    assert retry == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2.5s"}]


async def test_block_word_blocks_deterministically_when_prompt_contains_it(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    local_gemini.set_faults(block_word="Forbidden")
    seen = set()
    for i in range(8):
        prompt = f"a forbidden thing {i}"
        first = await post(http, local_gemini, body(prompt))
        again = await post(http, local_gemini, body(prompt))
        assert first[0] == again[0] == 200
        kind = "prompt" if "promptFeedback" in first[1] else "image"
        assert kind == ("prompt" if "promptFeedback" in again[1] else "image")
        seen.add(kind)
        if kind == "prompt":
            assert first[1]["promptFeedback"] == {"blockReason": "PROHIBITED_CONTENT"}
            assert "candidates" not in first[1]
        else:
            assert first[1]["candidates"][0]["finishReason"] == "IMAGE_SAFETY"
            assert "content" not in first[1]["candidates"][0]
    assert seen == {"prompt", "image"}
    assert (await stats(http, local_gemini))["blocked"] == 16


async def test_admin_refuses_faults_when_invalid(http: aiohttp.ClientSession, local_gemini: LocalGemini) -> None:
    for bad in ({"rate_429": 2}, {"next_5xx": -1}, {"bogus": 1}, ["not", "an", "object"]):
        async with http.post(local_gemini.url + "/admin/faults", json=bad) as resp:
            assert resp.status == 400
            assert "error" in await resp.json()


async def test_reset_zeroes_stats_and_scripted_faults_when_posted(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    await post(http, local_gemini, body())
    local_gemini.set_faults(next_429=5)
    async with http.post(local_gemini.url + "/admin/reset") as resp:
        assert resp.status == 200
    assert await stats(http, local_gemini) == {
        "requests": 0,
        "in_flight": 0,
        "max_in_flight": 0,
        "errors_injected": 0,
        "blocked": 0,
        "images": 0,
        "rejected": 0,
        "unauthorized": 0,
        "batches_created": 0,
        "batch_requests": 0,
        "batch_images": 0,
    }
    assert (await post(http, local_gemini, body()))[0] == 200


async def test_max_in_flight_counts_concurrent_requests_when_latency_is_set(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    local_gemini.set_faults(latency=0.3)
    results = await asyncio.gather(*(post(http, local_gemini, body(f"p{i}")) for i in range(5)))
    assert [s for s, _ in results] == [200] * 5
    numbers = await stats(http, local_gemini)
    assert numbers["max_in_flight"] == 5
    assert numbers["in_flight"] == 0
    assert numbers["requests"] == numbers["images"] == 5


async def test_draw_px_shrinks_images_keeping_aspect_when_set(http: aiohttp.ClientSession) -> None:
    async with LocalGemini(port=0, draw_px=64) as server:
        _, answer = await post(http, server, body(imageConfig={"aspectRatio": "16:9"}))
    data = base64.b64decode(answer["candidates"][0]["content"]["parts"][-1]["inlineData"]["data"])
    assert Image.open(io.BytesIO(data)).size == (64, 37)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_standalone_server_serves_and_exits_when_terminated(http: aiohttp.ClientSession) -> None:
    port = await asyncio.to_thread(_free_port)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "local.gemini",
        "--port",
        str(port),
        "--api-key",
        "k",
        cwd=ROOT,
        env={"LOCAL_GEMINI_DRAW_PX": "32", "LOCAL_GEMINI_LATENCY": "0.01", "PATH": ""},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                async with http.get(url + "/stats") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
        headers = {"x-goog-api-key": "k"}
        async with http.post(
            url + MODEL_URL.format(model="gemini-2.5-flash-image"), json=body(), headers=headers
        ) as resp:
            assert resp.status == 200
            answer = await resp.json()
        data = base64.b64decode(answer["candidates"][0]["content"]["parts"][-1]["inlineData"]["data"])
        assert Image.open(io.BytesIO(data)).size == (32, 32)
        async with http.get(url + "/stats") as resp:
            assert (await resp.json())["images"] == 1
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=10) in (0, -signal.SIGTERM)


async def test_random_faults_repeat_when_fault_seed_is_the_same(http: aiohttp.ClientSession) -> None:
    env = {"LOCAL_GEMINI_RATE_429": "0.3", "LOCAL_GEMINI_RATE_5XX": "0.3", "LOCAL_GEMINI_FAULT_SEED": "5"}
    runs = []
    for _ in range(2):
        async with LocalGemini.from_env(env, draw_px=16) as server:
            runs.append([(await post(http, server, body(f"p{i}"), key="any"))[0] for i in range(20)])
            assert server.stats.errors_injected == sum(s != 200 for s in runs[-1])
    assert runs[0] == runs[1]
    assert {429, 200} <= set(runs[0])
    assert set(runs[0]) & {500, 503}


async def test_gemini_3_answer_carries_thoughts_and_signatures_when_thoughts_are_asked(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    payload = body(thinkingConfig={"include_thoughts": True}, imageConfig={"aspectRatio": "1:1"})
    status, answer = await post(http, local_gemini, payload, model="gemini-3-pro-image-preview")
    assert status == 200
    parts = answer["candidates"][0]["content"]["parts"]
    assert [bool(p.get("thought")) for p in parts] == [True, True, False, False]
    assert "inlineData" in parts[1]
    assert all("thoughtSignature" in p for p in parts[2:])
    assert parts[-1]["inlineData"]["mimeType"] == "image/jpeg"
    assert answer["usageMetadata"]["thoughtsTokenCount"] > 0


async def test_reference_hash_blocks_only_matching_requests_when_set(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    blocked_png = png((200, 10, 10))
    local_gemini.set_faults(block_image_sha256=[hashlib.sha256(blocked_png).hexdigest()])
    with_blocked = body("one prompt for all")
    with_blocked["contents"][0]["parts"].append(
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(blocked_png).decode()}}
    )
    status, answer = await post(http, local_gemini, with_blocked)
    assert status == 200
    assert "promptFeedback" in answer or answer["candidates"][0]["finishReason"] == "IMAGE_SAFETY"
    status, answer = await post(http, local_gemini, body("one prompt for all", images=1))
    assert status == 200
    assert answer["candidates"][0]["content"]["parts"]
    assert (await stats(http, local_gemini))["blocked"] == 1


async def test_admin_refuses_reference_hashes_when_not_hex_digests(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    async with http.post(local_gemini.url + "/admin/faults", json={"block_image_sha256": ["nope"]}) as resp:
        assert resp.status == 400


async def test_next_latencies_hold_the_next_answers_one_each_in_arrival_order(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    local_gemini.set_faults(next_latencies=[0.5, 0])
    slow = asyncio.create_task(post(http, local_gemini, body("first")))
    await asyncio.sleep(0.1)  # the first request is in and waiting
    fast_status, _ = await post(http, local_gemini, body("second"))  # its own wait is 0, not the first's 0.5
    assert fast_status == 200 and not slow.done()
    assert (await slow)[0] == 200
    assert local_gemini.faults.next_latencies == []  # then "latency" again
    with pytest.raises(ValueError, match="next_latencies"):
        local_gemini.set_faults(next_latencies=0.5)
