"""The worker's self-test job (`python -m bot doctor`) with the real Gemini adapter against the local Gemini server."""

import socket
from collections.abc import Callable

from local.gemini.server import LocalGemini
from storage.memory import MemoryStore
from worker.contract import ModelProblem, SelfTestInput, SelfTestResult
from worker.gemini import GeminiImageGenerator
from worker.handler import WorkerDeps, make_handler

MODEL = "gemini-2.5-flash-image"


async def test_a_known_model_is_available_and_costs_no_image(
    generator: GeminiImageGenerator, local_gemini: LocalGemini
) -> None:
    check = await generator.check_model(MODEL)
    assert check.problem is ModelProblem.OK
    assert local_gemini.stats.images == 0 and local_gemini.stats.requests == 0  # models.get, not generateContent


async def test_an_unknown_model_is_named_as_such(generator: GeminiImageGenerator) -> None:
    check = await generator.check_model("gemini-0-nonexistent")
    assert check.problem is ModelProblem.UNKNOWN_MODEL
    assert "404" in check.detail


async def test_a_wrong_key_is_named_as_refused_without_showing_it(
    make_generator: Callable[..., GeminiImageGenerator],
) -> None:
    check = await make_generator(api_key="wrong-key").check_model(MODEL)
    assert check.problem is ModelProblem.KEY_REFUSED
    assert "wrong-key" not in check.detail


async def test_a_dead_gemini_address_is_unreachable(make_generator: Callable[..., GeminiImageGenerator]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        check = await make_generator(base_url=f"http://127.0.0.1:{port}").check_model(MODEL)
    assert check.problem is ModelProblem.UNREACHABLE


async def test_the_handler_reads_the_bot_s_object_writes_its_own_and_checks_each_model(
    generator: GeminiImageGenerator,
) -> None:
    store = MemoryStore("memory://")
    await store.put("doctor/bot.txt", b"from the bot", content_type="text/plain")
    handler = make_handler(WorkerDeps(store=store, generator=generator, model_checker=generator))
    test = SelfTestInput(read_key="doctor/bot.txt", write_key="doctor/worker.txt", write_text="from the worker")
    test = test.model_copy(update={"models": [MODEL, "gemini-0-nonexistent"]})

    out = SelfTestResult.model_validate(await handler({"id": "st-1", "input": test.to_payload()}))

    assert out.schema_ == 1 and out.read_text == "from the bot" and out.wrote
    assert await store.get_bytes("doctor/worker.txt") == b"from the worker"
    assert [(m.model, m.problem) for m in out.models] == [
        (MODEL, ModelProblem.OK),
        ("gemini-0-nonexistent", ModelProblem.UNKNOWN_MODEL),
    ]


async def test_a_missing_object_is_reported_not_raised(generator: GeminiImageGenerator) -> None:
    handler = make_handler(WorkerDeps(store=MemoryStore("memory://"), generator=generator))
    test = SelfTestInput(read_key="doctor/absent.txt", write_key="doctor/w.txt", write_text="x")
    out = SelfTestResult.model_validate(await handler({"id": "st-2", "input": test.to_payload()}))
    assert out.read_text is None and out.read_error == "doctor/absent.txt is not in the worker's store"
    assert out.wrote


async def test_a_chunk_handler_refuses_an_unknown_kind_as_bad_input(generator: GeminiImageGenerator) -> None:
    # What an older worker, one that predates the self-test, answers: the bot reads it as "rebuild the image".
    handler = make_handler(WorkerDeps(store=MemoryStore("memory://"), generator=generator))
    out = await handler({"id": "st-3", "input": {"kind": "nonsense", "schema": 1}})
    assert str(out.get("error", "")).startswith("BAD_INPUT:")
