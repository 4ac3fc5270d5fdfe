"""`DescribeService` below Discord: the describe job as sent, its answer read back, the blend and its refusals."""

import io

import pytest
from PIL import Image

from bot.app.describe import BLEND_WORDING, DescribeService
from bot.app.generation import GenerationService
from bot.app.generation_types import GenerationError, Origin
from bot.app.runtime import Runtime
from bot.core.models import JobKind, UserId
from tests.fakes.gateway import MemoryRunpod
from tests.protocol.services.conftest import RunToEnd
from worker.contract import DescribeAnswer, describe_key

ORIGIN = Origin(user_id=UserId(1))


@pytest.fixture
def service(runtime: Runtime) -> DescribeService:
    generation = GenerationService(
        runtime.ledger, runtime.dispatcher, runtime.backends.store, default_model=runtime.settings.gemini_model
    )
    return DescribeService(runtime.ledger, runtime.dispatcher, runtime.backends.store, generation, runtime.settings)


def png(colour: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(out, "PNG")
    return out.getvalue()


async def test_a_describe_job_goes_to_the_worker_as_a_describe_chunk_of_the_text_model(
    service: DescribeService, runtime: Runtime, runpod: MemoryRunpod
) -> None:
    submitted = await service.describe("cat.png", png(), ORIGIN)
    job = submitted.result.job
    assert job is not None and job.kind is JobKind.DESCRIBE and job.params.model == "gemini-2.5-flash"
    await runtime.dispatcher.run_once()
    (sent,) = runpod.jobs.values()
    assert sent.input.kind == "describe" and sent.input.model == "gemini-2.5-flash"
    assert len(sent.input.items) == 1 and len(sent.input.items[0].ref_keys) == 1


async def test_an_answer_is_read_back_from_the_store_and_a_missing_one_is_a_clear_error(
    service: DescribeService, runtime: Runtime, run_to_end: RunToEnd
) -> None:
    submitted = await service.describe("cat.png", png(), ORIGIN)
    assert submitted.result.job is not None
    job_id = submitted.result.job.id
    with pytest.raises(GenerationError, match="could not be described"):
        await service.answer(job_id)  # not made yet
    await run_to_end(job_id)  # the fake worker reports the item made, but writes no answer
    with pytest.raises(GenerationError, match="could not be read back"):
        await service.answer(job_id)
    item = await runtime.ledger.get_item(job_id, 0)
    assert item is not None
    answer = DescribeAnswer(prompts=["a --ar 4:3", "b", "c", "d"], width=40, height=30, aspect_ratio="4:3")
    await runtime.backends.store.put(describe_key(item.output_key), answer.model_dump_json().encode())
    described = await service.wait(job_id, timeout_s=1)
    assert described.prompts == ("a --ar 4:3", "b", "c", "d") and (described.width, described.height) == (40, 30)
    assert await service.prompt(job_id, 1) == "a --ar 4:3"
    assert await runtime.ledger.images(job_id=job_id) == []  # a description is no image


@pytest.mark.parametrize("count", [1, 6])
async def test_blend_refuses_fewer_than_two_or_more_than_five_images(service: DescribeService, count: int) -> None:
    files = [(f"{i}.png", png((i, i, i))) for i in range(count)]
    with pytest.raises(GenerationError, match="Blend takes 2 to 5 images"):
        await service.blend(files, ORIGIN)


async def test_blend_refuses_more_images_than_the_model_takes_naming_its_cap(service: DescribeService) -> None:
    files = [(f"{i}.png", png((i, i, i))) for i in range(4)]
    with pytest.raises(GenerationError, match=r"gemini-2\.5-flash-image takes at most 3 reference images"):
        await service.blend(files, ORIGIN, prompt="--model flash")


async def test_blend_sends_the_images_with_the_blend_wording_at_the_shape_asked(service: DescribeService) -> None:
    files = [(f"{i}.png", png((i, i, i))) for i in range(3)]
    prepared = await service.blend(files, ORIGIN, dimensions="portrait", prompt="at night")
    request = prepared.request
    assert request.params.aspect_ratio == "2:3"
    assert request.prompt.startswith(BLEND_WORDING) and request.prompt.endswith("at night")
    assert all(len(item.inputs.ref_keys) == 3 for item in request.items)
    assert prepared.display == "Blend of 3 images: at night"
