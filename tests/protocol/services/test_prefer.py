"""`/prefer` below Discord: the suffix and option sets reach every prompt a user types, and only theirs."""

from datetime import UTC, datetime

import pytest

from bot.app.generation import GenerationService
from bot.app.generation_types import GenerationError, Origin
from bot.app.prefer import PreferService
from bot.app.runtime import Runtime
from bot.core.models import JobId, UserId
from bot.core.prefer import MAX_OPTION_SETS
from bot.ledger import Ledger
from tests.protocol.services.conftest import RunToEnd

ALICE, BOB = Origin(user_id=UserId(1)), Origin(user_id=UserId(2))


@pytest.fixture
def service(runtime: Runtime) -> GenerationService:
    return GenerationService(
        runtime.ledger, runtime.dispatcher, runtime.backends.store, default_model=runtime.settings.gemini_model
    )


async def test_the_remix_box_gets_the_suffix_once_when_a_grid_is_varied_or_rerolled(
    service: GenerationService, ledger: Ledger, run_to_end: RunToEnd
) -> None:
    prefer = PreferService(ledger)
    await prefer.set_suffix(ALICE.user_id, "in watercolor --ar 3:2")
    first = await service.submit(await service.imagine("a fox", ALICE))
    assert first.result.job is not None
    job = await run_to_end(first.result.job.id)
    remix = await service.remix_text(job)
    assert remix.startswith("a fox in watercolor")
    image = (await ledger.images(job_id=job.id))[0]
    varied = await service.vary(image, ALICE, strength="strong", prompt="a wolf")
    assert varied.display == "a wolf in watercolor --ar 3:2" and varied.request.params.aspect_ratio == "3:2"
    rerolled = await service.reroll(job, ALICE, prompt=remix)
    assert rerolled.display.count("in watercolor") == 1
    assert (await service.imagine("a fox", BOB)).display == "a fox"  # someone else's prompt is theirs alone


async def test_a_set_is_refused_when_the_user_has_the_most(ledger: Ledger) -> None:
    prefer = PreferService(ledger)
    for n in range(MAX_OPTION_SETS):
        await ledger.set_option_set(ALICE.user_id, f"s{n}", "--n 1", now=datetime.now(UTC), max_sets=MAX_OPTION_SETS)
    with pytest.raises(GenerationError, match=f"You have {MAX_OPTION_SETS} option sets"):
        await prefer.set_option_set(ALICE.user_id, "one-more", "--n 2")
    assert await prefer.set_option_set(ALICE.user_id, "s0", "--n 2") == ("s0", "--n 2")  # a saved one may change


async def test_show_finds_the_owners_job_and_answers_others_as_for_a_missing_one(
    service: GenerationService, ledger: Ledger
) -> None:
    prefer = PreferService(ledger)
    submitted = await service.submit(await service.imagine("a fox", ALICE))
    assert submitted.result.job is not None
    job_id = submitted.result.job.id
    assert (await prefer.showable(job_id, ALICE.user_id, is_admin=False)).id == job_id
    assert (await prefer.showable(f" {job_id} ", BOB.user_id, is_admin=True)).id == job_id
    with pytest.raises(GenerationError) as other:
        await prefer.showable(job_id, BOB.user_id, is_admin=False)
    with pytest.raises(GenerationError) as missing:
        await prefer.showable(JobId("j_missing"), BOB.user_id, is_admin=False)
    assert other.value.user_message.replace(job_id, "?") == missing.value.user_message.replace("j_missing", "?")
