"""`GenerationService` below Discord: requests built from prompts and settings, and notes written with the job."""

import pytest

from bot.app.generation import GenerationService
from bot.app.generation_types import NOTE_DISPLAY, NOTE_EDIT_HISTORY, NOTE_LABEL, Origin
from bot.app.runtime import Runtime
from bot.core.models import UserId
from bot.ledger import Ledger
from tests.protocol.services.conftest import RunToEnd


@pytest.fixture
def service(runtime: Runtime) -> GenerationService:
    return GenerationService(
        runtime.ledger, runtime.dispatcher, runtime.backends.store, default_model=runtime.settings.gemini_model
    )


async def test_submit_writes_the_notes_in_the_job_s_own_transaction_when_the_job_is_created(
    service: GenerationService, ledger: Ledger, monkeypatch: pytest.MonkeyPatch, run_to_end: RunToEnd
) -> None:
    first = await service.submit(await service.imagine("a red fox --ar 16:9", Origin(user_id=UserId(1))))
    assert first.result.job is not None
    job = await run_to_end(first.result.job.id)
    image = (await ledger.images(job_id=job.id))[0]

    async def no_second_write(*args: object, **kwargs: object) -> None:
        raise AssertionError("a note written after the job was created can be lost to a crash in between")

    monkeypatch.setattr(ledger, "set_note", no_second_write)
    edited = await service.submit(await service.edit(image, Origin(user_id=UserId(1)), instruction="make it night"))

    assert edited.result.job is not None
    assert await ledger.note(job.id, NOTE_DISPLAY) == "a red fox --ar 16:9"
    assert await ledger.note(edited.result.job.id, NOTE_LABEL) == "Edited"
    assert await ledger.note(edited.result.job.id, NOTE_EDIT_HISTORY) == ["make it night"]
    assert await service.edit_history(edited.result.job.id) == ("make it night",)


async def test_cli_overrides_win_over_inline_parameters_when_both_are_given(service: GenerationService) -> None:
    from bot.core.params import PromptParams

    prepared = await service.imagine(
        "a fox --ar 16:9 --seed 3", Origin(user_id=UserId(0)), overrides=PromptParams(aspect_ratio="1:1", grid_size=2)
    )

    assert (prepared.request.params.aspect_ratio, prepared.request.params.seed) == ("1:1", 3)
    assert prepared.request.params.n == 2


async def test_outputs_are_the_made_images_when_the_job_is_final(
    service: GenerationService, run_to_end: RunToEnd
) -> None:
    submitted = await service.submit(await service.imagine("a fox --n 2", Origin(user_id=UserId(1))))
    assert submitted.result.job is not None
    await run_to_end(submitted.result.job.id)

    outputs = await service.outputs(submitted.result.job.id)

    assert [(item.index, data is not None and data.startswith(b"\x89PNG")) for item, data in outputs] == [
        (0, True),
        (1, True),
    ]
