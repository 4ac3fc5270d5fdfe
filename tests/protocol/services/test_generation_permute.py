"""`/imagine` with `{a, b}` permutations and `--repeat` below Discord: one grid job each, counted and priced first,
refused as a whole when the owner's queue cannot take them all."""

import pytest

from bot.app.generation import GenerationService
from bot.app.generation_types import GenerationError, Origin
from bot.app.runtime import Runtime
from bot.core.models import UserId

ALICE = Origin(user_id=UserId(5), idempotency_key="i:1")


@pytest.fixture
def service(runtime: Runtime) -> GenerationService:
    return GenerationService(
        runtime.ledger, runtime.dispatcher, runtime.backends.store, default_model=runtime.settings.gemini_model
    )


async def test_each_expansion_and_repeat_is_one_grid_with_the_repeats_taking_the_following_seeds(
    service: GenerationService,
) -> None:
    plan = await service.imagine_all("a {fox, owl} --ar {1:1, 16:9} --seed 10 --repeat 2", ALICE, max_prompts=40)

    runs = [(p.request.prompt, p.request.params.aspect_ratio, p.request.params.seed) for p in plan.jobs]
    assert runs == [
        (animal, ratio, seed) for animal in ("a fox", "a owl") for ratio in ("1:1", "16:9") for seed in (10, 11)
    ]
    assert plan.images == 32
    one = (await service.imagine_all("a fox", ALICE, max_prompts=40)).cost_usd
    assert one is not None and plan.cost_usd == pytest.approx(8 * one)
    assert [p.request.idempotency_key for p in plan.jobs[:3]] == ["i:1", "i:1#2", "i:1#3"]


async def test_without_a_seed_each_repeat_leaves_its_seed_to_its_job(service: GenerationService) -> None:
    plan = await service.imagine_all("a fox --repeat 3", ALICE, max_prompts=40)
    assert [p.request.params.seed for p in plan.jobs] == [None, None, None]


async def test_past_the_cap_or_a_bad_expansion_is_refused_naming_it(service: GenerationService) -> None:
    with pytest.raises(GenerationError, match="make 9 prompts; at most 8"):
        await service.imagine_all("{a, b, c} {d, e, f}", ALICE, max_prompts=8)
    with pytest.raises(GenerationError, match="make 12 grids; at most 8"):
        await service.imagine_all("{a, b, c} --repeat 4", ALICE, max_prompts=8)
    with pytest.raises(GenerationError, match="--ar 0:1"):
        await service.imagine_all("a fox --ar {1:1, 0:1}", ALICE, max_prompts=8)


async def test_more_grids_than_the_queue_takes_are_refused_before_any_is_queued(
    service: GenerationService,
    runtime: Runtime,
) -> None:
    caps = runtime.dispatcher.caps_for(is_admin=False)
    assert caps.max_running is not None and caps.max_waiting is not None
    room = caps.max_running + caps.max_waiting

    with pytest.raises(GenerationError, match="more than your queue can take"):
        await service.imagine_all("a fox --n 1 --repeat " + str(room + 1), ALICE, max_prompts=40)
    plan = await service.imagine_all("a fox --n 1 --repeat " + str(room), ALICE, max_prompts=40)
    submitted = await service.submit_all(plan, ALICE)
    assert all(s.result.job is not None for s in submitted)
    assert len(await runtime.ledger.list_jobs()) == room
    with pytest.raises(GenerationError, match="more than your queue can take"):
        await service.submit_all(await service.imagine_all("a {cat, dog}", ALICE, max_prompts=40), ALICE)
    assert len(await runtime.ledger.list_jobs()) == room
