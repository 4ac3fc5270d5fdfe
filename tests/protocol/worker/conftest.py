"""The local Gemini server in-process on 127.0.0.1, and generators pointed at it."""

import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from local.gemini.server import LocalGemini
from tests.fakes.clock import Sleeps
from worker.gemini import GeminiImageGenerator

KEY = "local-test-key"


@pytest.fixture
async def local_gemini() -> AsyncIterator[LocalGemini]:
    async with LocalGemini(port=0, api_key=KEY) as server:
        yield server


@pytest.fixture
async def make_generator(
    local_gemini: LocalGemini, sleeps: Sleeps
) -> AsyncIterator[Callable[..., GeminiImageGenerator]]:
    made: list[GeminiImageGenerator] = []

    def make(**overrides: Any) -> GeminiImageGenerator:
        kwargs: dict[str, Any] = {
            "api_key": KEY,
            "base_url": local_gemini.url,
            "timeout_s": 10.0,
            "max_attempts": 4,
            "backoff_base_s": 0.5,
            "backoff_cap_s": 30.0,
            "sleep": sleeps,
            "rng": random.Random(1),
        }
        kwargs.update(overrides)
        generator = GeminiImageGenerator(**kwargs)
        made.append(generator)
        return generator

    yield make
    for generator in made:
        await generator.aclose()


@pytest.fixture
def generator(make_generator: Callable[..., GeminiImageGenerator]) -> GeminiImageGenerator:
    return make_generator()
