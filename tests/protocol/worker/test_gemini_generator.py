"""GeminiImageGenerator through the real google-genai SDK against local_gemini on 127.0.0.1."""

import asyncio
import hashlib
import io
import logging
import math
import random
import socket
from collections.abc import Callable

import pytest
from PIL import Image

from local.gemini.answers import THOUGHT_TOKENS
from local.gemini.drawing import draw_image
from local.gemini.server import LocalGemini
from tests.fakes.clock import Sleeps
from tests.protocol.worker.conftest import KEY
from worker.catalogue import ASPECT_RATIOS_10, MAX_REQUEST_BYTES, model_spec
from worker.contract import ErrorCode, TokenUsage
from worker.errors import GenerationError
from worker.gemini import GeminiImageGenerator, GeminiSettings, request_bytes
from worker.generation import GenerationRequest, InputImage

FLASH = "gemini-2.5-flash-image"
PRO = "gemini-3-pro-image-preview"
NB2 = "gemini-3.1-flash-image-preview"

MakeGenerator = Callable[..., GeminiImageGenerator]


def png(colour: tuple[int, int, int], size: tuple[int, int] = (48, 32)) -> InputImage:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return InputImage(data=out.getvalue(), mime_type="image/png")


def dims(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def request(prompt: str = "a lighthouse at dusk", **overrides: object) -> GenerationRequest:
    fields: dict[str, object] = {"model": FLASH, "prompt": prompt, "seed": 42}
    fields.update(overrides)
    return GenerationRequest(**fields)  # type: ignore[arg-type]  # test factory forwarding keyword arguments


async def failure(generator: GeminiImageGenerator, req: GenerationRequest) -> GenerationError:
    with pytest.raises(GenerationError) as info:
        await generator.generate(req)
    return info.value


async def test_generate_returns_a_png_when_prompt_is_plain(
    generator: GeminiImageGenerator, local_gemini: LocalGemini, sleeps: Sleeps
) -> None:
    image = await generator.generate(request())
    assert image.mime_type == "image/png"
    assert dims(image.data) == (1024, 1024)
    assert image.attempts == 1
    assert image.note is None
    sent = local_gemini.received[-1]
    assert (sent.api_version, sent.prompt, sent.seed, sent.images) == ("v1beta", "a lighthouse at dusk", 42, 0)
    assert sent.response_modalities == ("IMAGE",)
    assert local_gemini.stats.requests == 1
    assert sleeps.delays == []


async def test_generate_keeps_the_text_as_note_when_text_is_asked(make_generator: MakeGenerator) -> None:
    image = await make_generator(with_text=True).generate(request())
    assert image.note == "Here is the image you asked for."


@pytest.mark.parametrize("count", [1, 2, 3])
async def test_generate_sends_the_references_when_given(
    generator: GeminiImageGenerator, local_gemini: LocalGemini, count: int
) -> None:
    refs = tuple(png((60 * i, 100, 200)) for i in range(count))
    await generator.generate(request(references=refs))
    assert local_gemini.received[-1].images == count


async def test_generate_makes_another_image_when_a_reference_changes(generator: GeminiImageGenerator) -> None:
    red = await generator.generate(request(references=(png((220, 20, 20)), png((0, 0, 0)))))
    again = await generator.generate(request(references=(png((220, 20, 20)), png((0, 0, 0)))))
    blue = await generator.generate(request(references=(png((20, 20, 220)), png((0, 0, 0)))))
    assert red.data == again.data
    assert red.data != blue.data


@pytest.mark.parametrize(
    ("model", "ratio"), [(FLASH, r) for r in ASPECT_RATIOS_10] + [(NB2, r) for r in ("1:4", "4:1", "1:8", "8:1")]
)
async def test_generate_honours_the_aspect_ratio_when_given(
    generator: GeminiImageGenerator, model: str, ratio: str
) -> None:
    image = await generator.generate(request(model=model, aspect_ratio=ratio))
    assert dims(image.data) == model_spec(model).pixel_size(ratio, None)


async def test_generate_honours_the_image_size_when_model_takes_it(
    generator: GeminiImageGenerator, local_gemini: LocalGemini
) -> None:
    image = await generator.generate(request(model=PRO, aspect_ratio="16:9", image_size="2K"))
    assert dims(image.data) == (2752, 1536)
    assert image.mime_type == "image/jpeg"
    assert local_gemini.received[-1].image_size == "2K"


async def test_generate_refuses_before_calling_when_model_takes_no_image_size(
    generator: GeminiImageGenerator, local_gemini: LocalGemini
) -> None:
    error = await failure(generator, request(image_size="2K"))
    assert error.code is ErrorCode.BAD_INPUT
    assert "gemini-2.5-flash-image makes 1K images only" in error.message
    assert local_gemini.stats.requests == 0


async def test_generate_omits_the_default_size_when_model_takes_no_image_size(
    generator: GeminiImageGenerator, local_gemini: LocalGemini
) -> None:
    await generator.generate(request(image_size="1K"))
    assert local_gemini.received[-1].image_size is None


async def test_generate_refuses_before_calling_when_too_many_references(
    generator: GeminiImageGenerator, local_gemini: LocalGemini
) -> None:
    error = await failure(generator, request(references=tuple(png((i, i, i)) for i in range(5))))
    assert error.code is ErrorCode.BAD_INPUT
    assert error.message == "gemini-2.5-flash-image takes at most 3 reference images; 5 given"
    assert not error.retryable
    assert local_gemini.stats.requests == 0


async def test_generate_sends_source_and_history_when_editing(
    generator: GeminiImageGenerator, local_gemini: LocalGemini
) -> None:
    source, ref = png((10, 10, 10)), png((250, 250, 0))
    await generator.generate(
        request("make it blue", edit_source=source, references=(ref,), history=("a red car", "add rain"))
    )
    sent = local_gemini.received[-1]
    assert sent.images == 2
    assert sent.prompt.index("a red car") < sent.prompt.index("add rain") < sent.prompt.index("make it blue")
    assert sent.image_sha256[0] == hashlib.sha256(source.data).hexdigest()


async def test_generate_retries_honouring_retry_delay_when_429_then_ok(
    generator: GeminiImageGenerator, local_gemini: LocalGemini, sleeps: Sleeps
) -> None:
    local_gemini.set_faults(next_429=2, retry_delay_s=5)
    image = await generator.generate(request())
    assert image.attempts == 3
    assert local_gemini.stats.requests == 3
    assert len(sleeps.delays) == 2
    assert all(delay >= 5 for delay in sleeps.delays)


async def test_generate_raises_rate_limited_after_the_retry_limit_when_429_forever(
    generator: GeminiImageGenerator, local_gemini: LocalGemini, sleeps: Sleeps
) -> None:
    local_gemini.set_faults(next_429=100, retry_delay_s=2)
    error = await failure(generator, request())
    assert error.code is ErrorCode.RATE_LIMITED
    assert error.retryable
    assert error.retry_after_s == 2
    assert "RESOURCE_EXHAUSTED" in error.message
    assert local_gemini.stats.requests == 4
    assert len(sleeps.delays) == 3


async def test_generate_gives_up_at_once_when_retry_delay_exceeds_the_cap(
    make_generator: MakeGenerator, local_gemini: LocalGemini, sleeps: Sleeps
) -> None:
    local_gemini.set_faults(next_429=1, retry_delay_s=90)
    error = await failure(make_generator(backoff_cap_s=30), request())
    assert (error.code, error.retry_after_s) == (ErrorCode.RATE_LIMITED, 90)
    assert local_gemini.stats.requests == 1
    assert sleeps.delays == []


async def test_generate_retries_with_jittered_backoff_then_raises_upstream_when_503_forever(
    generator: GeminiImageGenerator, local_gemini: LocalGemini, sleeps: Sleeps
) -> None:
    local_gemini.set_faults(next_5xx=100, status_5xx=503)
    error = await failure(generator, request())
    assert error.code is ErrorCode.UPSTREAM
    assert "503" in error.message
    assert local_gemini.stats.requests == 4
    for attempt, delay in enumerate(sleeps.delays, start=1):
        assert 0.5 * 0.5 * 2 ** (attempt - 1) <= delay <= 1.5 * 0.5 * 2 ** (attempt - 1)


async def test_generate_succeeds_when_5xx_then_ok(generator: GeminiImageGenerator, local_gemini: LocalGemini) -> None:
    local_gemini.set_faults(next_5xx=2)
    assert (await generator.generate(request())).attempts == 3


@pytest.mark.parametrize(("block_as", "reason"), [("prompt", "PROHIBITED_CONTENT"), ("image", "IMAGE_SAFETY")])
async def test_generate_raises_safety_without_retrying_when_blocked(
    generator: GeminiImageGenerator, local_gemini: LocalGemini, sleeps: Sleeps, block_as: str, reason: str
) -> None:
    local_gemini.set_faults(block_word="forbidden", block_as=block_as)
    error = await failure(generator, request("a forbidden scene"))
    assert error.code is ErrorCode.SAFETY
    assert reason in error.message
    assert not error.retryable
    assert local_gemini.stats.requests == 1
    assert local_gemini.stats.blocked == 1
    assert sleeps.delays == []


@pytest.mark.parametrize("kind", ["json", "structure"])
async def test_generate_raises_upstream_when_answers_stay_malformed(
    generator: GeminiImageGenerator, local_gemini: LocalGemini, kind: str
) -> None:
    local_gemini.set_faults(next_malformed=100, malformed=kind)
    error = await failure(generator, request())
    assert error.code is ErrorCode.UPSTREAM
    assert "malformed" in error.message
    assert local_gemini.stats.requests == 4


async def test_generate_retries_when_one_answer_is_malformed(
    generator: GeminiImageGenerator, local_gemini: LocalGemini
) -> None:
    local_gemini.set_faults(next_malformed=1, malformed="structure")
    assert (await generator.generate(request())).attempts == 2


@pytest.mark.parametrize("reason", ["NO_IMAGE", "STOP"])
async def test_generate_raises_no_image_after_one_retry_when_answers_lack_an_image(
    generator: GeminiImageGenerator, local_gemini: LocalGemini, reason: str
) -> None:
    local_gemini.set_faults(next_no_image=100, no_image_reason=reason)
    error = await failure(generator, request())
    assert error.code is ErrorCode.NO_IMAGE
    assert reason in error.message
    assert error.retryable
    assert local_gemini.stats.requests == 2


async def test_generate_succeeds_when_one_answer_lacks_an_image(
    generator: GeminiImageGenerator, local_gemini: LocalGemini
) -> None:
    local_gemini.set_faults(next_no_image=1)
    assert (await generator.generate(request())).attempts == 2


async def test_generate_raises_config_without_retrying_when_key_is_wrong(
    make_generator: MakeGenerator, local_gemini: LocalGemini, sleeps: Sleeps
) -> None:
    error = await failure(make_generator(api_key="wrong-key"), request())
    assert error.code is ErrorCode.CONFIG  # the deployment's key, not the request: admins must fix it
    assert "API key not valid" in error.message
    assert local_gemini.stats.requests == 1
    assert sleeps.delays == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_generate_raises_upstream_after_retries_when_connection_is_refused(
    make_generator: MakeGenerator, sleeps: Sleeps
) -> None:
    port = await asyncio.to_thread(_closed_port)
    error = await failure(make_generator(base_url=f"http://127.0.0.1:{port}"), request())
    assert error.code is ErrorCode.UPSTREAM
    assert "unreachable" in error.message
    assert len(sleeps.delays) == 3


async def test_generate_raises_upstream_when_gemini_is_too_slow(
    make_generator: MakeGenerator, local_gemini: LocalGemini
) -> None:
    local_gemini.set_faults(latency=0.6)
    error = await failure(make_generator(timeout_s=0.2, max_attempts=2), request())
    assert error.code is ErrorCode.UPSTREAM
    assert "in time" in error.message
    assert local_gemini.stats.requests == 2


async def test_generate_takes_the_final_image_when_gemini_3_sends_thoughts_and_a_draft(
    generator: GeminiImageGenerator, local_gemini: LocalGemini
) -> None:
    local_gemini.set_faults(thoughts=True)
    image = await generator.generate(request(model=PRO, aspect_ratio="1:1"))
    size = model_spec(PRO).pixel_size("1:1", None)
    final, draft = await asyncio.gather(
        *(
            asyncio.to_thread(
                draw_image, prompt="a lighthouse at dusk", seed=42, size=size, image_format="JPEG", variant=variant
            )
            for variant in ("", "draft")
        )
    )
    assert image.data == final
    assert image.data != draft
    assert image.note is None  # the thought summary is not a note


async def test_generate_sniffs_jpeg_when_labelled_png(
    generator: GeminiImageGenerator, local_gemini: LocalGemini
) -> None:
    local_gemini.set_faults(next_mislabel=1)
    image = await generator.generate(request())
    assert image.mime_type == "image/jpeg"
    assert image.data[:3] == b"\xff\xd8\xff"


async def test_generate_accepts_a_model_by_name_when_unknown(generator: GeminiImageGenerator) -> None:
    image = await generator.generate(request(model="gemini-9-image", aspect_ratio="2:1", image_size="2K"))
    assert dims(image.data) == model_spec("gemini-9-image").pixel_size("2:1", "2K")


async def test_concurrent_generations_are_in_flight_together_when_gemini_is_slow(
    generator: GeminiImageGenerator, local_gemini: LocalGemini
) -> None:
    local_gemini.set_faults(latency=0.3)
    images = await asyncio.gather(*(generator.generate(request(f"scene {i}")) for i in range(5)))
    assert len({i.data for i in images}) == 5
    assert local_gemini.stats.max_in_flight == 5


async def test_generate_never_logs_the_key_when_retrying(
    make_generator: MakeGenerator, local_gemini: LocalGemini, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    local_gemini.set_faults(next_429=1, next_5xx=1)
    await make_generator().generate(request())
    await failure(make_generator(api_key="wrong-key-secret"), request())
    assert "retrying" in caplog.text
    assert KEY not in caplog.text
    assert "wrong-key-secret" not in caplog.text


async def test_generator_is_built_from_settings_when_env_is_set(
    local_gemini: LocalGemini, monkeypatch: pytest.MonkeyPatch, sleeps: Sleeps
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GEMINI_BASE_URL", local_gemini.url)
    monkeypatch.setenv("GEMINI_MAX_ATTEMPTS", "2")
    settings = GeminiSettings(_env_file=None)  # type: ignore[call-arg]  # pydantic-settings init option
    assert settings.model == FLASH
    assert KEY not in repr(settings)
    local_gemini.set_faults(next_5xx=5)
    async with GeminiImageGenerator.from_settings(settings, sleep=sleeps) as generator:
        error = await failure(generator, request())
    assert error.code is ErrorCode.UPSTREAM
    assert local_gemini.stats.requests == 2


async def test_generate_raises_config_without_retrying_when_the_model_is_unknown(
    generator: GeminiImageGenerator, local_gemini: LocalGemini, sleeps: Sleeps
) -> None:
    error = await failure(generator, request(model="gemini-0.1-nonexistent"))
    assert error.code is ErrorCode.CONFIG  # Gemini's 404 NOT_FOUND "models/… is not found": GEMINI_MODEL is wrong
    assert "not found" in error.message
    assert sleeps.delays == []


def noise_png(side: int, seed: int) -> InputImage:
    """A PNG of random pixels, stored uncompressed: about 3 x side² bytes that no encoder can shrink."""
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), random.Random(seed).randbytes(3 * side * side)).save(
        out, format="PNG", compress_level=0
    )
    return InputImage(data=out.getvalue(), mime_type="image/png")


# google-genai hands aiohttp its JSON as one bytes object, which aiohttp warns about past 1 MiB: the SDK's choice.
@pytest.mark.filterwarnings("ignore:Sending a large body directly with raw bytes:ResourceWarning")
async def test_generate_sends_references_up_to_twenty_mib_and_the_estimate_bounds_the_body(
    generator: GeminiImageGenerator, local_gemini: LocalGemini
) -> None:
    refs = (noise_png(1400, 1), noise_png(1400, 2))  # 2 x 5.9 MB: 15.7 MB as base64
    req = request(model=PRO, references=refs)
    await generator.generate(req)
    sent = local_gemini.received[-1].body_bytes
    assert sent <= request_bytes(req) < sent + 8192
    assert request_bytes(req) < MAX_REQUEST_BYTES


async def test_generate_refuses_as_too_large_before_calling_when_the_images_pass_twenty_mib(
    generator: GeminiImageGenerator, local_gemini: LocalGemini
) -> None:
    refs = (noise_png(1400, 1), noise_png(1400, 2), noise_png(1400, 3))  # 3 x 5.9 MB: 23.5 MB as base64
    req = request(model=PRO, references=refs)
    assert request_bytes(req) > MAX_REQUEST_BYTES
    error = await failure(generator, req)
    assert error.code is ErrorCode.TOO_LARGE
    assert not error.retryable
    assert "20,971,520-byte limit" in error.message
    assert local_gemini.stats.requests == 0


async def test_generate_reports_the_usage_of_every_answer_it_got_when_one_lacked_an_image(
    generator: GeminiImageGenerator, local_gemini: LocalGemini
) -> None:
    local_gemini.set_faults(next_no_image=1)  # the local server's text-only answer reports 8 prompt, 9 answer tokens

    image = await generator.generate(request())

    prompt = math.ceil(len("a lighthouse at dusk") / 4)  # ~4 characters a token (ai.google.dev/gemini-api/docs/tokens)
    assert image.usage == TokenUsage(prompt_tokens=8 + prompt, output_tokens=9 + 1290, image_output_tokens=1290)


async def test_generate_reports_a_thinking_models_thoughts_and_its_images_tokens_by_size(
    generator: GeminiImageGenerator,
) -> None:
    image = await generator.generate(request(model=NB2, image_size="2K", references=(png((1, 2, 3)),)))

    # 3.1 Flash Image: 1120 tokens per input image, 1680 per 2K image made (the catalogue, from the pricing page).
    prompt = math.ceil(len("a lighthouse at dusk") / 4) + 1120
    assert image.usage == TokenUsage(
        prompt_tokens=prompt, output_tokens=1680, thoughts_tokens=THOUGHT_TOKENS, image_output_tokens=1680
    )


async def test_generate_reports_the_blocked_prompts_input_tokens_with_the_safety_error(
    generator: GeminiImageGenerator, local_gemini: LocalGemini
) -> None:
    local_gemini.set_faults(block_word="forbidden", block_as="prompt")

    error = await failure(generator, request("a forbidden lighthouse"))

    assert error.code is ErrorCode.SAFETY
    assert error.usage == TokenUsage(prompt_tokens=math.ceil(len("a forbidden lighthouse") / 4))
