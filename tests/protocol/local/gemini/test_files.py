"""The local Gemini server's Files API, driven by the real google-genai SDK over 127.0.0.1."""

import asyncio
import base64
import hashlib
import io

import aiohttp
import pytest
from google import genai
from google.genai import errors, types

from local.gemini.server import LocalGemini
from tests.protocol.local.gemini.conftest import KEY

PAYLOAD = b'{"key": "a", "request": {}}\n' * 1000


async def sdk_client(http: aiohttp.ClientSession, server: LocalGemini) -> genai.Client:
    options = types.HttpOptions(
        base_url=server.url,
        api_version="v1beta",
        retry_options=types.HttpRetryOptions(attempts=1),
        aiohttp_client=http,
    )
    return await asyncio.to_thread(genai.Client, api_key=KEY, http_options=options)  # reads files: off the loop


async def upload(client: genai.Client, data: bytes = PAYLOAD, **config: str) -> types.File:
    settings = types.UploadFileConfig(mime_type="application/jsonl", **config)  # type: ignore[arg-type]
    return await client.aio.files.upload(file=io.BytesIO(data), config=settings)


async def test_sdk_upload_get_list_and_delete_a_file(http: aiohttp.ClientSession, local_gemini: LocalGemini) -> None:
    client = await sdk_client(http, local_gemini)
    made = await upload(client, display_name="peel-job-1")
    assert made.name is not None and made.name.startswith("files/")
    assert (made.state, made.source, made.size_bytes) == ("ACTIVE", "UPLOADED", len(PAYLOAD))
    assert made.mime_type == "application/jsonl" and made.display_name == "peel-job-1"
    assert made.sha256_hash == base64.b64encode(hashlib.sha256(PAYLOAD).digest()).decode()
    assert made.expiration_time is not None and made.create_time is not None
    assert (made.expiration_time - made.create_time).total_seconds() == pytest.approx(48 * 3600)
    got = await client.aio.files.get(name=made.name)
    assert (got.name, got.size_bytes, got.uri) == (made.name, made.size_bytes, made.uri)
    assert [f.name async for f in await client.aio.files.list()] == [made.name]
    await client.aio.files.delete(name=made.name)
    with pytest.raises(errors.ClientError) as gone:
        await client.aio.files.get(name=made.name)
    assert (gone.value.code, gone.value.status) == (403, "PERMISSION_DENIED")
    assert [f async for f in await client.aio.files.list()] == []


# google-genai's async upload posts each 8 MiB chunk as raw bytes, which aiohttp warns about; the SDK's doing.
@pytest.mark.filterwarnings("ignore:Sending a large body:ResourceWarning")
async def test_sdk_upload_of_several_chunks_keeps_every_byte(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    client = await sdk_client(http, local_gemini)
    data = bytes(range(256)) * (40 * 1024 + 7)  # a little over 10 MiB: two of the SDK's 8 MiB chunks
    made = await upload(client, data)
    assert made.size_bytes == len(data)
    assert made.name is not None
    stored = local_gemini.files.get(made.name.removeprefix("files/"))
    assert await asyncio.to_thread(stored.path.read_bytes) == data


async def test_sdk_lists_files_in_pages(http: aiohttp.ClientSession, local_gemini: LocalGemini) -> None:
    client = await sdk_client(http, local_gemini)
    names = {(await upload(client, f"{i}".encode())).name for i in range(5)}
    pager = await client.aio.files.list(config={"page_size": 2})
    assert len(pager.page) == 2
    assert {f.name async for f in pager} == names


async def test_file_expires_after_48_hours(http: aiohttp.ClientSession, local_gemini: LocalGemini) -> None:
    client = await sdk_client(http, local_gemini)
    made = await upload(client)
    assert made.name is not None
    async with http.post(local_gemini.url + "/admin/clock", json={"advance_s": 48 * 3600 - 60}) as resp:
        assert resp.status == 200
    assert (await client.aio.files.get(name=made.name)).name == made.name
    local_gemini.files.advance(60)
    with pytest.raises(errors.ClientError) as expired:
        await client.aio.files.get(name=made.name)
    assert expired.value.code == 403


async def test_upload_over_the_size_limit_is_refused(http: aiohttp.ClientSession) -> None:
    async with LocalGemini(port=0, api_key=KEY, max_file_bytes=1000) as server:
        client = await sdk_client(http, server)
        assert (await upload(client, b"x" * 1000)).size_bytes == 1000
        with pytest.raises(errors.ClientError) as refused:
            await upload(client, b"x" * 1001)
        assert (refused.value.code, refused.value.status) == (400, "INVALID_ARGUMENT")


async def test_sdk_downloads_a_generated_file_but_not_an_uploaded_one(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    client = await sdk_client(http, local_gemini)
    data = b'{"key": "a", "response": {}}\n' * 50_000
    chunks = [data[:1000], data[1000:]]
    generated = await asyncio.to_thread(local_gemini.files.add_generated, chunks, "application/jsonl")
    listed = await client.aio.files.get(name=f"files/{generated.file_id}")
    assert listed.source == "GENERATED" and listed.download_uri is not None
    assert await client.aio.files.download(file=listed) == data
    uploaded = await upload(client)
    assert uploaded.name is not None
    with pytest.raises(errors.ClientError) as refused:
        await client.aio.files.download(file=uploaded.name)
    assert refused.value.code == 400


async def test_chunk_at_a_wrong_offset_and_an_unknown_upload_are_refused(
    http: aiohttp.ClientSession, local_gemini: LocalGemini
) -> None:
    headers = {
        "x-goog-api-key": KEY,
        "X-Goog-Upload-Protocol": "resumable",
        "X-Goog-Upload-Command": "start",
        "X-Goog-Upload-Header-Content-Length": "10",
        "X-Goog-Upload-Header-Content-Type": "text/plain",
    }
    async with http.post(local_gemini.url + "/upload/v1beta/files", json={"file": {}}, headers=headers) as resp:
        assert (resp.status, resp.headers["X-Goog-Upload-Status"]) == (200, "active")
        url = resp.headers["X-Goog-Upload-URL"]
    chunk = {"x-goog-api-key": KEY, "X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "3"}
    async with http.post(url, data=b"0123456789", headers=chunk) as resp:
        assert (resp.status, (await resp.json())["error"]["status"]) == (400, "INVALID_ARGUMENT")
    async with http.post(
        url.replace("upload_id=", "upload_id=x"), data=b"0123456789", headers=chunk | {"X-Goog-Upload-Offset": "0"}
    ) as resp:
        assert resp.status == 404
    async with http.post(url, data=b"0123456789", headers=chunk | {"X-Goog-Upload-Offset": "0"}) as resp:
        assert resp.status == 200
        assert (await resp.json())["file"]["sizeBytes"] == "10"
