"""The bot's Batch API adapter (`bot.gemini.client.GenaiBatches`, google-genai plus one REST GET) against the local
Gemini server over 127.0.0.1: every call relax mode makes, and how failures come back."""

import asyncio
import io
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from pydantic import SecretStr

from bot.gemini.client import GenaiBatches
from bot.gemini.types import GeminiBatchError, GeminiProblem
from local.gemini.faults import Faults
from local.gemini.server import LocalGemini
from tests.protocol.local.gemini.conftest import KEY
from tests.protocol.local.gemini.test_batches import request
from tests.protocol.local.gemini.test_files import sdk_client

MODEL = "gemini-2.5-flash-image"


@pytest.fixture
async def server() -> AsyncIterator[LocalGemini]:
    async with LocalGemini(port=0, api_key=KEY, draw_px=32, faults=Faults(batch_wait_s=0.2)) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def upload(http: aiohttp.ClientSession, server: LocalGemini, n: int) -> str:
    lines = [json.dumps({"key": str(i), "request": request(f"a cat {i}", seed=i)}).encode() + b"\n" for i in range(n)]
    client = await sdk_client(http, server)
    made = await client.aio.files.upload(file=io.BytesIO(b"".join(lines)), config={"mime_type": "jsonl"})
    assert made.name is not None
    return made.name


async def test_create_find_watch_and_delete_the_files(server: LocalGemini, http: aiohttp.ClientSession) -> None:
    batches = GenaiBatches(http, api_key=SecretStr(KEY), base_url=server.url)
    await batches.check()
    file_name = await upload(http, server, 5)
    assert await batches.find("peel-j_1-1") is None

    created = await batches.create(model=MODEL, file_name=file_name, display_name="peel-j_1-1")
    assert created.name.startswith("batches/") and created.display_name == "peel-j_1-1"
    assert created.state == "JOB_STATE_PENDING"
    found = await batches.find("peel-j_1-1")
    assert found is not None and found.name == created.name

    info = await batches.get(created.name)
    for _ in range(200):
        info = await batches.get(created.name)
        if info.state == "JOB_STATE_SUCCEEDED":
            break
        await asyncio.sleep(0.05)
    assert info.state == "JOB_STATE_SUCCEEDED"
    assert (info.counts.requests, info.counts.succeeded, info.counts.failed) == (5, 5, 0)
    assert info.result_file is not None and info.result_file.startswith("files/")
    assert info.create_time is not None

    await batches.delete_file(file_name)
    await batches.delete_file(info.result_file)
    await batches.delete_file(info.result_file)  # already gone: no error
    await batches.delete(created.name)
    assert await batches.find("peel-j_1-1") is None
    await batches.delete(created.name)  # already gone: no error


async def test_cancel_ends_the_batch_cancelled(server: LocalGemini, http: aiohttp.ClientSession) -> None:
    batches = GenaiBatches(http, api_key=SecretStr(KEY), base_url=server.url)
    created = await batches.create(model=MODEL, file_name=await upload(http, server, 3), display_name="peel-j_2-1")
    await batches.cancel(created.name)
    assert (await batches.get(created.name)).state == "JOB_STATE_CANCELLED"


async def test_failures_come_back_as_problems(server: LocalGemini, http: aiohttp.ClientSession) -> None:
    wrong = GenaiBatches(http, api_key=SecretStr("not-the-key"), base_url=server.url)
    with pytest.raises(GeminiBatchError) as refused:
        await wrong.check()
    assert refused.value.problem is GeminiProblem.REFUSED
    with pytest.raises(GeminiBatchError) as refused_get:
        await wrong.get("batches/x")
    assert refused_get.value.problem is GeminiProblem.REFUSED

    batches = GenaiBatches(http, api_key=SecretStr(KEY), base_url=server.url)
    with pytest.raises(GeminiBatchError) as missing:
        await batches.get("batches/doesnotexist")
    assert missing.value.problem is GeminiProblem.NOT_FOUND
    with pytest.raises(GeminiBatchError) as invalid:
        await batches.create(model=MODEL, file_name="files/nosuchfile", display_name="peel-x")
    assert invalid.value.problem in (GeminiProblem.INVALID, GeminiProblem.REFUSED, GeminiProblem.NOT_FOUND)

    nowhere = GenaiBatches(http, api_key=SecretStr(KEY), base_url="http://127.0.0.1:9", timeout_s=2)
    with pytest.raises(GeminiBatchError) as unreachable:
        await nowhere.get("batches/x")
    assert unreachable.value.problem is GeminiProblem.UNREACHABLE
    with pytest.raises(GeminiBatchError) as unreachable_list:
        await nowhere.find("peel-x")
    assert unreachable_list.value.problem is GeminiProblem.UNREACHABLE
