"""What the worker sends Gemini for the single-image tools and marked references, against the local Gemini server.

`/admin/requests` shows each generateContent call the server received (prompt, image count and hashes, options).
"""

import hashlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image, ImageChops

from bot.app.generation_types import FILL_WORDING
from bot.app.imaging import zoom_canvas
from bot.core.references import RefRole, with_roles
from local.gemini.server import LocalGemini
from storage.file import FileStore
from worker.contract import ChunkResult, ItemOk
from worker.gemini import GeminiImageGenerator
from worker.handler import WorkerDeps, make_handler

pytestmark = pytest.mark.asyncio


def _png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


class Rig:
    def __init__(self, gemini: LocalGemini, store: FileStore, http: aiohttp.ClientSession, deps: WorkerDeps) -> None:
        self.gemini, self.store, self.http, self.deps = gemini, store, http, deps

    async def run(self, item: dict[str, Any], *, model: str = "gemini-2.5-flash-image") -> ChunkResult:
        chunk = {"schema": 1, "job_id": "j_tools", "chunk": 0, "model": model, "items": [item]}
        output = await make_handler(self.deps)({"id": "rp-tools", "input": chunk})
        assert "error" not in output, output
        return ChunkResult.model_validate(output)

    async def last_request(self) -> dict[str, Any]:
        async with self.http.get(f"{self.gemini.url}/admin/requests") as resp:
            return dict((await resp.json())[-1])


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with LocalGemini(port=0, draw_px=64) as gemini:
        generator = GeminiImageGenerator(api_key="local-key", base_url=gemini.url, max_attempts=1)
        async with generator as gen, aiohttp.ClientSession() as http:
            store = FileStore(tmp_path / "store")
            yield Rig(gemini, store, http, WorkerDeps(store=store, generator=gen, progress_interval_s=0.1))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_make_square_sends_the_square_canvas_and_the_fill_instruction(rig: Rig) -> None:
    canvas = zoom_canvas(_png((96, 64), (200, 30, 30)), 1.0, ratio=(1, 1))
    await rig.store.put("inputs/canvas.png", canvas)
    prompt = f"a fox\n\n{FILL_WORDING}"
    item = {"index": 0, "prompt": prompt, "ref_keys": ["inputs/canvas.png"], "aspect_ratio": "1:1"}
    result = await rig.run({**item, "output_key": "outputs/j_tools/00000.png"})
    assert isinstance(result.results[0], ItemOk)
    sent = await rig.last_request()
    assert (sent["images"], sent["aspect_ratio"]) == (1, "1:1")
    assert sent["image_sha256"] == [_sha(canvas)] and "replace all of the grey area" in sent["prompt"]


async def test_marked_references_go_in_order_with_what_each_is_for(rig: Rig) -> None:
    style, hero = _png((32, 32), (1, 2, 3)), _png((32, 32), (4, 5, 6))
    await rig.store.put("inputs/style.png", style)
    await rig.store.put("inputs/hero.png", hero)
    prompt = with_roles("a knight", (RefRole.STYLE, RefRole.CHARACTER))
    item = {"index": 0, "prompt": prompt, "ref_keys": ["inputs/style.png", "inputs/hero.png"]}
    await rig.run({**item, "output_key": "outputs/j_tools/00001.png"})
    sent = await rig.last_request()
    assert sent["image_sha256"] == [_sha(style), _sha(hero)]
    assert "Use image 1 only for its style" in sent["prompt"] and "Image 2 shows a character" in sent["prompt"]


async def test_vary_region_sends_the_image_and_its_outlined_copy_and_changes_nothing_outside(rig: Rig) -> None:
    source = _png((90, 60), (20, 120, 220))
    await rig.store.put("inputs/source.png", source)
    region = {"left": 0.5, "top": 0.0, "right": 1.0, "bottom": 0.5}
    item = {
        "index": 0,
        "prompt": "a yellow sun",
        "edit": {"source_key": "inputs/source.png"},
        "region": region,
        "aspect_ratio": "3:2",
        "output_key": "outputs/j_tools/00002.png",
    }
    result = await rig.run(item)
    ok = result.results[0]
    assert isinstance(ok, ItemOk) and (ok.width, ok.height) == (90, 60)
    sent = await rig.last_request()
    assert sent["images"] == 2 and sent["image_sha256"][0] == _sha(source)  # the image first, then the marked copy
    assert "from 50% to 100% of the width" in sent["prompt"] and "from 0% to 50% of the height" in sent["prompt"]
    assert "In that part, draw: a yellow sun" in sent["prompt"]
    made = Image.open(io.BytesIO(await rig.store.get_bytes(ok.key))).convert("RGB")
    before = Image.open(io.BytesIO(source)).convert("RGB")
    diff = ImageChops.difference(made, before)
    assert diff.crop((0, 0, 45, 60)).getbbox() is None and diff.crop((45, 30, 90, 60)).getbbox() is None
    assert diff.crop((45, 0, 90, 30)).getbbox() is not None
