"""/imagine with `{a, b}` permutations and `--repeat` through the local Discord: the count and cost first, then one
grid per expansion once the user says Go, and nothing at all on Cancel."""

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from local.discord.driver import Message
from tests.e2e.discord.conftest import WAIT_S, imagine, result_of
from tests.fakes.peel_stack import PeelStack, peel_stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PeelStack]:
    async with peel_stack(tmp_path_factory.mktemp("permute"), progress_edit_interval_s=0.5) as s:
        yield s


def asking(m: Message) -> bool:
    return m.is_ephemeral and m.content.startswith("This makes ")


async def test_a_permutation_prompt_asks_first_then_makes_one_grid_per_expansion_and_repeat(stack: PeelStack) -> None:
    d = stack.driver("alice")
    jobs_before = len(await stack.rt.ledger.list_jobs())

    await imagine(stack, "a {red, blue, green} kite --n 2 --repeat 2")
    ask = await d.wait_for_message(asking, timeout=WAIT_S)

    assert ask.content.startswith("This makes 6 grids (12 images), about $")
    assert len(await stack.rt.ledger.list_jobs()) == jobs_before  # nothing queued before Go
    await d.click(ask, label="Go")

    prompts = [f"a {colour} kite --n 2 --repeat 2" for colour in ("red", "blue", "green")]

    def all_grids(messages: list[Message]) -> list[Message] | None:
        grids = [m for m in messages if any(result_of(p)(m) for p in prompts)]
        return grids if len(grids) == 6 else None

    grids = await d.wait_for(all_grids, timeout=WAIT_S * 2)
    assert grids is not None
    assert sorted(g.content.split("**")[1] for g in grids) == sorted(prompts * 2)
    jobs = (await stack.rt.ledger.list_jobs())[jobs_before:]
    assert len(jobs) == 6 and all(j.ok == 2 for j in jobs)
    assert len({j.prompt for j in jobs}) == 3


async def test_cancel_queues_nothing(stack: PeelStack) -> None:
    d = stack.driver("alice")
    jobs_before = len(await stack.rt.ledger.list_jobs())

    await imagine(stack, "a {cat, dog} on a sofa")
    ask = await d.wait_for_message(lambda m: asking(m) and "2 grids (8 images)" in m.content, timeout=WAIT_S)
    await d.click(ask, label="Cancel")

    await d.wait_for_message(lambda m: m.content == "Cancelled: nothing was queued.", timeout=WAIT_S)
    assert len(await stack.rt.ledger.list_jobs()) == jobs_before


async def test_one_expansion_is_queued_at_once_as_before(stack: PeelStack) -> None:
    d = stack.driver("alice")
    await imagine(stack, "a lone {kite} at dusk")  # a comma-less group is text, not a permutation
    await d.wait_for_message(result_of("a lone {kite} at dusk"), timeout=WAIT_S)
    assert not [m for m in d.messages() if asking(m) and "lone" in m.content]
