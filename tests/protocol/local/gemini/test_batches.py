"""The local Gemini server's Batch API, driven by the real google-genai SDK (async and sync) over 127.0.0.1."""

import asyncio
import hashlib
import io
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from google import genai
from google.genai import errors, types

from local.gemini.drawing import draw_image
from local.gemini.faults import Faults
from local.gemini.server import LocalGemini
from tests.protocol.local.gemini.conftest import KEY
from tests.protocol.local.gemini.test_files import sdk_client

MODEL = "gemini-2.5-flash-image"
ENDED = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}


@pytest.fixture
async def quick() -> AsyncIterator[LocalGemini]:
    """A server whose batches start at once and draw small images."""
    async with LocalGemini(port=0, api_key=KEY, draw_px=32, faults=Faults(batch_wait_s=0.0)) as server:
        yield server


def request(prompt: str, seed: int = 1) -> dict[str, Any]:
    """Return a GenerateContentRequest as Peel's worker writes one (REST JSON)."""
    return {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "generationConfig": {"responseModalities": ["IMAGE"], "seed": seed, "imageConfig": {"aspectRatio": "1:1"}},
    }


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


async def upload_jsonl(client: genai.Client, data: bytes) -> str:
    made = await client.aio.files.upload(file=io.BytesIO(data), config={"mime_type": "jsonl"})
    assert made.name is not None
    return made.name


async def create_from_file(client: genai.Client, lines: list[dict[str, Any]], display_name: str) -> types.BatchJob:
    name = await upload_jsonl(client, jsonl(lines))
    return await client.aio.batches.create(model=MODEL, src=name, config={"display_name": display_name})


async def wait_ended(client: genai.Client, name: str) -> types.BatchJob:
    for _ in range(400):
        job = await client.aio.batches.get(name=name)
        if job.state is not None and job.state.name in ENDED:
            return job
        await asyncio.sleep(0.025)
    raise AssertionError(f"{name} did not end")


async def raw_batch(http: aiohttp.ClientSession, server: LocalGemini, name: str) -> dict[str, Any]:
    async with http.get(f"{server.url}/v1beta/{name}", headers={"x-goog-api-key": KEY}) as resp:
        assert resp.status == 200
        answer: dict[str, Any] = await resp.json()
        return answer


async def stats(http: aiohttp.ClientSession, server: LocalGemini) -> dict[str, int]:
    async with http.get(server.url + "/stats") as resp:
        answer: dict[str, int] = await resp.json()
        return answer


async def admin_batches(http: aiohttp.ClientSession, server: LocalGemini) -> dict[str, Any]:
    async with http.get(server.url + "/admin/batches") as resp:
        answer: dict[str, Any] = await resp.json()
        return answer


async def set_faults(http: aiohttp.ClientSession, server: LocalGemini, **faults: object) -> None:
    async with http.post(server.url + "/admin/faults", json=faults) as resp:
        assert resp.status == 200, await resp.text()


def image_of(response: types.GenerateContentResponse | None) -> bytes:
    assert response is not None and response.candidates
    content = response.candidates[0].content
    assert content is not None and content.parts
    images = [p.inline_data.data for p in content.parts if p.inline_data is not None and p.inline_data.data]
    assert len(images) == 1
    return images[0]


async def test_sdk_inline_batch_succeeds_with_a_response_per_request_in_input_order(
    http: aiohttp.ClientSession, quick: LocalGemini
) -> None:
    client = await sdk_client(http, quick)
    inline = [
        types.InlinedRequest(
            contents=[types.Content(role="user", parts=[types.Part(text=f"a red fox {i}")])],
            config=types.GenerateContentConfig(response_modalities=["IMAGE"], seed=i),
            metadata={"key": f"k{i}"},
        )
        for i in range(4)
    ]
    made = await client.aio.batches.create(model=MODEL, src=inline, config={"display_name": "peel-job-1-0"})
    assert made.name is not None and made.name.startswith("batches/")
    assert (made.display_name, made.model) == ("peel-job-1-0", f"models/{MODEL}")
    assert made.state is not None and made.state.name == "JOB_STATE_PENDING"
    assert made.create_time is not None
    done = await wait_ended(client, made.name)
    assert done.state is not None and done.state.name == "JOB_STATE_SUCCEEDED"
    assert done.end_time is not None and done.dest is not None and done.dest.inlined_responses is not None
    answers = done.dest.inlined_responses
    assert [a.metadata for a in answers] == [{"key": f"k{i}"} for i in range(4)]
    for answer in answers:
        assert answer.error is None
        assert image_of(answer.response)[:8] == b"\x89PNG\r\n\x1a\n"
    counted = await stats(http, quick)
    assert (counted["batches_created"], counted["batch_requests"], counted["batch_images"]) == (1, 4, 4)
    assert (counted["requests"], counted["images"]) == (0, 0)  # the online counters leave batches out


async def test_sdk_file_batch_results_download_as_shuffled_jsonl_joined_on_key(
    http: aiohttp.ClientSession, quick: LocalGemini, tmp_path: Path
) -> None:
    """The sync client, as a script would use it: upload the JSONL from a path, create, poll, download."""
    await set_faults(http, quick, batch_concurrency=1)
    lines = [{"key": str(i), "request": request(f"a lighthouse at dusk {i}", seed=i)} for i in range(20)]
    path = tmp_path / "part-0.jsonl"
    await asyncio.to_thread(path.write_bytes, jsonl(lines))

    def run() -> tuple[types.BatchJob, bytes]:
        client = genai.Client(
            api_key=KEY,
            http_options=types.HttpOptions(
                base_url=quick.url, api_version="v1beta", retry_options=types.HttpRetryOptions(attempts=1)
            ),
        )
        uploaded = client.files.upload(file=path, config={"mime_type": "jsonl", "display_name": "peel-job-2-0"})
        assert uploaded.name is not None
        job = client.batches.create(model=MODEL, src=uploaded.name, config={"display_name": "peel-job-2-0"})
        assert job.name is not None
        for _ in range(400):
            job = client.batches.get(name=job.name)
            if job.done:
                break
            time.sleep(0.025)
        assert job.dest is not None and job.dest.file_name is not None
        return job, client.files.download(file=job.dest.file_name)

    job, data = await asyncio.to_thread(run)
    assert job.state is not None and job.state.name == "JOB_STATE_SUCCEEDED"
    results = [json.loads(line) for line in data.splitlines()]
    keys = [r["key"] for r in results]
    assert sorted(keys, key=int) == [str(i) for i in range(20)]
    assert keys != sorted(keys, key=int)  # not the input order: clients must join on key
    by_key = {r["key"]: types.GenerateContentResponse.model_validate(r["response"]) for r in results}
    expected = await asyncio.to_thread(
        draw_image, prompt="a lighthouse at dusk 7", seed=7, references=[], size=(32, 32), image_format="PNG"
    )
    assert image_of(by_key["7"]) == expected  # drawn by generateContent's own code
    usage = by_key["7"].usage_metadata
    assert usage is not None and usage.total_token_count


async def test_result_file_streams_with_the_api_key_header(http: aiohttp.ClientSession, quick: LocalGemini) -> None:
    client = await sdk_client(http, quick)
    made = await create_from_file(client, [{"key": "a", "request": request("a kite")}], "peel-job-3-0")
    assert made.name is not None
    done = await wait_ended(client, made.name)
    assert done.dest is not None and done.dest.file_name is not None
    url = f"{quick.url}/v1beta/{done.dest.file_name}:download?alt=media"
    async with http.get(url, headers={"x-goog-api-key": KEY}) as resp:
        assert resp.status == 200
        lines = [json.loads(line) async for line in resp.content]
    assert [line["key"] for line in lines] == ["a"]
    raw = await raw_batch(http, quick, made.name)
    assert raw["done"] is True and raw["response"]["responsesFile"] == done.dest.file_name
    assert raw["metadata"]["batchStats"] == {"requestCount": "1", "successfulRequestCount": "1"}


async def test_batch_waits_pending_then_counts_move_while_running(
    http: aiohttp.ClientSession, quick: LocalGemini
) -> None:
    await set_faults(http, quick, batch_wait_s=0.3, batch_concurrency=1, latency=0.1)
    client = await sdk_client(http, quick)
    made = await create_from_file(
        client, [{"key": str(i), "request": request(f"p{i}")} for i in range(6)], "peel-job-4-0"
    )
    assert made.name is not None
    first = await raw_batch(http, quick, made.name)
    assert first["metadata"]["state"] == "BATCH_STATE_PENDING" and "done" not in first
    assert first["metadata"]["batchStats"] == {"requestCount": "6", "pendingRequestCount": "6"}
    seen: list[tuple[str, str]] = []
    for _ in range(200):
        meta = (await raw_batch(http, quick, made.name))["metadata"]
        counts = meta["batchStats"]
        seen.append((meta["state"], counts.get("successfulRequestCount", "0")))
        if meta["state"] != "BATCH_STATE_PENDING" and meta["state"] != "BATCH_STATE_RUNNING":
            break
        await asyncio.sleep(0.03)
    assert seen[-1] == ("BATCH_STATE_SUCCEEDED", "6")
    running = {done for state, done in seen if state == "BATCH_STATE_RUNNING"}
    assert len(running) >= 3  # the count moved while it ran


async def test_sdk_lists_batches_in_pages(http: aiohttp.ClientSession, quick: LocalGemini) -> None:
    client = await sdk_client(http, quick)
    names = set()
    for i in range(5):
        made = await create_from_file(client, [{"key": "0", "request": request(f"p{i}")}], f"peel-job-5-{i}")
        names.add(made.name)
    pager = await client.aio.batches.list(config={"page_size": 2})
    assert len(pager.page) == 2
    listed = [b async for b in pager]
    assert {b.name for b in listed} == names
    assert {b.display_name for b in listed} == {f"peel-job-5-{i}" for i in range(5)}
    async with http.get(f"{quick.url}/v1beta/batches", headers={"x-goog-api-key": KEY}) as resp:
        assert len((await resp.json())["operations"]) == 5  # the default page holds them


async def test_cancel_stops_a_running_batch_and_gives_no_results(
    http: aiohttp.ClientSession, quick: LocalGemini
) -> None:
    await set_faults(http, quick, batch_concurrency=1, latency=0.05)
    client = await sdk_client(http, quick)
    made = await create_from_file(
        client, [{"key": str(i), "request": request(f"p{i}")} for i in range(40)], "peel-job-6-0"
    )
    assert made.name is not None
    for _ in range(200):  # until the first request is made
        if "successfulRequestCount" in (await raw_batch(http, quick, made.name))["metadata"]["batchStats"]:
            break
        await asyncio.sleep(0.02)
    await client.aio.batches.cancel(name=made.name)
    cancelled = await client.aio.batches.get(name=made.name)
    assert cancelled.state is not None and cancelled.state.name == "JOB_STATE_CANCELLED"
    assert cancelled.dest is None and cancelled.end_time is not None
    drawn = (await stats(http, quick))["batch_requests"]
    await asyncio.sleep(0.3)
    assert (await stats(http, quick))["batch_requests"] == drawn  # nothing more is drawn
    assert drawn < 40
    with pytest.raises(errors.ClientError) as again:
        await client.aio.batches.cancel(name=made.name)
    assert (again.value.code, again.value.status) == (400, "FAILED_PRECONDITION")


async def test_delete_hides_a_batch_from_get_and_list_but_not_from_admin(
    http: aiohttp.ClientSession, quick: LocalGemini
) -> None:
    client = await sdk_client(http, quick)
    made = await create_from_file(client, [{"key": "0", "request": request("p")}], "peel-job-7-0")
    assert made.name is not None
    await wait_ended(client, made.name)
    await client.aio.batches.delete(name=made.name)
    with pytest.raises(errors.ClientError) as gone:
        await client.aio.batches.get(name=made.name)
    assert (gone.value.code, gone.value.status) == (404, "NOT_FOUND")
    assert [b async for b in await client.aio.batches.list()] == []
    admin = await admin_batches(http, quick)
    assert [(b["name"], b["displayName"], b["deleted"], b["requestCount"]) for b in admin["batches"]] == [
        (made.name, "peel-job-7-0", True, 1)
    ]
    assert admin["images_by_display_name"] == {"peel-job-7-0": 1}


async def test_fail_rate_makes_requests_fail_with_a_status_in_the_results(
    http: aiohttp.ClientSession, quick: LocalGemini
) -> None:
    await set_faults(http, quick, batch_fail_rate=1.0)
    client = await sdk_client(http, quick)
    made = await create_from_file(
        client, [{"key": str(i), "request": request(f"p{i}")} for i in range(3)], "peel-job-8-0"
    )
    assert made.name is not None
    done = await wait_ended(client, made.name)
    assert done.state is not None and done.state.name == "JOB_STATE_SUCCEEDED"
    assert done.dest is not None and done.dest.file_name is not None
    lines = [json.loads(line) for line in (await client.aio.files.download(file=done.dest.file_name)).splitlines()]
    assert sorted(line["key"] for line in lines) == ["0", "1", "2"]
    assert {line["error"]["status"] for line in lines} == {"INTERNAL"} and all("response" not in x for x in lines)
    counts = (await raw_batch(http, quick, made.name))["metadata"]["batchStats"]
    assert counts == {"requestCount": "3", "failedRequestCount": "3"}
    assert (await stats(http, quick))["batch_images"] == 0


@pytest.mark.parametrize("fate", ["FAILED", "EXPIRED"])
async def test_next_batch_state_ends_the_next_batch_only(
    http: aiohttp.ClientSession, quick: LocalGemini, fate: str
) -> None:
    await set_faults(http, quick, next_batch_state=fate)
    client = await sdk_client(http, quick)
    first = await create_from_file(client, [{"key": "0", "request": request("p")}], "peel-job-9-0")
    second = await create_from_file(client, [{"key": "0", "request": request("p")}], "peel-job-9-1")
    assert first.name is not None and second.name is not None
    ended = await wait_ended(client, first.name)
    assert ended.state is not None and ended.state.name == f"JOB_STATE_{fate}" and ended.dest is None
    fine = await wait_ended(client, second.name)
    assert fine.state is not None and fine.state.name == "JOB_STATE_SUCCEEDED"
    raw = await raw_batch(http, quick, first.name)
    assert raw["done"] is True and ("error" in raw) == (fate == "FAILED")


async def test_a_batch_pending_48_hours_on_the_clock_expires_without_results(
    http: aiohttp.ClientSession, quick: LocalGemini
) -> None:
    await set_faults(http, quick, batch_wait_s=60)
    client = await sdk_client(http, quick)
    made = await create_from_file(client, [{"key": "0", "request": request("p")}], "peel-job-10-0")
    assert made.name is not None
    async with http.post(quick.url + "/admin/clock", json={"advance_s": 48 * 3600 - 60}) as resp:
        assert resp.status == 200
    waiting = await client.aio.batches.get(name=made.name)
    assert waiting.state is not None and waiting.state.name == "JOB_STATE_PENDING"
    quick.files.advance(60)
    expired = await client.aio.batches.get(name=made.name)
    assert expired.state is not None and expired.state.name == "JOB_STATE_EXPIRED" and expired.dest is None


async def test_admin_forces_a_running_batch_to_end(http: aiohttp.ClientSession, quick: LocalGemini) -> None:
    await set_faults(http, quick, batch_concurrency=1, latency=0.05)
    client = await sdk_client(http, quick)
    made = await create_from_file(
        client, [{"key": str(i), "request": request(f"p{i}")} for i in range(40)], "peel-job-11-0"
    )
    assert made.name is not None
    async with http.post(f"{quick.url}/admin/{made.name}", json={"state": "EXPIRED"}) as resp:
        assert resp.status == 200
        assert (await resp.json())["state"] == "BATCH_STATE_EXPIRED"
    async with http.post(f"{quick.url}/admin/{made.name}", json={"state": "FAILED"}) as resp:
        assert resp.status == 400  # it has ended already
    async with http.post(f"{quick.url}/admin/{made.name}", json={"state": "SUCCEEDED"}) as resp:
        assert resp.status == 400


async def test_at_most_100_batches_pending_or_running(http: aiohttp.ClientSession, quick: LocalGemini) -> None:
    await set_faults(http, quick, batch_wait_s=60)
    client = await sdk_client(http, quick)
    name = await upload_jsonl(client, jsonl([{"key": "0", "request": request("p")}]))
    made = [
        await client.aio.batches.create(model=MODEL, src=name, config={"display_name": f"b{i}"}) for i in range(100)
    ]
    with pytest.raises(errors.ClientError) as refused:
        await client.aio.batches.create(model=MODEL, src=name, config={"display_name": "b100"})
    assert (refused.value.code, refused.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert made[0].name is not None
    await client.aio.batches.cancel(name=made[0].name)
    again = await client.aio.batches.create(model=MODEL, src=name, config={"display_name": "b100"})
    assert again.state is not None and again.state.name == "JOB_STATE_PENDING"


async def post_batch(http: aiohttp.ClientSession, server: LocalGemini, batch: object, model: str = MODEL) -> Any:
    url = f"{server.url}/v1beta/models/{model}:batchGenerateContent"
    async with http.post(url, json={"batch": batch}, headers={"x-goog-api-key": KEY}) as resp:
        return resp.status, await resp.json()


async def test_create_refuses_what_google_refuses(http: aiohttp.ClientSession, quick: LocalGemini) -> None:
    inline = {"requests": {"requests": [{"request": request("p"), "metadata": {"key": "a"}}]}}
    status, answer = await post_batch(http, quick, {"displayName": "x", "inputConfig": inline})
    assert status == 200 and answer["name"].startswith("batches/")
    bad_request = request("p") | {"bogus": 1}
    status, answer = await post_batch(
        http, quick, {"displayName": "x", "inputConfig": {"requests": {"requests": [{"request": bad_request}]}}}
    )
    assert (status, answer["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert 'Unknown name "bogus"' in answer["error"]["message"]
    status, answer = await post_batch(http, quick, {"displayName": "x", "inputConfig": inline, "colour": "red"})
    assert status == 400
    status, answer = await post_batch(http, quick, {"inputConfig": inline})
    assert (status, answer["error"]["status"]) == (400, "INVALID_ARGUMENT")  # displayName is required
    status, answer = await post_batch(http, quick, {"displayName": "x"})
    assert status == 400
    status, answer = await post_batch(
        http, quick, {"displayName": "x", "inputConfig": inline | {"fileName": "files/abc"}}
    )
    assert status == 400  # one source only
    status, answer = await post_batch(http, quick, {"displayName": "x", "inputConfig": {"fileName": "files/nope"}})
    assert (status, answer["error"]["status"]) == (403, "PERMISSION_DENIED")
    status, answer = await post_batch(http, quick, {"displayName": "x", "inputConfig": inline}, model="gemini-9")
    assert status == 404


async def test_a_bad_line_fails_alone(http: aiohttp.ClientSession, quick: LocalGemini) -> None:
    client = await sdk_client(http, quick)
    good = jsonl([{"key": "good", "request": request("p")}])
    unknown = jsonl([{"key": "unknown", "request": request("p") | {"bogus": 1}}])
    odd_ratio = {"generationConfig": {"imageConfig": {"aspectRatio": "7:1"}}}
    refused = jsonl([{"key": "ratio", "request": request("p") | odd_ratio}])
    name = await upload_jsonl(client, good + unknown + refused + b"not json\n")
    made = await client.aio.batches.create(model=MODEL, src=name, config={"display_name": "peel-job-12-0"})
    assert made.name is not None
    done = await wait_ended(client, made.name)
    assert done.state is not None and done.state.name == "JOB_STATE_SUCCEEDED"
    assert done.dest is not None and done.dest.file_name is not None
    lines = [json.loads(line) for line in (await client.aio.files.download(file=done.dest.file_name)).splitlines()]
    by_key = {line.get("key"): line for line in lines}
    assert set(by_key) == {"good", "unknown", "ratio", None}
    assert "response" in by_key["good"]
    assert 'Unknown name "bogus"' in by_key["unknown"]["error"]["message"]
    assert by_key["ratio"]["error"]["status"] == "INVALID_ARGUMENT"
    assert by_key[None]["error"]["code"] == 400


async def test_blocks_apply_to_batch_requests_as_answers(http: aiohttp.ClientSession, quick: LocalGemini) -> None:
    await set_faults(http, quick, block_word="forbidden", block_as="prompt")
    client = await sdk_client(http, quick)
    made = await create_from_file(client, [{"key": "0", "request": request("a forbidden fruit")}], "peel-job-13-0")
    assert made.name is not None
    done = await wait_ended(client, made.name)
    assert done.dest is not None and done.dest.file_name is not None
    (line,) = [json.loads(x) for x in (await client.aio.files.download(file=done.dest.file_name)).splitlines()]
    assert line["response"]["promptFeedback"]["blockReason"] == "PROHIBITED_CONTENT"
    assert (await stats(http, quick))["blocked"] == 0  # the online counter leaves batches out


async def test_a_reference_uploaded_once_is_drawn_into_every_request_that_points_to_it(
    http: aiohttp.ClientSession, quick: LocalGemini
) -> None:
    client = await sdk_client(http, quick)
    reference = await asyncio.to_thread(
        draw_image, prompt="ref", seed=3, references=[], size=(16, 16), image_format="PNG"
    )
    ref = await client.aio.files.upload(file=io.BytesIO(reference), config={"mime_type": "image/png"})
    assert ref.uri is not None
    lines = []
    for i in range(3):
        body = request(f"p{i}")
        body["contents"][0]["parts"].append({"fileData": {"mimeType": "image/png", "fileUri": ref.uri}})
        lines.append({"key": str(i), "request": body})
    made = await create_from_file(client, lines, "peel-job-14-0")
    assert made.name is not None
    done = await wait_ended(client, made.name)
    assert done.state is not None and done.state.name == "JOB_STATE_SUCCEEDED"
    digest = hashlib.sha256(reference).hexdigest()
    async with http.get(quick.url + "/admin/requests") as resp:
        received = [r for r in await resp.json() if r["batch"]]
    assert len(received) == 3 and all(r["image_sha256"] == [digest] for r in received)
    await client.aio.files.delete(name=str(ref.name))
    late = await create_from_file(client, lines[:1], "peel-job-14-1")
    assert late.name is not None
    ended = await wait_ended(client, late.name)
    assert ended.dest is not None and ended.dest.file_name is not None
    (line,) = [json.loads(x) for x in (await client.aio.files.download(file=ended.dest.file_name)).splitlines()]
    assert line["error"]["status"] == "PERMISSION_DENIED"  # the reference is gone


async def test_admin_shows_keys_drawn_twice_under_one_display_name(
    http: aiohttp.ClientSession, quick: LocalGemini
) -> None:
    client = await sdk_client(http, quick)
    for _ in range(2):
        made = await create_from_file(client, [{"key": "7", "request": request("p")}], "peel-job-15-0")
        assert made.name is not None
        await wait_ended(client, made.name)
    admin = await admin_batches(http, quick)
    assert admin["images_by_display_name"] == {"peel-job-15-0": 2}
    assert admin["keys_drawn_twice"] == {"peel-job-15-0": ["7"]}
    assert [b["images"] for b in admin["batches"]] == [1, 1]
