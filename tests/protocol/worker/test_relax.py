"""The relax job kinds through the handler, with the real Gemini adapter against the local server's Files API.

relax_prepare's JSONL and shared references are read back from the server's files; relax_collect reads a result
file planted as the server's Batch API would leave it (`FileStore.add_generated`), one line per kind of answer.
"""

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from blockbuster import BlockBuster
from PIL import Image

from local.gemini.server import LocalGemini
from storage import StorageUnavailableError
from storage.file import FileStore
from storage.keys import THUMB_MAX_PX, thumb_key
from storage.memory import MemoryStore
from tests.protocol.worker.test_gemini_generator import noise_png as noise_image
from worker.contract import ChunkResult, ErrorCode, ItemError, ItemOk, RelaxPrepareResult, TokenUsage
from worker.gemini import GeminiImageGenerator
from worker.handler import WorkerDeps, make_handler

MODEL = "gemini-2.5-flash-image"
PRO = "gemini-3-pro-image-preview"


def png(color: tuple[int, int, int], size: int = 16) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), color).save(out, format="PNG")
    return out.getvalue()


def noise_png(side: int, seed: int) -> bytes:
    return noise_image(side, seed).data


@dataclass
class Rig:
    gemini: LocalGemini
    store: FileStore
    root: Path
    deps: WorkerDeps

    async def run(self, payload: dict[str, Any], **overrides: Any) -> dict[str, Any]:
        deps = WorkerDeps(**{**{f: getattr(self.deps, f) for f in self.deps.__dataclass_fields__}, **overrides})
        return await make_handler(deps)({"id": "rp-relax", "input": payload})

    async def file(self, name: str) -> bytes:
        """Return the bytes of a file the server holds (uploaded files cannot be downloaded through the API)."""
        stored = self.gemini.files.get(name.removeprefix("files/"))
        # Read by name, not attribute: the server keeps the bytes in memory (`data`) or on disk (`path`).
        path: Path | None = getattr(stored, "path", None)
        if path is not None:
            return await asyncio.to_thread(path.read_bytes)
        return bytes(getattr(stored, "data"))  # noqa: B009

    async def plant(self, lines: list[dict[str, Any] | bytes]) -> str:
        """Store a result file as the server's Batch API leaves one, and return its name."""
        raw = [line if isinstance(line, bytes) else json.dumps(line).encode() for line in lines]
        add = self.gemini.files.add_generated
        return "files/" + (await asyncio.to_thread(add, [b"\n".join(raw) + b"\n"], "application/jsonl")).file_id


@pytest.fixture
async def rig(tmp_path: Path, blockbuster: BlockBuster | None) -> AsyncIterator[Rig]:
    if blockbuster is not None:
        # google-genai's upload stats the file once on the loop for its size, then reads it through anyio.
        blockbuster.functions["os.stat"].can_block_in("google/genai/_extra_utils.py", "prepare_resumable_upload")
    async with LocalGemini(port=0) as gemini:
        generator = await asyncio.to_thread(GeminiImageGenerator, api_key="local-key", base_url=gemini.url)
        async with generator as gen:
            store = FileStore(tmp_path / "store")
            deps = WorkerDeps(store=store, generator=gen, files=gen, relax_dir=str(tmp_path), progress_interval_s=0.1)
            yield Rig(gemini, store, tmp_path / "store", deps)


def prepare_input(items: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"kind": "relax_prepare", "job_id": "j_relax", "part": 0, "model": MODEL, "items": items} | extra


def item(index: int, *refs: str) -> dict[str, Any]:
    return {
        "index": index,
        "prompt": f"a lighthouse, take {index}",
        "ref_keys": list(refs),
        "aspect_ratio": "1:1",
        "seed": index,
        "output_key": f"out/j_relax/{index}.png",
    }


async def test_prepare_uploads_one_line_per_item_and_each_shared_reference_once(rig: Rig) -> None:
    shared, alone = png((200, 0, 0)), png((0, 200, 0))
    await rig.store.put("refs/shared.png", shared)
    await rig.store.put("refs/alone.png", alone)
    items = [
        item(0, "refs/shared.png"),
        item(1, "refs/shared.png", "refs/alone.png"),
        item(2),
        item(3, "refs/missing.png"),
    ]
    out = RelaxPrepareResult.model_validate(await rig.run(prepare_input(items)))
    assert out.included == [0, 1, 2]
    assert [(r.index, r.code) for r in out.results] == [(3, ErrorCode.BAD_INPUT)]
    assert out.file_name is not None and len(out.ref_files) == 1
    # The server holds exactly the JSONL and the one shared reference.
    listed = {f"files/{f.file_id}": f for f in rig.gemini.files.listed()}
    assert set(listed) == {out.file_name, *out.ref_files}
    assert await rig.file(out.ref_files[0]) == shared
    assert listed[out.file_name].mime_type == "jsonl" and listed[out.file_name].display_name == "peel-j_relax-0"
    body = await rig.file(out.file_name)
    assert out.file_bytes == len(body)
    lines = [json.loads(line) for line in body.splitlines()]
    assert [line["key"] for line in lines] == ["0", "1", "2"]
    ref_uri = listed[out.ref_files[0]].resource(rig.gemini.url, "v1beta")["uri"]
    parts = [line["request"]["contents"][0]["parts"] for line in lines]
    assert parts[0][1] == {"fileData": {"fileUri": ref_uri, "mimeType": "image/png"}}
    assert parts[1][1]["fileData"]["fileUri"] == ref_uri
    assert base64.b64decode(parts[1][2]["inlineData"]["data"]) == alone  # used once: inlined
    assert parts[2] == [{"text": "a lighthouse, take 2"}]
    assert lines[2]["request"]["generationConfig"] == {
        "seed": 2,
        "responseModalities": ["IMAGE"],
        "imageConfig": {"aspectRatio": "1:1"},
    }


async def test_prepare_leaves_out_the_lines_that_do_not_fit(rig: Rig) -> None:
    items = [item(0), item(1), item(2)]
    first = RelaxPrepareResult.model_validate(await rig.run(prepare_input(items)))
    one_line = first.file_bytes // 3 + 5
    out = RelaxPrepareResult.model_validate(await rig.run(prepare_input(items, max_file_bytes=one_line)))
    assert (out.included, out.results) == ([0], [])
    assert out.file_name is not None and len((await rig.file(out.file_name)).splitlines()) == 1


async def test_prepare_refuses_too_large_requests_as_the_online_call_does(rig: Rig) -> None:
    for i in range(3):
        await rig.store.put(f"refs/noise{i}.png", noise_png(1400, i))  # 3 x 5.9 MB: 23.5 MB as base64
    too_large = {**item(0, *(f"refs/noise{i}.png" for i in range(3)))}
    out = RelaxPrepareResult.model_validate(await rig.run(prepare_input([too_large], model=PRO)))
    assert out.file_name is None and out.included == []
    assert [(r.index, r.code, r.retryable) for r in out.results] == [(0, ErrorCode.TOO_LARGE, False)]
    assert rig.gemini.files.listed() == []


class DownStore(MemoryStore):
    async def head(self, key: str) -> Any:
        raise StorageUnavailableError("down")


async def test_prepare_answers_a_store_outage_as_retryable_storage_errors(rig: Rig) -> None:
    async def no_sleep(_: float) -> None:
        return None

    items = [item(0, "refs/a.png"), item(1, "refs/a.png"), item(2, "refs/b.png"), item(3)]
    out = RelaxPrepareResult.model_validate(await rig.run(prepare_input(items), store=DownStore(), sleep=no_sleep))
    assert out.file_name is None and out.included == []
    assert [(r.index, r.code, r.retryable) for r in out.results] == [
        (0, ErrorCode.STORAGE, True),
        (1, ErrorCode.STORAGE, True),
        (2, ErrorCode.STORAGE, True),
        (3, ErrorCode.STORAGE, True),  # needs no reference, but the part goes again in one piece
    ]
    assert rig.gemini.files.listed() == []


def answer(image: bytes, text: str | None = None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"inlineData": {"mimeType": "image/png", "data": base64.b64encode(image).decode()}}]
    if text:
        parts.insert(0, {"text": text})
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}],
        "modelVersion": MODEL,
    }


def collect_input(file_name: str, n: int) -> dict[str, Any]:
    return {
        "kind": "relax_collect",
        "job_id": "j_relax",
        "part": 0,
        "model": MODEL,
        "result_file": file_name,
        "items": [
            {"index": i, "output_key": f"out/j_relax/{i}.png", "prompt": f"a lighthouse, take {i}", "seed": i}
            for i in range(n)
        ],
    }


async def test_collect_maps_each_line_to_its_item_and_writes_the_images(rig: Rig) -> None:
    red, blue = png((255, 0, 0), 24), png((0, 0, 255), 24)
    name = await rig.plant(
        [
            {"key": "0", "response": answer(red, "here it is")},
            {"key": "1", "response": {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}},
            {"key": "2", "error": {"code": 8, "message": "quota exhausted", "status": "RESOURCE_EXHAUSTED"}},
            {
                "key": "3",
                "response": {"candidates": [{"content": {"parts": [{"text": "no"}]}, "finishReason": "STOP"}]},
            },
            {"key": "0", "response": answer(blue)},  # a duplicate key: the first line counts
            {"key": "1", "response": answer(blue)},  # even when the first was no image
            {"error": {"code": 13, "message": "internal"}, "key": "5"},  # the key last: found by parsing the line
            b"not JSON at all",
            {"key": "99", "response": answer(blue)},  # not an item of the part
            b"",
        ]
    )
    sent: list[dict[str, object]] = []
    output = await rig.run(collect_input(name, 6), progress=lambda job, payload: sent.append(payload))
    result = ChunkResult.model_validate(output)
    by_index = {r.index: r for r in result.results}
    assert isinstance(ok := by_index[0], ItemOk) and (ok.width, ok.height, ok.note) == (24, 24, "here it is")
    codes = {i: r.code for i, r in by_index.items() if isinstance(r, ItemError)}
    assert codes == {
        1: ErrorCode.SAFETY,
        2: ErrorCode.RATE_LIMITED,
        3: ErrorCode.NO_IMAGE,
        4: ErrorCode.UPSTREAM,
        5: ErrorCode.UPSTREAM,
    }
    assert "missing from the batch's results" in by_index[4].message  # type: ignore[union-attr]
    assert (result.ok, result.failed) == (1, 5)
    assert sent and sent[0]["type"] == "progress" and sent[0]["total"] == 6  # the first result goes out at once
    stored = await rig.store.get_bytes("out/j_relax/0.png")
    with Image.open(io.BytesIO(stored)) as image:
        assert image.getpixel((0, 0)) == (255, 0, 0)  # the first line's image, not the duplicate's
        assert image.text["prompt"] == "a lighthouse, take 0" and image.text["mode"] == "relax"  # type: ignore[attr-defined]
        assert image.text["seed"] == "0" and image.text["job_id"] == "j_relax"  # type: ignore[attr-defined]
    assert not await rig.store.exists("out/j_relax/1.png")
    with Image.open(io.BytesIO(await rig.store.get_bytes(thumb_key("out/j_relax/0.png")))) as thumb:
        assert (thumb.format, thumb.size) == ("WEBP", (24, 24))  # beside the image, of its size (never enlarged)
    assert not await rig.store.exists(thumb_key("out/j_relax/1.png"))


async def test_collect_writes_the_thumbnail_an_output_stored_before_lacks(rig: Rig) -> None:
    await rig.store.put("out/j_relax/0.png", png((5, 5, 5), 400))  # made before the worker wrote thumbnails
    name = await rig.plant([{"key": "0", "response": answer(png((5, 5, 5)))}])

    result = ChunkResult.model_validate(await rig.run(collect_input(name, 1)))

    assert isinstance(ok := result.results[0], ItemOk) and ok.skipped
    with Image.open(io.BytesIO(await rig.store.get_bytes(thumb_key("out/j_relax/0.png")))) as thumb:
        assert (thumb.format, thumb.size) == ("WEBP", (THUMB_MAX_PX, THUMB_MAX_PX))


async def test_collect_again_writes_nothing_twice(rig: Rig) -> None:
    name = await rig.plant([{"key": str(i), "response": answer(png((i, 0, 0)))} for i in range(3)])
    first = ChunkResult.model_validate(await rig.run(collect_input(name, 3)))
    assert first.ok == 3 and not any(r.skipped for r in first.results if isinstance(r, ItemOk))
    path, thumb = rig.root / "out/j_relax/1.png", rig.root / "out/j_relax/1.thumb.webp"
    written_at = (await asyncio.to_thread(path.stat)).st_mtime_ns
    thumb_at = (await asyncio.to_thread(thumb.stat)).st_mtime_ns
    again = ChunkResult.model_validate(await rig.run(collect_input(name, 3)))
    assert again.ok == 3 and all(isinstance(r, ItemOk) and r.skipped for r in again.results)
    assert (await asyncio.to_thread(path.stat)).st_mtime_ns == written_at
    assert (await asyncio.to_thread(thumb.stat)).st_mtime_ns == thumb_at  # an existing thumbnail is left alone


async def test_collect_skips_a_stored_output_by_its_line_key_without_reading_the_rest(rig: Rig) -> None:
    await rig.store.put("out/j_relax/0.png", png((5, 5, 5)))
    name = await rig.plant([b'{"key":"0","response":{"candidates": [cut', b'{"key":"1","response":{"candidates": [cut'])
    result = ChunkResult.model_validate(await rig.run(collect_input(name, 2)))
    assert isinstance(result.results[0], ItemOk) and result.results[0].skipped
    failed = result.results[1]
    assert isinstance(failed, ItemError) and (failed.code, failed.message) == (
        ErrorCode.UPSTREAM,
        "its result line is not a JSON object",
    )


async def test_collect_fails_only_the_item_of_an_overlong_line(rig: Rig) -> None:
    big, small = png((0, 0, 0), 256), png((1, 1, 1), 8)
    name = await rig.plant([{"key": "0", "response": answer(big)}, {"key": "1", "response": answer(small)}])
    limit = len(json.dumps({"key": "1", "response": answer(small)})) + 10
    result = ChunkResult.model_validate(await rig.run(collect_input(name, 2), max_result_line_bytes=limit))
    assert isinstance(result.results[1], ItemOk)
    failed = result.results[0]
    assert (
        isinstance(failed, ItemError) and failed.code is ErrorCode.UPSTREAM and "result line is over" in failed.message
    )


async def test_collect_of_a_file_that_is_gone_fails_every_item_retryably(rig: Rig) -> None:
    result = ChunkResult.model_validate(await rig.run(collect_input("files/gone", 2)))
    assert [(r.code, r.retryable) for r in result.results if isinstance(r, ItemError)] == [
        (ErrorCode.UPSTREAM, True),
        (ErrorCode.UPSTREAM, True),
    ]


async def test_an_unusable_relax_input_is_refused_naming_the_fields(rig: Rig) -> None:
    output = await rig.run({"kind": "relax_collect", "job_id": "j", "part": 0, "model": MODEL, "items": []})
    assert str(output["error"]).startswith("BAD_INPUT: ")
    output = await rig.run(prepare_input([item(0), item(0)]))
    assert "duplicate" in str(output["error"])


class StuckStore(MemoryStore):
    """A store whose writes never finish until cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = asyncio.Event()
        self.cancelled = 0

    async def put(self, key: str, body: Any, *, content_type: str | None = None) -> Any:
        self.writing.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


async def test_a_cancelled_collect_stops_its_lines_in_flight(rig: Rig) -> None:
    name = await rig.plant([{"key": str(i), "response": answer(png((i, 0, 0)))} for i in range(3)])
    store = StuckStore()
    run = asyncio.create_task(rig.run(collect_input(name, 3), store=store, relax_concurrency=1))
    await asyncio.wait_for(store.writing.wait(), 10)
    run.cancel()
    await asyncio.wait({run}, timeout=10)  # the download waits for a slot: the line holding it must be stopped
    assert run.cancelled() and store.cancelled >= 1
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("relax-line")] == []


async def test_collect_reports_each_lines_usage_and_none_for_an_error_line(rig: Rig) -> None:
    made = {
        **answer(png((9, 9, 9))),
        "usageMetadata": {
            "promptTokenCount": 11,
            "candidatesTokenCount": 1290,
            "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}],
        },
    }
    blocked = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 7}}
    name = await rig.plant(
        [
            {"key": "0", "response": made},
            {"key": "1", "response": blocked},
            {"key": "2", "error": {"code": 13, "message": "internal"}},
        ]
    )

    result = ChunkResult.model_validate(await rig.run(collect_input(name, 3)))

    by_index = {r.index: r for r in result.results}
    assert by_index[0].usage == TokenUsage(prompt_tokens=11, output_tokens=1290, image_output_tokens=1290)
    assert by_index[1].usage == TokenUsage(prompt_tokens=7)  # a blocked prompt's input is billed
    assert by_index[2].usage is None  # no answer, nothing billed
