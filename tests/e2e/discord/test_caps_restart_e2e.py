"""Per-user caps ("Job queued", "Queue full"), a button clicked after the bot restarted, and a job that outlives
its interaction token, through the local Discord and the embedded back ends."""

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.core.models import JobKind, JobStatus
from local.discord.driver import Message
from tests.e2e.discord.conftest import WAIT_S, ephemeral_embed, imagine, labels, result_of, set_faults
from tests.fakes.peel_stack import PeelStack, peel_stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PeelStack]:
    async with peel_stack(
        tmp_path_factory.mktemp("caps"),
        max_running_per_user=1,
        max_waiting_per_user=1,
        progress_edit_interval_s=0.5,
    ) as s:
        yield s


async def test_caps_answer_job_queued_then_queue_full_when_the_user_has_too_many_jobs(stack: PeelStack):
    d = stack.driver("bob")
    await set_faults(stack, {"latency": 4})
    try:
        await imagine(stack, "cap one", user="bob")
        await d.wait_for_message(
            lambda m: m.content.startswith("**cap one**") and "generating" in m.content, timeout=WAIT_S
        )
        await imagine(stack, "cap two", user="bob")
        queued = await d.wait_for_message(lambda m: "Job queued" in ephemeral_embed(m), timeout=WAIT_S)
        assert "starts when one of them finishes" in ephemeral_embed(queued)
        before = len(await stack.rt.ledger.list_jobs())
        run = await imagine(stack, "cap three", user="bob")
        full = await d.wait_for_message(lambda m: "Queue full" in ephemeral_embed(m), timeout=WAIT_S)
        assert "1 jobs waiting" in ephemeral_embed(full)
        assert ephemeral_embed(full).count("Queue full") == 1  # the title, not repeated by the message
        assert run.response() is None and len(await stack.rt.ledger.list_jobs()) == before
    finally:
        await set_faults(stack, {"latency": 0.05})
    await d.wait_for_message(result_of("cap two"), timeout=60)  # the waiting job started when the first finished


@pytest.mark.allow_blocking  # restart_bot starts worker subprocesses (path lookups on the loop)
async def test_a_grid_button_works_when_clicked_after_the_bot_restarted(stack: PeelStack):
    d = stack.driver()
    await imagine(stack, "restart fox")
    grid = await d.wait_for_message(result_of("restart fox"), timeout=WAIT_S)
    await stack.restart_bot()
    await d.click(grid, label="U3")
    single = await d.wait_for_message(lambda m: m.content.startswith("**restart fox** - Image #3"), timeout=WAIT_S)
    assert "Upscale 2K" in labels(single)
    await d.click(grid, label="V1")
    await d.wait_for_message(lambda m: m.content.startswith("**restart fox** - Variations"), timeout=WAIT_S)


@pytest.mark.allow_blocking  # restart_bot starts worker subprocesses (path lookups on the loop)
async def test_a_running_job_finishes_in_a_channel_message_when_the_bot_restarted_meanwhile(stack: PeelStack):
    d = stack.driver()
    await set_faults(stack, {"latency": 3})
    try:
        run = await imagine(stack, "survivor fox")
        await d.wait_for_message(
            lambda m: m.content.startswith("**survivor fox**") and "generating" in m.content, timeout=WAIT_S
        )
        await stack.restart_bot()
    finally:
        await set_faults(stack, {"latency": 0.05})
    final = await d.wait_for_message(result_of("survivor fox"), timeout=60)

    def status_says_done() -> Message | None:  # the status is edited just after the result is posted
        status = run.response()
        return status if status is not None and "result is below" in status.content else None

    status = await d.wait_until(status_says_done, timeout=WAIT_S)
    assert status is not None and final.id != status.id  # a new channel message, the old token is not trusted
    jobs = [j for j in await stack.rt.ledger.list_jobs() if j.kind is JobKind.GRID]
    assert jobs[-1].status is JobStatus.DONE


async def test_a_job_outliving_its_token_finishes_with_a_channel_message_when_the_token_is_old(stack: PeelStack):
    d = stack.driver()
    assert stack.bot is not None
    cog = stack.bot.get_cog("ImagineCog")
    tracker = cog.tracker  # type: ignore[union-attr]
    tracker._token_max_age_s = 0.5  # the 14-minute rule, shrunk: this job's token is "too old" when it ends
    await set_faults(stack, {"latency": 1.5})
    try:
        run = await imagine(stack, "long fox")
        final = await d.wait_for_message(result_of("long fox"), timeout=WAIT_S)
    finally:
        tracker._token_max_age_s = 14 * 60
        await set_faults(stack, {"latency": 0.05})
    status = run.response()
    assert status is not None and final.id != status.id
    assert final.raw.get("webhook_id") is None  # a channel message, not a webhook follow-up
