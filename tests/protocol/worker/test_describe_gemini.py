"""The describe job kind with the real Gemini adapter against the local Gemini server, over HTTP on 127.0.0.1."""

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from google.genai import types
from PIL import Image

from local.gemini.faults import Faults
from local.gemini.server import LocalGemini
from storage.file import FileStore
from worker.contract import DESCRIBE_PROMPTS, ChunkResult, DescribeAnswer, ErrorCode, ItemError, ItemOk, describe_key
from worker.gemini import GeminiImageGenerator
from worker.handler import WorkerDeps, make_handler

TEXT_MODEL = "gemini-2.5-flash"


@dataclass
class Rig:
    gemini: LocalGemini
    store: FileStore
    deps: WorkerDeps
    generator: GeminiImageGenerator

    async def run(self, chunk: dict[str, Any]) -> ChunkResult:
        output = await make_handler(self.deps)({"id": "rp-describe", "input": chunk})
        assert "error" not in output, output
        return ChunkResult.model_validate(output)


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with LocalGemini(port=0, faults=Faults(block_word="forbidden")) as gemini:
        generator = await asyncio.to_thread(
            GeminiImageGenerator, api_key="local-key", base_url=gemini.url, max_attempts=1
        )
        async with generator as gen:
            store = FileStore(tmp_path / "store")
            deps = WorkerDeps(store=store, generator=gen, text=gen, sleep=_no_sleep)
            yield Rig(gemini, store, deps, gen)


def png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def chunk(*, prompt: str = "Describe this image as four prompts.", model: str = TEXT_MODEL) -> dict[str, Any]:
    return {
        "schema": 1,
        "kind": "describe",
        "job_id": "j_describe",
        "chunk": 0,
        "model": model,
        "items": [{"index": 0, "prompt": prompt, "ref_keys": ["uploads/a.png"], "output_key": "outputs/j/00000.png"}],
    }


async def test_a_describe_item_stores_four_prompts_with_the_images_ratio_and_its_usage(rig: Rig) -> None:
    await rig.store.put("uploads/a.png", png((300, 200), (40, 80, 200)), content_type="image/png")
    result = await rig.run(chunk())
    ok = result.results[0]
    assert isinstance(ok, ItemOk), ok
    assert ok.key == describe_key("outputs/j/00000.png") == "outputs/j/00000.describe.json"
    assert (ok.width, ok.height) == (300, 200)
    assert ok.usage is not None and ok.usage.prompt_tokens > 0 and ok.usage.output_tokens > 0
    answer = DescribeAnswer.model_validate_json(await rig.store.get_bytes(ok.key))
    assert len(answer.prompts) == DESCRIBE_PROMPTS
    assert answer.aspect_ratio == "3:2"
    assert all(p.endswith(" --ar 3:2") and "blue" in p for p in answer.prompts)
    sent = rig.gemini.received[-1]
    assert (sent.model, sent.images) == (TEXT_MODEL, 1)
    assert "four prompts" in sent.prompt


async def test_a_blocked_image_is_safety_and_nothing_is_stored(rig: Rig) -> None:
    await rig.store.put("uploads/a.png", png((64, 64), (200, 40, 40)), content_type="image/png")
    result = await rig.run(chunk(prompt="Describe this forbidden image."))
    error = result.results[0]
    assert isinstance(error, ItemError) and error.code is ErrorCode.SAFETY
    assert error.usage is not None and error.usage.prompt_tokens > 0  # Gemini bills the input
    assert not await rig.store.exists("outputs/j/00000.describe.json")


async def test_a_file_that_is_not_an_image_is_bad_input_before_any_call(rig: Rig) -> None:
    await rig.store.put("uploads/a.png", b"not an image at all", content_type="image/png")
    result = await rig.run(chunk())
    error = result.results[0]
    assert isinstance(error, ItemError) and error.code is ErrorCode.BAD_INPUT
    assert not rig.gemini.received


async def test_the_local_server_refuses_image_output_from_a_text_model(rig: Rig) -> None:
    contents = [types.Content(role="user", parts=[types.Part.from_text(text="a cat")])]
    config = types.GenerateContentConfig(response_modalities=["IMAGE"])
    with pytest.raises(Exception, match="response modalities"):
        await rig.generator.call_model(TEXT_MODEL, contents, config)


async def test_a_worker_without_a_text_client_refuses_the_item_as_config(rig: Rig) -> None:
    await rig.store.put("uploads/a.png", png((64, 64), (0, 0, 0)), content_type="image/png")
    rig.deps = replace(rig.deps, text=None)
    error = (await rig.run(chunk())).results[0]
    assert isinstance(error, ItemError) and error.code is ErrorCode.CONFIG
