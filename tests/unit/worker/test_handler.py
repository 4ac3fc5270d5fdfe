"""The RunPod handler with a fake ImageGenerator and the memory store: concurrency, skips, references, progress,
errors, cancellation and the PNGs it writes."""

import asyncio
import io
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from PIL import Image

from storage import ObjectInfo, StorageUnavailableError
from storage.base import Body
from storage.keys import THUMB_SUFFIX
from storage.memory import MemoryStore
from worker.contract import ChunkResult, ErrorCode, ItemError, ItemOk, stop_key
from worker.errors import GenerationError
from worker.generation import GeneratedImage, GenerationRequest
from worker.handler import WorkerDeps, make_handler


async def settle(done: Callable[[], bool], *, timeout_s: float = 10.0) -> None:
    """Let the chunk run until `done()` holds (reads of references go through threads, slower on a busy machine)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not done() and loop.time() < deadline:  # noqa: ASYNC110 (the rig's state has no event to wait on)
        await asyncio.sleep(0.001)
    for _ in range(50):  # and a little longer, for whatever else would (wrongly) start
        await asyncio.sleep(0)


def make_image_bytes(fmt: str = "PNG", size: tuple[int, int] = (8, 8), color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format=fmt)
    return out.getvalue()


@dataclass
class FakeClock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    sleeps: list[float] = field(default_factory=list)


@dataclass
class FakeGenerator:
    """Answers with a small PNG (or `fmt`); `BLOCK` in a prompt is a safety block, `BUG` a bug."""

    clock: FakeClock | None = None
    step_s: float = 0.0
    fmt: str = "PNG"
    gate: asyncio.Event | None = None
    requests: list[GenerationRequest] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    cancelled: int = 0

    async def generate(self, request: GenerationRequest) -> GeneratedImage:
        self.requests.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(3):
                await asyncio.sleep(0)
            if self.gate is not None:
                await self.gate.wait()
            if self.clock is not None:
                self.clock.now += self.step_s
            if "BLOCK" in request.prompt:
                raise GenerationError(ErrorCode.SAFETY, "blocked by Gemini: PROHIBITED_CONTENT")
            if "BUG" in request.prompt:
                raise RuntimeError("a bug in the generator")
            mime = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}[self.fmt]
            return GeneratedImage(data=make_image_bytes(self.fmt, (16, 12)), mime_type=mime, note="here you go")
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads: dict[str, int] = {}

    async def get_bytes(self, key: str) -> bytes:
        self.reads[key] = self.reads.get(key, 0) + 1
        return await super().get_bytes(key)


class OutageStore(CountingStore):
    """A store whose writes fail as unavailable: the next `failing_puts` ones, or all once `down_after` are made."""

    def __init__(self) -> None:
        super().__init__()
        self.failing_puts = 0
        self.down_after: int | None = None
        self.puts = 0
        self.written: list[bytes] = []

    @property
    def is_down(self) -> bool:
        return self.failing_puts > 0 or (self.down_after is not None and len(self.written) >= self.down_after)

    async def put(self, key: str, body: Body, *, content_type: str | None = None) -> ObjectInfo:
        if key.endswith(THUMB_SUFFIX):  # a thumbnail fails while the store is down, but is not what is counted
            if self.is_down:
                raise StorageUnavailableError("file store I/O failed: Read-only file system")
            return await super().put(key, body, content_type=content_type)
        self.puts += 1
        if self.is_down:
            self.failing_puts = max(0, self.failing_puts - 1)
            raise StorageUnavailableError("file store I/O failed: Read-only file system")
        assert isinstance(body, bytes)
        self.written.append(body)
        return await super().put(key, body, content_type=content_type)


@dataclass
class ProgressLog:
    clock: FakeClock
    sent: list[tuple[float, dict[str, object]]] = field(default_factory=list)

    def __call__(self, job: Any, payload: dict[str, object]) -> None:
        assert job["id"] == "rp-1"
        self.sent.append((self.clock.now, payload))


def make_chunk(
    n: int = 3, *, concurrency: int = 4, prompt: Callable[[int], str] | None = None, **item: Any
) -> dict[str, Any]:
    return {
        "schema": 1,
        "job_id": "j_test",
        "chunk": 0,
        "model": "gemini-2.5-flash-image",
        "concurrency": concurrency,
        "items": [
            {
                "index": i,
                "prompt": prompt(i) if prompt else f"a fox, take {i}",
                "seed": 10 + i,
                "output_key": f"outputs/j_test/{i:05d}.png",
                **item,
            }
            for i in range(n)
        ],
    }


@dataclass
class Rig:
    store: CountingStore
    generator: FakeGenerator
    clock: FakeClock
    progress: ProgressLog

    def deps(self, **overrides: Any) -> WorkerDeps:
        kwargs: dict[str, Any] = {
            "store": self.store,
            "generator": self.generator,
            "progress": self.progress,
            "clock": self.clock,
            "sleep": self.clock.sleep,
        }
        return WorkerDeps(**(kwargs | overrides))

    async def run(self, chunk: dict[str, Any], **overrides: Any) -> dict[str, object]:
        return await make_handler(self.deps(**overrides))({"id": "rp-1", "input": chunk})


@pytest.fixture
def rig() -> Rig:
    clock = FakeClock()
    return Rig(CountingStore(), FakeGenerator(clock=clock), clock, ProgressLog(clock))


def parse(output: dict[str, object]) -> ChunkResult:
    assert "error" not in output, output
    return ChunkResult.model_validate(output)


async def test_every_item_is_stored_as_png_when_the_chunk_succeeds(rig: Rig) -> None:
    result = parse(await rig.run(make_chunk(3)))

    assert (result.ok, result.failed) == (3, 0)
    assert [r.index for r in result.results] == [0, 1, 2]
    for r in result.results:
        assert isinstance(r, ItemOk)
        assert (r.width, r.height, r.skipped, r.note) == (16, 12, False, "here you go")
        assert (await rig.store.head(r.key)) is not None


async def test_concurrency_never_exceeds_the_chunks_limit_when_many_items(rig: Rig) -> None:
    result = parse(await rig.run(make_chunk(10, concurrency=3)))

    assert result.ok == 10
    assert rig.generator.max_in_flight == 3


async def test_stored_png_carries_prompt_seed_model_and_job_id_when_written(rig: Rig) -> None:
    chunk = make_chunk(1, prompt=lambda i: "un renard rusé 🦊 sous la neige", aspect_ratio="1:1")

    await rig.run(chunk)

    data = await rig.store.get_bytes("outputs/j_test/00000.png")
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        image.load()
        text = dict(image.text)  # type: ignore[attr-defined]  # PngImageFile has .text
    assert text["prompt"] == "un renard rusé 🦊 sous la neige"
    assert text["seed"] == "10"
    assert text["model"] == "gemini-2.5-flash-image"
    assert text["job_id"] == "j_test"
    assert text["runpod_job_id"] == "rp-1"
    assert text["aspect_ratio"] == "1:1"


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
async def test_output_is_converted_to_png_when_the_model_returns_another_format(rig: Rig, fmt: str) -> None:
    rig.generator.fmt = fmt

    result = parse(await rig.run(make_chunk(1)))

    data = await rig.store.get_bytes("outputs/j_test/00000.png")
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (16, 12)
        assert image.text["job_id"] == "j_test"  # type: ignore[attr-defined]  # PngImageFile has .text
    assert isinstance(result.results[0], ItemOk)


async def test_item_fails_no_image_when_the_model_returns_undecodable_bytes(rig: Rig) -> None:
    class Garbage(FakeGenerator):
        async def generate(self, request: GenerationRequest) -> GeneratedImage:
            return GeneratedImage(data=b"\x89PNG\r\n\x1a\nnot really", mime_type="image/png")

    rig.generator = Garbage()

    result = parse(await rig.run(make_chunk(1)))

    error = result.results[0]
    assert isinstance(error, ItemError)
    assert (error.code, error.retryable) == (ErrorCode.NO_IMAGE, True)
    assert not await rig.store.exists("outputs/j_test/00000.png")


async def test_existing_output_is_skipped_with_its_real_size_when_the_chunk_is_rerun(rig: Rig) -> None:
    await rig.store.put("outputs/j_test/00001.png", make_image_bytes("PNG", (40, 30)))

    result = parse(await rig.run(make_chunk(3)))

    skipped = result.results[1]
    assert isinstance(skipped, ItemOk)
    assert (skipped.skipped, skipped.width, skipped.height) == (True, 40, 30)
    assert [r.prompt for r in rig.generator.requests] == ["a fox, take 0", "a fox, take 2"]


async def test_rerun_makes_no_generation_when_every_output_exists(rig: Rig) -> None:
    parse(await rig.run(make_chunk(4)))
    calls = len(rig.generator.requests)

    again = parse(await rig.run(make_chunk(4)))

    assert len(rig.generator.requests) == calls == 4
    assert all(isinstance(r, ItemOk) and r.skipped for r in again.results)


async def test_non_png_object_at_output_key_is_regenerated_when_found(rig: Rig) -> None:
    await rig.store.put("outputs/j_test/00000.png", b"junk")

    result = parse(await rig.run(make_chunk(1)))

    assert isinstance(result.results[0], ItemOk) and not result.results[0].skipped
    assert len(rig.generator.requests) == 1


async def test_shared_reference_is_read_once_when_many_items_use_it(rig: Rig) -> None:
    ref = make_image_bytes("JPEG", (20, 20), "blue")
    await rig.store.put("inputs/ref.jpg", ref)

    result = parse(await rig.run(make_chunk(8, concurrency=8, ref_keys=["inputs/ref.jpg"])))

    assert result.ok == 8
    assert rig.store.reads == {"inputs/ref.jpg": 1}
    assert all(r.references[0].data == ref for r in rig.generator.requests)
    assert {r.references[0].mime_type for r in rig.generator.requests} == {"image/jpeg"}


async def test_next_items_are_ready_but_at_most_concurrency_ahead_when_every_slot_is_busy(rig: Rig) -> None:
    for i in range(10):
        await rig.store.put(f"inputs/ref-{i}.png", make_image_bytes(color=f"#{i:02x}0000"))
    chunk = make_chunk(10, concurrency=2)
    for i, item in enumerate(chunk["items"]):
        item["ref_keys"] = [f"inputs/ref-{i}.png"]
    rig.generator.gate = asyncio.Event()
    task = asyncio.create_task(rig.run(chunk))
    await settle(lambda: rig.generator.in_flight == 2 and len(rig.store.reads) >= 4)

    # Two calls hold the slots; the next two items have their references read, and no more.
    assert rig.generator.in_flight == 2
    assert sorted(rig.store.reads) == [f"inputs/ref-{i}.png" for i in range(4)]
    rig.generator.gate.set()
    assert parse(await task).ok == 10
    assert rig.generator.max_in_flight == 2


async def test_only_items_using_a_missing_reference_fail_bad_input_when_it_is_absent(rig: Rig) -> None:
    chunk = make_chunk(3)
    chunk["items"][1]["ref_keys"] = ["inputs/missing.png"]
    chunk["items"][2]["ref_keys"] = ["inputs/missing.png"]

    result = parse(await rig.run(chunk))

    assert (result.ok, result.failed) == (1, 2)
    for error in result.results[1:]:
        assert isinstance(error, ItemError)
        assert (error.code, error.retryable) == (ErrorCode.BAD_INPUT, False)
        assert "inputs/missing.png" in error.message
    assert len(rig.generator.requests) == 1


async def test_item_fails_bad_input_when_its_reference_is_not_an_image(rig: Rig) -> None:
    await rig.store.put("inputs/notes.png", b"hello, not an image")

    result = parse(await rig.run(make_chunk(1, ref_keys=["inputs/notes.png"])))

    error = result.results[0]
    assert isinstance(error, ItemError) and error.code is ErrorCode.BAD_INPUT
    assert "not a PNG, JPEG or WebP" in error.message


async def test_edit_source_and_history_reach_the_generator_when_the_item_is_an_edit(rig: Rig) -> None:
    source = make_image_bytes("PNG", (10, 10))
    await rig.store.put("outputs/j_prev/00000.png", source)
    chunk = make_chunk(1, edit={"source_key": "outputs/j_prev/00000.png", "history": ["make it red"]})

    parse(await rig.run(chunk))

    request = rig.generator.requests[0]
    assert request.edit_source is not None and request.edit_source.data == source
    assert request.history == ("make it red",)


async def test_safety_block_fails_only_its_item_when_the_chunk_completes(rig: Rig) -> None:
    output = await rig.run(make_chunk(3, prompt=lambda i: "BLOCK me" if i == 1 else f"fine {i}"))

    result = parse(output)
    assert (result.ok, result.failed) == (2, 1)
    blocked = result.results[1]
    assert isinstance(blocked, ItemError)
    assert (blocked.code, blocked.retryable) == (ErrorCode.SAFETY, False)
    assert "PROHIBITED_CONTENT" in blocked.message
    assert not await rig.store.exists("outputs/j_test/00001.png")


async def test_bad_input_is_a_top_level_error_naming_the_fields_when_invalid(rig: Rig) -> None:
    chunk = make_chunk(2, concurrency=0)
    del chunk["items"][1]["output_key"]

    output = await rig.run(chunk)

    assert set(output) == {"error"}
    error = str(output["error"])
    assert error.startswith("BAD_INPUT: ")
    assert "concurrency" in error
    assert "items.1.output_key" in error
    assert rig.generator.requests == []


@pytest.mark.parametrize("job", [{"id": "rp-1"}, {"id": "rp-1", "input": "nope"}])
async def test_bad_input_is_a_top_level_error_when_the_input_is_not_an_object(rig: Rig, job: dict[str, Any]) -> None:
    output = await make_handler(rig.deps())(job)

    assert str(output["error"]).startswith("BAD_INPUT: input:")


async def test_bad_input_is_a_top_level_error_when_two_items_share_an_output_key(rig: Rig) -> None:
    chunk = make_chunk(2)
    chunk["items"][1]["output_key"] = chunk["items"][0]["output_key"]

    output = await rig.run(chunk)

    assert output == {"error": "BAD_INPUT: items.output_key: duplicate value(s) outputs/j_test/00000.png"}


async def test_bad_input_does_not_echo_the_prompt_when_it_is_too_long(rig: Rig) -> None:
    output = await rig.run(make_chunk(1, prompt=lambda i: "secret " * 2000))

    assert "secret" not in str(output["error"])
    assert "items.0.prompt" in str(output["error"])


async def test_bug_in_the_generator_raises_when_it_is_not_a_worker_error(rig: Rig) -> None:
    with pytest.raises(RuntimeError, match="a bug in the generator"):
        await rig.run(make_chunk(3, prompt=lambda i: "BUG" if i == 0 else f"fine {i}"))


async def test_progress_is_throttled_and_never_for_the_last_item_when_items_finish(rig: Rig) -> None:
    rig.generator.step_s = 0.4

    parse(await rig.run(make_chunk(10, concurrency=1)))

    times = [t for t, _ in rig.progress.sent]
    payloads = [p for _, p in rig.progress.sent]
    assert len(payloads) >= 3
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(times))
    assert all(p["type"] == "progress" and p["total"] == 10 for p in payloads)
    assert all(int(str(p["done"])) < 10 for p in payloads)
    assert [len(p["results"]) for p in payloads] == [p["done"] for p in payloads]  # type: ignore[arg-type]


async def test_handler_waits_for_a_recent_progress_update_to_settle_when_returning(rig: Rig) -> None:
    rig.generator.step_s = 0.0  # all items finish at the same instant: the first sends progress, then return

    parse(await rig.run(make_chunk(2, concurrency=1), progress_settle_s=0.25))

    assert len(rig.progress.sent) == 1
    assert rig.clock.sleeps == [pytest.approx(0.25)]


async def test_no_progress_is_sent_when_the_chunk_has_one_item(rig: Rig) -> None:
    parse(await rig.run(make_chunk(1)))

    assert rig.progress.sent == []
    assert rig.clock.sleeps == []


async def test_failing_progress_sink_does_not_fail_the_chunk_when_it_raises(rig: Rig) -> None:
    def broken(job: Any, payload: dict[str, object]) -> None:
        raise OSError("platform unreachable")

    result = parse(await rig.run(make_chunk(3), progress=broken))

    assert result.ok == 3


async def test_cancellation_propagates_and_leaves_no_half_results_when_stopped(rig: Rig) -> None:
    gate = asyncio.Event()
    chunk = make_chunk(6, concurrency=2)
    # Two items finish, then the next two hang in Gemini until the job is stopped.
    await rig.store.put("outputs/j_test/00000.png", make_image_bytes())
    await rig.store.put("outputs/j_test/00001.png", make_image_bytes())
    rig.generator.gate = gate
    task = asyncio.create_task(rig.run(chunk))
    await settle(lambda: rig.generator.in_flight == 2)
    assert rig.generator.in_flight == 2
    sent_before = len(rig.progress.sent)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert rig.generator.cancelled == 2
    assert rig.generator.in_flight == 0
    assert len(rig.generator.requests) == 2
    keys = [info.key async for info in rig.store.list("outputs/") if not info.key.endswith(THUMB_SUFFIX)]
    assert keys == ["outputs/j_test/00000.png", "outputs/j_test/00001.png"]
    assert len(rig.progress.sent) == sent_before


async def test_write_is_retried_with_the_same_image_when_the_store_fails_briefly(rig: Rig) -> None:
    store = OutageStore()
    store.failing_puts = 3  # three failed writes in a row, then the store is back

    result = parse(await rig.run(make_chunk(6, concurrency=2), store=store))

    assert (result.ok, result.failed) == (6, 0)
    assert len(rig.generator.requests) == 6  # no image was generated twice for a failed write
    assert store.puts == 9
    backoffs = rig.clock.sleeps[:3]  # then the progress settle
    assert [0.5 <= s / 2**i < 1.5 for i, s in enumerate(backoffs)] == [True] * 3  # exponential, with jitter


async def test_outage_costs_at_most_the_calls_in_flight_and_all_items_are_made_when_the_store_returns(
    rig: Rig,
) -> None:
    n, concurrency = 40, 4
    store = OutageStore()
    store.down_after = 10  # ten images written, then the store refuses every write until it is repaired
    chunk = make_chunk(n, concurrency=concurrency)

    first = parse(await rig.run(chunk, store=store))

    # Images lost to the outage: made by Gemini but never written. At most the calls in flight when it began.
    extra_calls = len(rig.generator.requests) - first.ok
    assert extra_calls <= concurrency
    failed = [r for r in first.results if isinstance(r, ItemError)]
    assert first.ok == 10
    assert {(r.code, r.retryable) for r in failed} == {(ErrorCode.STORAGE, True)}

    store.down_after = None  # the store is back; the bot runs the chunk again for the items it got back
    second = parse(await rig.run(chunk, store=store))

    assert (second.ok, second.failed) == (n, 0)
    assert len(rig.generator.requests) - n <= concurrency


async def test_no_gemini_call_starts_after_the_stop_marker_and_the_calls_in_flight_are_kept(rig: Rig) -> None:
    rig.generator.gate = asyncio.Event()
    task = asyncio.create_task(rig.run(make_chunk(10, concurrency=3)))
    await settle(lambda: rig.generator.in_flight == 3)
    assert rig.generator.in_flight == 3
    await rig.store.put(stop_key("j_test"), b"paused")
    rig.generator.gate.set()

    result = parse(await task)

    assert len(rig.generator.requests) == 3  # the three calls in flight at the pause, no more
    made = [r for r in result.results if isinstance(r, ItemOk)]
    stopped = [r for r in result.results if isinstance(r, ItemError)]
    assert [r.index for r in made] == [0, 1, 2]
    assert [await rig.store.exists(r.key) for r in made] == [True] * 3
    assert [r.index for r in stopped] == list(range(3, 10))
    assert {(r.code, r.retryable) for r in stopped} == {(ErrorCode.STOPPED, True)}


async def test_a_chunk_that_starts_after_the_stop_marker_makes_nothing(rig: Rig) -> None:
    await rig.store.put(stop_key("j_test"), b"paused")

    result = parse(await rig.run(make_chunk(5)))

    assert rig.generator.requests == []
    assert (result.ok, result.failed) == (0, 5)


async def test_another_jobs_stop_marker_stops_nothing(rig: Rig) -> None:
    await rig.store.put(stop_key("j_other"), b"paused")

    assert parse(await rig.run(make_chunk(3))).ok == 3
