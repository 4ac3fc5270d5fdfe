"""`/batch … speed:relax` end to end: real discord.py against the playground, the dispatcher, the local RunPod endpoint
with real worker subprocesses (relax_prepare, relax_collect) and the local Gemini server's Batch and Files APIs.

One stack serves the module; the Gemini server's batch settings are set per test through its admin endpoint.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from bot.core.models import JobStatus
from local.discord.driver import Driver, Message
from local.discord.state import Upload
from tests.e2e.bot._batchzips import make_zip
from tests.e2e.bot.test_batch_e2e import _job_of_thread, fetch_zip, manifest, new_thread, plan_message, pngs, summaries
from tests.fakes.peel_stack import PeelStack, peel_stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PeelStack]:
    root = tmp_path_factory.mktemp("peel-relax")
    async with peel_stack(
        root / "data",
        worker_env={
            "LOCAL_GEMINI_DRAW_PX": "32",
            "LOCAL_GEMINI_LATENCY": "0",
            "GEMINI_MAX_ATTEMPTS": "1",
            "LOCAL_GEMINI_BATCH_WAIT_S": "0.2",
            "LOCAL_GEMINI_BATCH_CONCURRENCY": "32",
        },
        item_max_attempts=1,
        batch_progress_interval_s=1.0,
        batch_max_items=1000,
        relax_poll_s=0.2,
        relax_part_items=250,
    ) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def gemini(stack: PeelStack, http: aiohttp.ClientSession, path: str, body: Any = None) -> dict[str, Any]:
    url = f"{stack.rt.backends.gemini_url}{path}"
    async with http.post(url, json=body) if body is not None else http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data


async def start_relax(driver: Driver, prompt: str, images: int) -> tuple[Message, dict[str, Any], Message]:
    """Run /batch speed:relax with a ZIP, check the plan shows both prices, press Start."""
    data = await asyncio.to_thread(make_zip, images)
    before = len(driver.messages())
    await driver.slash("batch", {"prompt": prompt, "zip": Upload("relax.zip", data), "speed": "relax"})
    plan = await plan_message(driver, before)
    assert "Batch ready" in plan.content and "Relax" in plan.content and "fast would be" in plan.content, plan
    known = {t["id"] for t in driver.threads()}
    await driver.click(plan, label="Start")
    thread = await new_thread(driver, known)
    progress = await driver.wait_for_message(lambda m: "remaining" in m.content, channel=thread["id"], timeout=10)
    return plan, thread, progress


def dollars(text: str, after: str) -> float:
    """The first `$x.yz` in `text` after `after`."""
    tail = text[text.index(after) :]
    return float(tail[tail.index("$") + 1 :].split()[0].rstrip(")·,"))


@pytest.mark.timeout(240)
async def test_a_1000_image_relax_batch_completes_through_the_batch_api_at_half_the_price(
    stack: PeelStack, http: aiohttp.ClientSession
) -> None:
    alice = stack.driver("alice")
    before = await stack.gemini_stats()
    assert before is not None
    plan, thread, progress = await start_relax(alice, "make it a watercolour", 1000)
    relax_price, fast_price = dollars(plan.content, "Relax"), dollars(plan.content, "fast would be")
    assert relax_price == pytest.approx(fast_price / 2, abs=0.011)
    # Its progress says where Gemini is, not an images/min ETA.
    await alice.wait_for_message(
        lambda m: m.id == progress.id and "🐢 relax" in m.content, channel=thread["id"], timeout=60
    )
    summary = await summaries(alice, thread["id"], 1, timeout=180)
    assert "relax" in summary.content
    job = await _job_of_thread(stack, thread["id"])
    assert job.status is JobStatus.DONE and job.ok == 1000 and job.params.relax
    archive = await fetch_zip(http, summary)
    assert len(pngs(archive)) == 1000
    rows = manifest(archive)["items"]
    assert {row["mode"] for row in rows} == {"relax"} and {row["status"] for row in rows} == {"ok"}
    after = await stack.gemini_stats()
    assert after is not None
    assert after["requests"] == before["requests"]  # nothing online
    assert after["batch_images"] - before["batch_images"] == 1000
    assert after["batches_created"] - before["batches_created"] == 4  # parts of 250
    # The summary shows what the ledger recorded: Gemini's reported usage at the Batch API's half price (1,290 image
    # tokens at $30/1M: $0.0387 an image, so $0.01935 in relax), the plan's half of the table's $0.039 a little over.
    recorded = await stack.rt.ledger.job_cost(job.id)
    assert recorded is not None and f"${recorded:,.2f}" in summary.content, (recorded, summary.content)
    per_image = (1290 * 30 / 1e6) / 2
    assert recorded == pytest.approx(1000 * per_image, rel=0.01)  # half of what fast records for the same usage
    assert recorded == pytest.approx(relax_price, rel=0.02)


@pytest.mark.timeout(120)
async def test_cancel_while_gemini_runs_cancels_the_batch_and_charges_nothing_more(
    stack: PeelStack, http: aiohttp.ClientSession
) -> None:
    await gemini(stack, http, "/admin/faults", {"latency": 0.5, "batch_concurrency": 1})
    try:
        alice = stack.driver("alice")
        _, thread, progress = await start_relax(alice, "stop me", 20)
        await alice.wait_for_message(
            lambda m: m.id == progress.id and "Gemini running" in m.content, channel=thread["id"], timeout=60
        )
        await alice.click(progress, label="Cancel")
        await alice.wait_for_message(lambda m: "Batch cancelled" in m.content, channel=thread["id"])
        job = await _job_of_thread(stack, thread["id"])
        names = [f"peel-{job.id}-"]
        mine: list[dict[str, Any]] = []
        for _ in range(100):
            batches = (await gemini(stack, http, "/admin/batches"))["batches"]
            mine = [b for b in batches if b["displayName"].startswith(names[0])]
            if mine and all(b["state"] == "BATCH_STATE_CANCELLED" for b in mine):
                break
            await asyncio.sleep(0.1)
        assert mine and all(b["state"] == "BATCH_STATE_CANCELLED" for b in mine), mine
        await asyncio.sleep(1.0)  # a few dispatcher rounds: nothing is collected after the cancel
        job = await _job_of_thread(stack, thread["id"])
        assert job.status is JobStatus.CANCELLED and job.ok == 0 and job.cancelled == 20
        assert await stack.rt.ledger.images(job_id=job.id) == []
    finally:
        await gemini(stack, http, "/admin/faults", {"latency": 0, "batch_concurrency": 32})


@pytest.mark.timeout(180)
@pytest.mark.parametrize("retry", ["Retry failed", "Retry failed (fast)"])
async def test_an_expired_batch_fails_its_items_and_retry_failed_makes_them_in_either_mode(
    retry: str, stack: PeelStack, http: aiohttp.ClientSession
) -> None:
    alice = stack.driver("alice")
    await gemini(stack, http, "/admin/faults", {"next_batch_state": "EXPIRED"})
    _, thread, _ = await start_relax(alice, f"expire me {retry}", 8)
    summary = await summaries(alice, thread["id"], 1, timeout=60)
    job = await _job_of_thread(stack, thread["id"])
    assert job.failed == 8 and job.ok == 0
    assert await stack.rt.ledger.error_counts(job.id) == {"EXPIRED": 8}
    archive = await fetch_zip(http, summary)
    rows = manifest(archive)["items"]
    assert {row["error_code"] for row in rows} == {"EXPIRED"}

    before = await stack.gemini_stats()
    assert before is not None
    messages = len(alice.messages(thread["id"]))
    await alice.click(summary, label=retry)
    if retry == "Retry failed (fast)":  # a new batch in the thread, shown with its price before Start
        plan = await alice.wait_for_message(
            lambda m: "Start" in json.dumps(m.components) and m.id != summary.id, channel=thread["id"], timeout=20
        )
        await alice.click(plan, label="Start")
    await alice.wait_for(
        lambda ms: [m for m in ms[messages:] if "Download the ZIP" in m.content], channel=thread["id"], timeout=90
    )
    after = await stack.gemini_stats()
    assert after is not None
    if retry == "Retry failed":  # the same job, again through the Batch API
        job = await _job_of_thread(stack, thread["id"])
        assert job.ok == 8 and job.failed == 0
        assert after["batch_images"] - before["batch_images"] == 8 and after["images"] == before["images"]
    else:
        assert after["images"] - before["images"] == 8 and after["batch_images"] == before["batch_images"]
