"""RunPod unreachable, then back, RunPod refusing the key, and Gemini not answering, through the local Discord and
the embedded back ends.

The local RunPod endpoint's client face goes offline (connections drop unanswered, as in an outage of RunPod's API)
while its workers and jobs carry on; the local Gemini server answers every call 503 while its fault is set; the
admin channel is the playground owner's DM with the bot.
"""

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.core.models import ItemStatus, JobKind, JobStatus
from local.discord.driver import Message
from local.discord.state import Upload
from tests.e2e.bot._batchzips import make_zip
from tests.e2e.discord.conftest import ephemeral_embed, imagine, result_of, set_faults
from tests.fakes.peel_stack import PeelStack, peel_stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

DELAYED = "delayed: image workers unreachable since <t:"
GEMINI_DELAYED = "delayed: Gemini not answering since <t:"
# The workers' own Gemini retries made short (2 attempts, 0.05 s apart): an item fails in well under a second
# instead of ~15 s, so the three in a row that make Gemini down come at once.
SHORT_GEMINI_RETRIES = {"GEMINI_MAX_ATTEMPTS": "2", "GEMINI_BACKOFF_BASE_S": "0.05"}
BATCH_IMAGES = 6


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PeelStack]:
    async with peel_stack(
        tmp_path_factory.mktemp("outage"),
        worker_env=SHORT_GEMINI_RETRIES,
        progress_edit_interval_s=0.5,
        batch_progress_interval_s=1.0,
        # The admin channel must exist before the bot starts: created by the fixture below, set here late.
    ) as s:
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def admin_channel(stack: PeelStack) -> str:
    """The owner's DM with the bot as ADMIN_CHANNEL_ID, with the bot restarted to load the alerts cog."""
    channel_id = str(stack.pg.state.open_dm(stack.pg.state.owner_id)["id"])
    stack.settings = stack.settings.model_copy(update={"admin_channel_id": int(channel_id)})
    await stack.restart_bot()
    return channel_id


def alerts(stack: PeelStack, channel_id: str) -> list[str]:
    return [m.content for m in stack.driver("admin").messages(channel_id)]


async def batch_progress(stack: PeelStack, prompt: str) -> tuple[Message, str]:
    """Start a batch of `BATCH_IMAGES` images; return its progress message and thread id."""
    d = stack.driver()
    data = await asyncio.to_thread(make_zip, BATCH_IMAGES)
    before = len(d.messages())
    await d.slash("batch", {"prompt": prompt, "zip": Upload("outage.zip", data)})
    plan = await d.wait_for(
        lambda ms: [m for m in ms[before:] if "Batch ready" in m.content], channel="general", timeout=30
    )
    known = {t["id"] for t in d.threads()}
    await d.click(plan[0], label="Start")
    threads = await d.wait_until(lambda: [t for t in d.threads() if t["id"] not in known])
    thread_id = str(threads[0]["id"])
    progress = await d.wait_for_message(lambda m: "remaining" in m.content, channel=thread_id, timeout=10)
    return progress, thread_id


@pytest.mark.allow_blocking  # the admin-channel fixture restarts the bot (worker subprocesses: path lookups)
async def test_imagine_and_batch_say_delayed_while_runpod_is_unreachable_and_finish_when_it_is_back(
    stack: PeelStack, admin_channel: str
) -> None:
    endpoint = stack.rt.backends.endpoint
    assert endpoint is not None
    d = stack.driver()
    endpoint.client_offline = True
    try:
        run = await imagine(stack, "outage fox")
        progress, thread_id = await batch_progress(stack, "outage batch")
        await d.wait_for_message(lambda m: m.content.startswith("**outage fox**") and DELAYED in m.content, timeout=60)
        await d.wait_for_message(lambda m: m.id == progress.id and DELAYED in m.content, channel=thread_id, timeout=60)
        down = [a for a in alerts(stack, admin_channel) if "RunPod unreachable since" in a]
        assert len(down) == 1
        await asyncio.sleep(2)  # probes keep failing meanwhile: still one alert
        assert len([a for a in alerts(stack, admin_channel) if "unreachable" in a]) == 1
    finally:
        endpoint.client_offline = False
    final = await d.wait_for_message(result_of("outage fox"), timeout=60)
    assert DELAYED not in final.content
    await d.wait_for(lambda ms: [m for m in ms if "Download the ZIP" in m.content], channel=thread_id, timeout=60)
    back = [a for a in alerts(stack, admin_channel) if "RunPod is back after" in a]
    assert len(back) == 1
    assert run.response() is not None

    # Nothing lost or doubled: every image made once, every item tried once, one RunPod job per chunk.
    jobs = [j for j in await stack.rt.ledger.list_jobs() if j.prompt in ("outage fox", "outage batch")]
    assert {j.kind for j in jobs} == {JobKind.GRID, JobKind.BATCH}
    for job in jobs:
        assert job.status is JobStatus.DONE and job.ok == job.total
        items = await stack.rt.ledger.items(job.id)
        assert all(i.status is ItemStatus.OK and i.attempts == 1 for i in items), items
        chunks = [c for c in await stack.rt.ledger.chunks() if c.job_id == job.id and c.runpod_id is not None]
        assert sum(len(c.indices) for c in chunks) == job.total


async def test_a_refused_key_fails_the_job_within_seconds_and_tells_the_admins_once(
    stack: PeelStack, admin_channel: str
) -> None:
    endpoint = stack.rt.backends.endpoint
    assert endpoint is not None
    d = stack.driver()
    key = endpoint.api_key
    endpoint.api_key = "rotated-in-the-console"  # Peel's key no longer has access
    try:
        await imagine(stack, "keyless fox")
        failed = await d.wait_for_message(lambda m: "misconfigured" in ephemeral_embed(m), timeout=10)
        assert "the admins have been told" in ephemeral_embed(failed)
        await imagine(stack, "keyless again")  # refused at once, no second alert
        await d.wait_for_message(lambda m: "misconfigured" in ephemeral_embed(m) and m.id != failed.id, timeout=10)
        configs = [a for a in alerts(stack, admin_channel) if "refused Peel's configuration" in a]
        assert len(configs) == 1
        assert "RUNPOD_API_KEY" in configs[0] and "401" in configs[0]
    finally:
        endpoint.api_key = key
    await stack.driver("admin").wait_for(
        lambda ms: [m for m in ms if "RunPod is back after" in m.content][1:], channel=admin_channel, timeout=60
    )


async def test_imagine_says_gemini_is_not_answering_and_finishes_once_it_answers_each_image_made_once(
    stack: PeelStack, admin_channel: str
) -> None:
    d = stack.driver()
    before = await stack.gemini_stats()
    await set_faults(stack, {"rate_5xx": 1.0, "status_5xx": 503})  # every generateContent answers 503
    try:
        await imagine(stack, "gemini fox")
        await d.wait_for_message(
            lambda m: m.content.startswith("**gemini fox**") and GEMINI_DELAYED in m.content, timeout=60
        )
        down = [a for a in alerts(stack, admin_channel) if "Gemini unreachable since" in a]
        assert len(down) == 1 and "GEMINI_BASE_URL" in down[0]
        await asyncio.sleep(2)  # probes keep failing meanwhile: still one alert
        assert len([a for a in alerts(stack, admin_channel) if "Gemini unreachable" in a]) == 1
    finally:
        await set_faults(stack, {"rate_5xx": 0.0, "status_5xx": None})
    final = await d.wait_for_message(result_of("gemini fox"), timeout=60)
    assert GEMINI_DELAYED not in final.content
    back = await stack.driver("admin").wait_for(
        lambda ms: [m for m in ms if "Gemini is back after" in m.content], channel=admin_channel, timeout=10
    )
    assert len(back) == 1

    [job] = [j for j in await stack.rt.ledger.list_jobs() if j.prompt == "gemini fox"]
    assert job.status is JobStatus.DONE and job.ok == job.total == 4
    assert all(i.status is ItemStatus.OK for i in await stack.rt.ledger.items(job.id))
    after = await stack.gemini_stats()
    assert after["images"] - before["images"] == 4  # each image made once: the probe's, then the other three
