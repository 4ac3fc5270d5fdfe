"""`AccountService` below Discord: the queue with places in line, cancelling, usage and job messages."""

import pytest

from bot.app.account import AccountService
from bot.core.models import JobKind, JobParams, JobRequest, JobStatus, UserId
from bot.dispatch import Dispatcher
from bot.ledger import Ledger
from tests.protocol.services.conftest import RunToEnd

MODEL = "gemini-2.5-flash-image"


@pytest.fixture
def account(ledger: Ledger, dispatcher: Dispatcher) -> AccountService:
    return AccountService(ledger, dispatcher)


def grid(owner: int) -> JobRequest:
    return JobRequest(kind=JobKind.GRID, owner_id=UserId(owner), prompt="a fox", params=JobParams(model=MODEL, n=4))


async def test_queue_lists_a_user_s_unfinished_jobs_when_asked_by_them_and_everyone_s_for_an_admin(
    account: AccountService, dispatcher: Dispatcher
) -> None:
    mine = (await dispatcher.submit(grid(1))).job
    theirs = (await dispatcher.submit(grid(2))).job
    assert mine is not None and theirs is not None

    assert [e.job.id for e in await account.queue(UserId(1))] == [mine.id]
    assert {e.job.id for e in await account.queue(None)} == {mine.id, theirs.id}
    assert [j.id for j in await account.open_jobs(UserId(2))] == [theirs.id]


async def test_cancel_refuses_someone_else_s_job_unless_an_admin_asks(
    account: AccountService, dispatcher: Dispatcher
) -> None:
    job = (await dispatcher.submit(grid(1))).job
    assert job is not None

    refused = await account.cancel(job.id, UserId(2), is_admin=False)
    done = await account.cancel(job.id, UserId(2), is_admin=True)

    assert not refused.cancelled and done.cancelled
    assert (await account.job(job.id)).status is JobStatus.CANCELLED  # type: ignore[union-attr]
    assert await account.queue(UserId(1)) == []


async def test_usage_counts_made_and_not_made_images_when_jobs_have_finished(
    account: AccountService, dispatcher: Dispatcher, run_to_end: RunToEnd
) -> None:
    job = (await dispatcher.submit(grid(1))).job
    assert job is not None
    await run_to_end(job.id)
    await dispatcher.submit(grid(1))

    usage = await account.usage(UserId(1))

    assert (usage.jobs, usage.made, usage.not_made) == (2, 4, 0)
    assert usage.running + usage.waiting == 1


async def test_recorded_message_is_found_again_when_asked_for_its_role(
    account: AccountService, dispatcher: Dispatcher
) -> None:
    job = (await dispatcher.submit(grid(1))).job
    assert job is not None

    await account.record_message(job.id, "status", channel_id=10, message_id=11)
    await account.record_message(job.id, "status", channel_id=10, message_id=12)

    assert await account.message_of(job.id, "status") == (10, 12)
    assert await account.message_of(job.id, "result") is None
    assert [j.id for j in await account.unfinished_jobs()] == [job.id]
