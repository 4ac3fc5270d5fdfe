"""The local Gemini server in-process on 127.0.0.1."""

from collections.abc import AsyncIterator

import aiohttp
import pytest

from worker.local_gemini import LocalGemini

KEY = "local-test-key"


@pytest.fixture
async def local_gemini() -> AsyncIterator[LocalGemini]:
    async with LocalGemini(port=0, api_key=KEY) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
