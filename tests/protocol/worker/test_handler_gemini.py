"""The handler with the real Gemini adapter against the local Gemini server, over HTTP on 127.0.0.1.

`/stats` counts the generateContent calls the server received, which shows what the handler costs: a re-run chunk
asks Gemini only for what is not in the store yet, and never more calls at once than the chunk's concurrency.
"""

import asyncio
import csv
import io
import json
import math
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.core import models
from bot.core.item_errors import item_error_message
from bot.core.manifest import ManifestHeader, item_row, render_csv, render_json
from local.gemini.faults import Faults
from local.gemini.server import LocalGemini
from storage import Body, ObjectInfo, StorageUnavailableError
from storage.file import FileStore
from storage.keys import THUMB_SUFFIX, thumb_key
from tests.fakes.models import batch_job
from worker.contract import ChunkResult, ErrorCode, ItemError, ItemOk, TokenUsage
from worker.gemini import GeminiImageGenerator
from worker.handler import WorkerDeps, make_handler

BLOCK_WORD = "forbidden"


@dataclass
class Rig:
    gemini: LocalGemini
    store: FileStore
    http: aiohttp.ClientSession
    deps: WorkerDeps

    async def stats(self) -> dict[str, int]:
        async with self.http.get(f"{self.gemini.url}/stats") as resp:
            assert resp.status == 200
            return dict(await resp.json())

    async def set_faults(self, **faults: Any) -> None:
        async with self.http.post(f"{self.gemini.url}/admin/faults", json=faults) as resp:
            assert resp.status == 200, await resp.text()

    async def run(self, chunk: dict[str, Any]) -> ChunkResult:
        output = await make_handler(self.deps)({"id": "rp-proto", "input": chunk})
        assert "error" not in output, output
        return ChunkResult.model_validate(output)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with LocalGemini(port=0, draw_px=64, faults=Faults(block_word=BLOCK_WORD)) as gemini:
        # Building the client reads CA certificates from disk, so it happens off the event loop.
        generator = await asyncio.to_thread(
            GeminiImageGenerator, api_key="local-key", base_url=gemini.url, max_attempts=2, backoff_base_s=0.01
        )
        async with generator as gen, aiohttp.ClientSession() as http:
            store = FileStore(tmp_path / "store")
            yield Rig(gemini, store, http, WorkerDeps(store=store, generator=gen, progress_interval_s=0.1))


def make_chunk(n: int, *, concurrency: int, blocked: frozenset[int] = frozenset()) -> dict[str, Any]:
    return {
        "schema": 1,
        "job_id": "j_proto",
        "chunk": 0,
        "model": "gemini-2.5-flash-image",
        "concurrency": concurrency,
        "items": [
            {
                "index": i,
                "prompt": f"a {BLOCK_WORD} thing, take {i}" if i in blocked else f"a harbour at night, take {i}",
                "aspect_ratio": "1:1",
                "seed": i,
                "output_key": f"outputs/j_proto/{i:05d}.png",
            }
            for i in range(n)
        ],
    }


async def test_blocked_prompts_fail_alone_and_a_rerun_asks_gemini_only_for_them_when_twenty_items(rig: Rig) -> None:
    chunk = make_chunk(20, concurrency=6, blocked=frozenset({4, 13}))

    first = await rig.run(chunk)

    assert (first.ok, first.failed) == (18, 2)
    for index in (4, 13):
        error = first.results[index]
        assert isinstance(error, ItemError)
        assert (error.code, error.retryable) == (ErrorCode.SAFETY, False)
    stored = [info.key async for info in rig.store.list("outputs/j_proto/") if info.key.endswith(".png")]
    assert len(stored) == 18
    assert "outputs/j_proto/00004.png" not in stored
    before = await rig.stats()
    assert before["requests"] == 20

    again = await rig.run(chunk)

    after = await rig.stats()
    assert after["requests"] - before["requests"] == 2
    assert (again.ok, again.failed) == (18, 2)
    assert all(r.skipped for r in again.results if isinstance(r, ItemOk))


async def test_gemini_never_sees_more_calls_than_the_chunk_concurrency_when_latency_is_injected(rig: Rig) -> None:
    await rig.set_faults(latency=0.1)

    result = await rig.run(make_chunk(12, concurrency=3))

    stats = await rig.stats()
    assert result.ok == 12
    assert stats["requests"] == 12
    assert stats["max_in_flight"] == 3


async def test_stored_outputs_are_pngs_of_the_reported_size_when_generated(rig: Rig) -> None:
    result = await rig.run(make_chunk(2, concurrency=2))

    for item in result.results:
        assert isinstance(item, ItemOk)
        head = await rig.store.read_range(item.key, 0, 24)
        assert head.startswith(b"\x89PNG\r\n\x1a\n")
        assert (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) == (item.width, item.height)


async def test_each_made_image_has_a_webp_thumbnail_beside_it_of_its_size_or_smaller(rig: Rig) -> None:
    result = await rig.run(make_chunk(3, concurrency=3))

    assert result.ok == 3
    for item in result.results:
        assert isinstance(item, ItemOk)
        thumb = await rig.store.get_bytes(thumb_key(item.key))
        with Image.open(io.BytesIO(thumb)) as image:
            assert image.format == "WEBP"
            assert image.size == (item.width, item.height)  # 64 px drawn: never enlarged to THUMB_MAX_PX


class _ThumbnailsRefusedStore(FileStore):
    """A file store that is unavailable for thumbnails only."""

    refused = 0

    async def put(self, key: str, body: Body, *, content_type: str | None = None) -> ObjectInfo:
        if key.endswith(THUMB_SUFFIX):
            self.refused += 1
            raise StorageUnavailableError("thumbnails refused")
        return await super().put(key, body, content_type=content_type)


async def test_a_thumbnail_that_cannot_be_written_leaves_every_item_ok(rig: Rig, tmp_path: Path) -> None:
    store = _ThumbnailsRefusedStore(tmp_path / "refusing")
    rig.deps = replace(rig.deps, store=store)

    result = await rig.run(make_chunk(4, concurrency=2))

    assert (result.ok, result.failed) == (4, 0)
    assert store.refused == 4  # one try each, no retry
    assert [info.key async for info in store.list("outputs/j_proto/")] == [
        f"outputs/j_proto/{i:05d}.png" for i in range(4)
    ]


async def test_a_rerun_writes_a_missing_thumbnail_and_leaves_an_existing_one_alone(rig: Rig, tmp_path: Path) -> None:
    chunk = make_chunk(2, concurrency=2)
    await rig.run(chunk)
    kept = tmp_path / "store" / "outputs/j_proto/00000.thumb.webp"
    kept_at = (await asyncio.to_thread(kept.stat)).st_mtime_ns
    await rig.store.delete("outputs/j_proto/00001.thumb.webp")  # as for an output made before thumbnails

    again = await rig.run(chunk)

    assert all(isinstance(r, ItemOk) and r.skipped for r in again.results)
    assert (await asyncio.to_thread(kept.stat)).st_mtime_ns == kept_at
    with Image.open(io.BytesIO(await rig.store.get_bytes("outputs/j_proto/00001.thumb.webp"))) as image:
        assert image.format == "WEBP"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_manifest_shows_the_code_and_its_message_not_the_exception_when_gemini_is_unreachable(
    tmp_path: Path,
) -> None:
    # aiohttp's connection error names the host and port and reprs the SSL context ("<ssl.SSLContext object at 0x…>").
    generator = await asyncio.to_thread(
        GeminiImageGenerator, api_key="local-key", base_url=f"http://127.0.0.1:{closed_port()}", max_attempts=1
    )
    async with generator as gen:
        deps = WorkerDeps(store=FileStore(tmp_path / "store"), generator=gen)
        output = await make_handler(deps)({"id": "rp-proto", "input": make_chunk(1, concurrency=1)})
    [error] = ChunkResult.model_validate(output).results
    assert isinstance(error, ItemError) and error.code is ErrorCode.UPSTREAM

    job = batch_job()
    # What the dispatcher records for a failed item: the worker's code and message.
    item = models.Item(
        job_id=job.id,
        index=0,
        inputs=models.ItemInputs(source_name="in/0.png"),
        prompt=None,
        seed=0,
        output_key="outputs/j_proto/00000.png",
        status=models.ItemStatus.ERROR,
        attempts=4,
        error_code=error.code.value,
        error_message=error.message,
        retry_at=None,
        chunk_id=None,
        width=None,
        height=None,
    )
    rows = [item_row(job, item)]
    header = ManifestHeader(job_id=job.id, prompt=job.prompt, model=job.params.model, created_at=job.created_at)
    [csv_row] = list(csv.DictReader(io.StringIO(render_csv(rows), newline="")))
    [json_row] = json.loads(render_json(header, rows))["items"]

    for shown in (csv_row, json_row):
        assert (shown["error_code"], shown["error_reason"]) == ("UPSTREAM", item_error_message("UPSTREAM"))
        text = json.dumps(shown)
        assert "127.0.0.1" not in text and "0x" not in text and "<" not in text


async def test_each_item_carries_the_usage_the_local_gemini_reported_and_a_blocked_one_its_prompt_tokens(
    rig: Rig,
) -> None:
    # gemini-2.5-flash-image: the prompt's text at ~4 characters a token (https://ai.google.dev/gemini-api/docs/tokens),
    # a 1K image of 1290 output tokens (https://ai.google.dev/gemini-api/docs/pricing), no text asked, no thinking.
    chunk = make_chunk(3, concurrency=3, blocked=frozenset({1}))

    result = await rig.run(chunk)

    made, blocked = result.results[0], result.results[1]
    assert isinstance(made, ItemOk) and isinstance(blocked, ItemError)
    prompt_tokens = math.ceil(len("a harbour at night, take 0") / 4)
    assert made.usage == TokenUsage(prompt_tokens=prompt_tokens, output_tokens=1290, image_output_tokens=1290)
    assert blocked.code is ErrorCode.SAFETY
    assert blocked.usage is not None
    assert blocked.usage.prompt_tokens == math.ceil(len(f"a {BLOCK_WORD} thing, take 1") / 4)
    assert blocked.usage.output_tokens == 0 and not blocked.usage.image_output_tokens

    again = await rig.run(chunk)

    skipped = again.results[0]
    assert isinstance(skipped, ItemOk) and skipped.skipped and skipped.usage is None  # no call, nothing billed


async def test_an_image_made_but_not_stored_still_reports_what_gemini_billed(rig: Rig, tmp_path: Path) -> None:
    class NoWrites(FileStore):
        async def put(self, key: str, body: Body, *, content_type: str | None = None) -> ObjectInfo:
            raise StorageUnavailableError("down")

    deps = replace(rig.deps, store=NoWrites(tmp_path / "store"))
    output = await make_handler(deps)({"id": "rp-proto", "input": make_chunk(1, concurrency=1)})

    error = ChunkResult.model_validate(output).results[0]
    assert isinstance(error, ItemError) and error.code is ErrorCode.STORAGE
    assert error.usage is not None and error.usage.image_output_tokens == 1290
