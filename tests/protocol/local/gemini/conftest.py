"""The local Gemini server in-process on 127.0.0.1."""

from collections.abc import AsyncIterator

import pytest

from local.gemini.server import LocalGemini

KEY = "local-test-key"


@pytest.fixture
async def local_gemini() -> AsyncIterator[LocalGemini]:
    async with LocalGemini(port=0, api_key=KEY) as server:
        yield server
