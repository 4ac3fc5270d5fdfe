"""`/batch` and `/group` end to end: real discord.py against the playground, the dispatcher, the local RunPod endpoint
with real worker subprocesses, the local Gemini server, file stores and moto's S3 server.

One stack serves the whole module (tests run in file order; the group tests use the first batch's thread). The
local Gemini server draws 32 px images with no latency; faults are set per test through its admin endpoint. Items
are tried once by the dispatcher and once by the worker (`item_max_attempts=1`, `GEMINI_MAX_ATTEMPTS=1`), so an
injected 503 fails its item as UPSTREAM at once, which "Retry failed" then makes. Fewer 503s are injected than
Gemini's breaker counts as an outage (three in a row, `OutagePolicy.down_after_failures`): during an outage the
failures would get their attempt back and wait, which `tests/e2e/discord/test_outage_e2e.py` covers.
"""

import asyncio
import csv
import hashlib
import io
import itertools
import json
import logging
import os
import re
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest
import pytest_asyncio
from aiohttp import web
from PIL import Image

from bot.core.models import ItemStatus, JobKind, JobStatus
from local.discord.driver import Driver, Message
from local.discord.state import Event, Upload
from tests.e2e.bot._batchzips import make_named_zip, make_zip, sha256_of, tiny_png
from tests.e2e.cli.conftest import base_env, run_cli
from tests.fakes.hostile import many_entries_zip
from tests.fakes.peel_stack import PeelStack, peel_stack
from tests.fakes.s3 import MotoS3, moto_s3

__all__ = ["moto_s3"]  # the session fixture, used here

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

PROGRESS_INTERVAL_S = 2.0
FETCH_MAX_BYTES = 4_000_000
# Every ZIP link Peel posts is a stable link of its web server (`/l/{token}`), never an expiring store URL.
LINK = re.compile(r"(http://127\.0\.0\.1:\d+/l/[^\s<>]+)")
BLOCKED = (195, 196, 197, 198, 199)
INJECTED_503 = 2


class EditLog:
    """Every MESSAGE_UPDATE the playground emits, with the time it happened."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str]] = []

    def __call__(self, event: Event) -> None:
        if event.name == "MESSAGE_UPDATE":
            self.events.append((time.monotonic(), str(event.data["id"])))

    def times(self, message_id: str, *, since: float = 0.0) -> list[float]:
        return [t for t, mid in self.events if mid == message_id and t >= since]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def s3_bucket_name(moto_s3: MotoS3) -> AsyncIterator[str]:
    name = await moto_s3.create_bucket()
    yield name
    await moto_s3.drop_bucket(name)


@pytest.fixture(scope="module")
def s3_credentials(moto_s3: MotoS3) -> Iterator[None]:
    """Export destinations read S3 credentials from `STORAGE_*`, as in production."""
    saved = {k: os.environ.get(k) for k in moto_s3.env()}
    os.environ.update(moto_s3.env())
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, moto_s3: MotoS3, s3_bucket_name: str, s3_credentials: None
) -> AsyncIterator[PeelStack]:
    root = tmp_path_factory.mktemp("peel")
    async with peel_stack(
        root / "data",
        worker_env={"LOCAL_GEMINI_DRAW_PX": "32", "LOCAL_GEMINI_LATENCY": "0", "GEMINI_MAX_ATTEMPTS": "1"},
        item_max_attempts=1,
        batch_progress_interval_s=PROGRESS_INTERVAL_S,
        batch_fetch_max_bytes=FETCH_MAX_BYTES,
        batch_max_items=250,
        export_destinations={
            "files": f"file://{root / 'exports'}",
            "s3": moto_s3.store_url(s3_bucket_name, "peel"),
        },
    ) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def edits(stack: PeelStack) -> AsyncIterator[EditLog]:
    log = EditLog()
    unsubscribe = stack.pg.state.subscribe(log)
    yield log
    unsubscribe()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def zip_server() -> AsyncIterator[str]:
    """Serve test ZIPs on 127.0.0.1: a clean 200-image ZIP, one too large, a hostile one, and a redirect."""
    clean = await asyncio.to_thread(make_zip, 200)
    files = {
        "clean.zip": clean,
        "huge.zip": b"\0" * (FETCH_MAX_BYTES + 1),
        "hostile.zip": await asyncio.to_thread(many_entries_zip, 10_001),
    }

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "moved.zip":
            raise web.HTTPFound("/clean.zip")
        if name not in files:
            raise web.HTTPNotFound
        return web.Response(body=files[name], content_type="application/zip")

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def set_faults(stack: PeelStack, http: aiohttp.ClientSession, **faults: Any) -> None:
    async with http.post(f"{stack.rt.backends.gemini_url}/admin/faults", json=faults) as resp:
        assert resp.status == 200, await resp.text()


async def fetch_zip(http: aiohttp.ClientSession, message: Message) -> zipfile.ZipFile:
    """Follow the message's ZIP link as a browser does: a stable link answers 302 to a fresh store URL."""
    match = LINK.search(message.content)
    assert match is not None, message.content
    assert "the link works as long as the ZIP is kept" in message.content, message.content
    async with http.get(match.group(1)) as resp:
        assert resp.status == 200
        assert [hop.status for hop in resp.history] == [302]
        assert "/files/zips/" in str(resp.url)  # the short-lived store URL it was sent to
        data = await resp.read()
    return zipfile.ZipFile(io.BytesIO(data))


def pngs(archive: zipfile.ZipFile) -> list[str]:
    return [n for n in archive.namelist() if n.endswith(".png")]


def manifest(archive: zipfile.ZipFile) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(archive.read("manifest.json"))
    return data


async def plan_message(driver: Driver, before: int, *, channel: str = "general") -> Message:
    """Wait for the newest ephemeral answer (a plan or an error) after `before` messages."""
    found = await driver.wait_for(
        lambda ms: [m for m in ms[before:] if not m.is_loading and (m.content or m.embeds)],
        channel=channel,
        timeout=30,
    )
    return found[0]


async def open_plan(driver: Driver, prompt: str, images: int) -> Message:
    """Run /batch with a ZIP of `images` images and return the plan it answers with (nothing is started)."""
    data = await asyncio.to_thread(make_zip, images)
    before = len(driver.messages())
    await driver.slash("batch", {"prompt": prompt, "zip": Upload("plan.zip", data)})
    return await plan_message(driver, before)


async def new_thread(driver: Driver, known: set[str]) -> dict[str, Any]:
    """Wait for a thread that is not in `known`."""
    found = await driver.wait_until(lambda: [t for t in driver.threads() if t["id"] not in known])
    return found[0]


async def start_batch(driver: Driver, options: dict[str, object]) -> tuple[Message, dict[str, Any], Message]:
    """Run /batch, check the plan, press Start; return the plan, the new thread and its progress message."""
    before = len(driver.messages())
    await driver.slash("batch", options)
    plan = await plan_message(driver, before)
    assert "Batch ready" in plan.content, plan
    known = {t["id"] for t in driver.threads()}
    await driver.click(plan, label="Start")
    thread = await new_thread(driver, known)
    progress = await driver.wait_for_message(lambda m: "remaining" in m.content, channel=thread["id"], timeout=10)
    return plan, thread, progress


async def summaries(driver: Driver, thread_id: str, count: int, *, timeout: float = 90) -> Message:  # noqa: ASYNC109
    def done(messages: list[Message]) -> list[Message]:
        found = [m for m in messages if "Download the ZIP" in m.content]
        return found if len(found) >= count else []

    found = await driver.wait_for(done, channel=thread_id, timeout=timeout)
    return found[count - 1]


def assert_within_edit_limit(times: list[float]) -> None:
    """Discord allows 5 edits per 5 s per channel; Peel edits a batch's message at most once per interval."""
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g >= PROGRESS_INTERVAL_S * 0.9 for g in gaps), gaps
    assert all(times[i + 5] - times[i] >= 5.0 for i in range(len(times) - 5))


shared: dict[str, str] = {}


@pytest.mark.timeout(180)
async def test_batch_runs_in_one_thread_and_retry_makes_only_retryable_failures_when_started(
    stack: PeelStack, http: aiohttp.ClientSession, edits: EditLog
) -> None:
    alice = stack.driver("alice")
    data = await asyncio.to_thread(make_zip, 200, extras={"readme.txt": b"not an image"})
    jobs_before = len(await stack.rt.ledger.list_jobs())
    before = len(alice.messages())
    await alice.slash("batch", {"prompt": "make it blue --ar 1:1", "zip": Upload("set.zip", data)})
    plan = await plan_message(alice, before)
    assert plan.is_ephemeral
    assert "**200** images accepted" in plan.content and "1 skipped" in plan.content
    assert "1 caption without image" in plan.content  # readme.txt: a text file beside no image of its name
    assert "⚙️ Model `gemini-2.5-flash-image` · aspect ratio 1:1 · size 1K" in plan.content
    assert "📝 Prompts: one prompt" in plan.content
    assert "Estimated cost about $7.80" in plan.content  # 200 at $0.039 (gemini-2.5-flash-image, 1K)
    assert [b["label"] for b in plan.buttons()] == ["Start", "Try on 4", "Cancel"]
    assert len(await stack.rt.ledger.list_jobs()) == jobs_before  # nothing queued before Start

    # Five reference images are blocked for safety; the first two Gemini answers are 503s. Calls take 0.15 s, so
    # that the batch lasts several progress intervals (without latency it ends within one).
    await set_faults(
        stack,
        http,
        block_image_sha256=[sha256_of(i) for i in BLOCKED],
        next_5xx=INJECTED_503,
        status_5xx=503,
        latency=0.15,
    )
    stats_before = await stack.gemini_stats()
    known = {t["id"] for t in alice.threads()}
    await alice.click(plan, label="Start")
    thread = await new_thread(alice, known)
    assert thread["name"].startswith("make it blue --ar 1:1") and thread["name"].endswith("200 images")
    shared["thread"] = thread["id"]
    progress = await alice.wait_for_message(lambda m: "remaining" in m.content, channel=thread["id"], timeout=10)
    # Resume replaces Pause once paused; Gallery opens the thread's gallery page at this batch
    assert [b["label"] for b in progress.buttons()] == ["Pause", "Cancel", "Gallery"]

    first = await summaries(alice, thread["id"], 1)
    assert "✅ 193 made · ❌ 2 failed · 🚫 5 blocked" in first.content, first.content
    assert "⏭️ 1 skipped in the ZIP" in first.content
    assert [b["label"] for b in first.buttons()] == [
        "Retry failed",
        "Retry failed (relax, half price)",
        "Retry failed, changed…",
        "New link",
        "Download ZIP",
        "Gallery",
    ]
    bot_messages = [m for m in alice.messages(thread["id"]) if not m.is_ephemeral]
    # one progress message, the first results and one summary: the thread is not flooded
    assert [("remaining" in m.content, "First results" in m.content, m.id == first.id) for m in bot_messages] == [
        (True, False, False),
        (False, True, False),
        (False, False, True),
    ]

    archive = await fetch_zip(http, first)
    assert len(pngs(archive)) == 193
    doc = manifest(archive)
    assert doc["counts"] == {"ok": 193, "error": 7, "cancelled": 0, "skipped": 1, "total": 201}
    by_source = {item["source"]: item for item in doc["items"]}
    assert {by_source[f"photos/img-{i:05d}.png"]["error_code"] for i in BLOCKED} == {"SAFETY"}
    upstream = [item for item in doc["items"] if item["error_code"] == "UPSTREAM"]
    assert len(upstream) == INJECTED_503
    ok = [item for item in doc["items"] if item["status"] == "ok"]
    assert {item["file"] for item in ok} == set(pngs(archive))
    assert all(item["file"] == item["source"] for item in ok)  # the input's folder and name
    assert by_source["readme.txt"]["status"] == "skipped"
    csv_lines = archive.read("manifest.csv").decode().splitlines()
    assert len(csv_lines) == 202 and csv_lines[0].startswith("index,source,status,error_code")

    # The progress message was edited, never faster than the interval, and Discord never answered 429.
    times = edits.times(progress.id)
    assert len(times) >= 2
    assert_within_edit_limit(times)
    assert not [r for r in stack.pg.state.requests if r.endswith("429")]
    final = alice._message(progress.id)
    assert "(done)" in final.content and not final.buttons()

    # Retry failed resubmits the six 503 failures and none of the safety blocks.
    stats_mid = await stack.gemini_stats()
    assert stats_mid["blocked"] - stats_before["blocked"] == len(BLOCKED)
    await alice.click(first, label="Retry failed")
    await alice.wait_for_message(lambda m: "Retrying 2 failed image(s)" in m.content, channel=thread["id"])
    second = await summaries(alice, thread["id"], 2)
    assert "✅ 195 made · ❌ 0 failed · 🚫 5 blocked" in second.content, second.content
    stats_after = await stack.gemini_stats()
    assert stats_after["requests"] - stats_mid["requests"] == INJECTED_503
    assert stats_after["blocked"] == stats_mid["blocked"]
    archive = await fetch_zip(http, second)
    assert len(pngs(archive)) == 195
    assert manifest(archive)["counts"]["error"] == len(BLOCKED)

    # Nothing left that could succeed: the new summary offers no Retry, and the old button resubmits nothing.
    assert "Retry failed" not in [b.get("label") for b in second.buttons()]
    assert any(b.get("url") == LINK.search(second.content).group(1) for b in second.buttons())  # type: ignore[union-attr]
    await alice.click(first, label="Retry failed")
    await alice.wait_for_message(lambda m: "Nothing to retry" in m.content, channel=thread["id"])
    assert (await stack.gemini_stats())["requests"] == stats_after["requests"]

    # New link: a fresh URL to the same archive.
    await alice.click(second, label="New link")
    fresh = await alice.wait_for_message(lambda m: "fresh link" in m.content, channel=thread["id"])
    assert len(pngs(await fetch_zip(http, fresh))) == 195
    await set_faults(stack, http, latency=0)
    await set_faults(stack, http, block_image_sha256=[])


async def refusal_of(driver: Driver, message: Message, label: str, channel: str) -> str:
    """Press a button as `driver` and return the text of the ephemeral error it answered with."""
    before = len(driver.messages(channel))
    await driver.click(message, label=label)
    found = await driver.wait_for(
        lambda ms: [m for m in ms[before:] if m.is_ephemeral and m.embeds], channel=channel, timeout=10
    )
    return " ".join(f"{e.get('title', '')} {e.get('description', '')}" for e in found[0].embeds)


@pytest.mark.timeout(60)
async def test_summary_buttons_refuse_someone_else_and_serve_an_admin_when_pressed(stack: PeelStack) -> None:
    alice, bob, admin = stack.driver("alice"), stack.driver("bob"), stack.driver("admin")
    thread = shared["thread"]
    first = next(m for m in alice.messages(thread) if "Download the ZIP" in m.content)
    requests = (await stack.gemini_stats())["requests"]

    for label in ("New link", "Retry failed"):
        assert "Not your batch" in await refusal_of(bob, first, label, thread)
    assert not [m for m in bob.messages(thread) if "fresh link" in m.content]
    assert (await stack.gemini_stats())["requests"] == requests  # nothing was retried for bob

    await admin.click(first, label="New link")
    await admin.wait_for_message(lambda m: "fresh link" in m.content, channel=thread)


@pytest.mark.timeout(120)
async def test_url_batch_makes_every_image_when_zip_is_served_on_an_allowed_address(
    stack: PeelStack, http: aiohttp.ClientSession, zip_server: str
) -> None:
    alice = stack.driver("alice")
    plan, thread, _ = await start_batch(alice, {"prompt": "pencil sketch", "url": f"{zip_server}/moved.zip"})
    assert "**200** images accepted" in plan.content
    summary = await summaries(alice, thread["id"], 1)
    assert "✅ 200 made" in summary.content
    archive = await fetch_zip(http, summary)
    assert len(pngs(archive)) == 200
    doc = manifest(archive)
    assert doc["counts"]["ok"] == 200 and doc["prompt"] == "pencil sketch"
    assert sorted(i["file"] for i in doc["items"]) == sorted(pngs(archive))


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.1.2.3/set.zip", "private or local address"),
        ("{server}/huge.zip", "limit"),
        ("{server}/hostile.zip", "too_many_entries"),
        ("ftp://127.0.0.1/set.zip", "http"),
    ],
    ids=["private-address", "too-large", "hostile-zip", "not-http"],
)
async def test_batch_is_refused_with_its_reason_when_url_is_unacceptable(
    stack: PeelStack, zip_server: str, url: str, reason: str
) -> None:
    alice = stack.driver("alice")
    jobs_before = len(await stack.rt.ledger.list_jobs())
    before = len(alice.messages())
    await alice.slash("batch", {"prompt": "anything", "url": url.format(server=zip_server)})
    answer = await plan_message(alice, before)
    assert answer.is_ephemeral and answer.embeds, answer
    assert reason in answer.embeds[0]["description"], answer.embeds[0]
    assert not answer.buttons()
    assert len(await stack.rt.ledger.list_jobs()) == jobs_before


@pytest.mark.timeout(60)
async def test_batch_is_refused_naming_the_limit_when_it_has_too_many_images(stack: PeelStack) -> None:
    alice = stack.driver("alice")
    data = await asyncio.to_thread(make_zip, 260)
    before = len(alice.messages())
    await alice.slash("batch", {"prompt": "too many", "zip": Upload("big.zip", data)})
    answer = await plan_message(alice, before)
    assert answer.embeds[0]["title"] == "Batch limit reached"
    assert "260 images; the limit is 250 per batch (10 too many)" in answer.embeds[0]["description"]


@pytest.mark.timeout(60)
async def test_cancel_on_the_plan_queues_nothing_when_pressed(stack: PeelStack) -> None:
    alice = stack.driver("alice")
    jobs_before = len(await stack.rt.ledger.list_jobs())
    plan = await open_plan(alice, "never mind", 3)
    await alice.click(plan, label="Cancel")
    await alice.wait_until(lambda: "Nothing was queued" in alice._message(plan.id).content)
    assert len(await stack.rt.ledger.list_jobs()) == jobs_before


def _plan_id(plan: Message) -> str:
    start = plan.button(label="Start")
    return str(start["custom_id"]).split(":")[-2]


async def test_start_on_an_expired_plan_queues_nothing_and_says_so_when_pressed(stack: PeelStack) -> None:
    alice = stack.driver("alice")
    jobs_before = len(await stack.rt.ledger.list_jobs())
    plan = await open_plan(alice, "too late", 3)
    # A day and a bit passes: the plan's own time is what ages it.
    store = stack.rt.backends.store
    key = f"batches/pending/{_plan_id(plan)}.json"
    stored = json.loads(await store.get_bytes(key))
    stored["created_at"] = (datetime.now(UTC) - timedelta(seconds=stack.settings.batch_plan_ttl_s + 60)).isoformat()
    await store.put(key, json.dumps(stored).encode(), content_type="application/json")

    before = len(alice.messages())
    await alice.click(plan, label="Start")
    error = await plan_message(alice, before)
    assert "has expired" in json.dumps(error.embeds) + error.content
    assert len(await stack.rt.ledger.list_jobs()) == jobs_before
    assert not await store.exists(key)


async def test_sweep_forgets_plans_only_once_they_are_past_their_time(stack: PeelStack) -> None:
    alice = stack.driver("alice")
    key = f"batches/pending/{_plan_id(await open_plan(alice, 'left alone', 2))}.json"
    cog = stack.bot.get_cog("BatchCog") if stack.bot else None
    service = getattr(cog, "service", None)
    assert service is not None
    ttl = timedelta(seconds=stack.settings.batch_plan_ttl_s)

    assert await service.sweep_plans(now=datetime.now(UTC) + ttl - timedelta(minutes=5)) == 0
    assert await stack.rt.backends.store.exists(key)
    assert await service.sweep_plans(now=datetime.now(UTC) + ttl + timedelta(minutes=5)) >= 1
    assert not await stack.rt.backends.store.exists(key)


async def _job_of_thread(stack: PeelStack, thread_id: str) -> Any:
    for job in await stack.rt.ledger.list_jobs():
        where = await stack.rt.ledger.job_message(job.id, "status")
        if job.kind is JobKind.BATCH and where is not None and str(where[0]) == thread_id:
            return job
    raise AssertionError("no batch in that thread")


async def _until(predicate: Any, *, timeout: float = 20) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.1)


@pytest.mark.timeout(150)
async def test_batch_pauses_resumes_and_survives_a_restart_when_asked(
    stack: PeelStack, http: aiohttp.ClientSession, edits: EditLog
) -> None:
    alice = stack.driver("alice")
    await set_faults(stack, http, latency=0.5)
    data = await asyncio.to_thread(make_zip, 160)  # more than the chunks the budget runs at once
    _, thread, progress = await start_batch(alice, {"prompt": "slow and steady", "zip": Upload("slow.zip", data)})
    job = await _job_of_thread(stack, thread["id"])
    ledger = stack.rt.ledger

    async def some_done() -> bool:
        current = await ledger.get_job(job.id)
        return current is not None and current.ok > 0

    await _until(some_done)
    await alice.click(progress, label="Pause")
    await alice.wait_for_message(lambda m: "Batch pausing" in m.content, channel=thread["id"])

    async def settled() -> bool:  # chunks in flight finish; nothing new starts
        return not await ledger.items(job.id, statuses=(ItemStatus.SUBMITTED,))

    await _until(settled)
    paused = await ledger.get_job(job.id)
    assert paused is not None and paused.status is JobStatus.PAUSED and paused.remaining > 0
    await alice.wait_until(lambda: "(paused)" in alice._message(progress.id).content, timeout=10)
    assert [b["label"] for b in alice._message(progress.id).buttons()] == ["Resume", "Cancel", "Gallery"]
    assert "Not your batch" in await refusal_of(stack.driver("bob"), progress, "Resume", thread["id"])
    await asyncio.sleep(1.0)
    still = await ledger.get_job(job.id)
    assert still is not None and still.ok == paused.ok

    # A redeploy in the middle of the batch: the new process finds the progress message and its buttons again.
    await stack.stop_bot()
    restarted_at = time.monotonic()  # before the start: the new process may refresh the message while it starts
    await stack.start_bot()
    ledger = stack.rt.ledger
    await alice.click(progress, label="Resume")
    await alice.wait_for_message(lambda m: "Batch resumed" in m.content, channel=thread["id"], timeout=10)
    summary = await summaries(alice, thread["id"], 1)
    assert "✅ 160 made · ❌ 0 failed" in summary.content, summary.content
    assert len(edits.times(progress.id, since=restarted_at)) >= 1
    assert_within_edit_limit(edits.times(progress.id, since=restarted_at))
    assert len(pngs(await fetch_zip(http, summary))) == 160


@pytest.mark.timeout(120)
async def test_batch_survives_a_restart_with_work_in_flight_when_redeployed(
    stack: PeelStack, http: aiohttp.ClientSession, edits: EditLog
) -> None:
    alice = stack.driver("alice")
    await set_faults(stack, http, latency=0.5)
    data = await asyncio.to_thread(make_zip, 60)
    _, thread, progress = await start_batch(alice, {"prompt": "keep going", "zip": Upload("go.zip", data)})
    job = await _job_of_thread(stack, thread["id"])
    ledger = stack.rt.ledger

    async def running_with_some_done() -> bool:
        current = await ledger.get_job(job.id)
        in_flight = await ledger.items(job.id, statuses=(ItemStatus.SUBMITTED,))
        return current is not None and current.ok > 0 and bool(in_flight)

    await _until(running_with_some_done)
    # The process goes away with chunks in flight (the embedded RunPod endpoint and its workers with it); this
    # stack allows one attempt per item, so only a restart that blames no item can finish the batch whole.
    await stack.stop_bot()
    restarted_at = time.monotonic()  # before the start: the new process may refresh the message while it starts
    await stack.start_bot()
    summary = await summaries(alice, thread["id"], 1)
    assert "✅ 60 made · ❌ 0 failed · 🚫 0 blocked" in summary.content, summary.content
    assert len(edits.times(progress.id, since=restarted_at)) >= 1
    assert len(pngs(await fetch_zip(http, summary))) == 60


@pytest.mark.timeout(120)
async def test_running_batch_shows_its_first_results_once_in_its_thread_when_four_are_made(
    stack: PeelStack, http: aiohttp.ClientSession
) -> None:
    alice = stack.driver("alice")
    await set_faults(stack, http, latency=0.5)
    try:
        data = await asyncio.to_thread(make_zip, 40)
        _, thread, _ = await start_batch(alice, {"prompt": "show me early", "zip": Upload("early.zip", data)})
        first = await alice.wait_for_message(lambda m: "First results" in m.content, channel=thread["id"], timeout=30)
        summary = await summaries(alice, thread["id"], 1)
    finally:
        await set_faults(stack, http, latency=0.0)

    assert "(4 of 40)" in first.content and "1. img-0000" in first.content, first.content
    assert "**Pause** or **Cancel**" in first.content
    grid = Image.open(io.BytesIO(alice.attachment_bytes(first.attachments[0])))
    assert grid.width > 0 and grid.height > 0
    in_thread = alice.messages(channel=thread["id"])
    assert sum("First results" in m.content for m in in_thread) == 1
    assert int(first.id) < int(summary.id)  # shown while the batch ran, not after


@pytest.mark.timeout(120)
async def test_cancel_stops_the_batch_and_zips_what_was_made_when_pressed(
    stack: PeelStack, http: aiohttp.ClientSession
) -> None:
    alice = stack.driver("alice")
    await set_faults(stack, http, latency=0.5)
    data = await asyncio.to_thread(make_zip, 80)
    _, thread, progress = await start_batch(alice, {"prompt": "stop me", "zip": Upload("stop.zip", data)})
    bob = stack.driver("bob")
    assert "owner or a Peel admin" in await refusal_of(bob, progress, "Cancel", thread["id"])
    assert "Not your batch" in await refusal_of(bob, progress, "Pause", thread["id"])
    await alice.click(progress, label="Cancel")
    await alice.wait_for_message(lambda m: "Batch cancelled" in m.content, channel=thread["id"])
    summary = await summaries(alice, thread["id"], 1)
    assert "(cancelled)" in summary.content
    job = await _job_of_thread(stack, thread["id"])
    assert job.status is JobStatus.CANCELLED and job.cancelled > 0
    archive = await fetch_zip(http, summary)
    assert len(pngs(archive)) == job.ok
    assert manifest(archive)["counts"]["cancelled"] == job.cancelled
    await set_faults(stack, http, latency=0)


@pytest.mark.timeout(120)
async def test_batch_zip_has_the_inputs_three_folders_and_names_when_the_input_had_three_folders(
    stack: PeelStack, http: aiohttp.ClientSession
) -> None:
    alice = stack.driver("alice")
    names = [f"{folder}/img_{i:04d}.png" for folder in ("set/part1", "set/part2", "extra") for i in range(3)]
    data = await asyncio.to_thread(make_named_zip, names)
    _, thread, _ = await start_batch(alice, {"prompt": "keep my folders", "zip": Upload("folders.zip", data)})
    summary = await summaries(alice, thread["id"], 1)

    archive = await fetch_zip(http, summary)
    assert sorted(pngs(archive)) == sorted(names)
    assert {name.rsplit("/", 1)[0] for name in pngs(archive)} == {"set/part1", "set/part2", "extra"}
    assert {item["source"]: item["file"] for item in manifest(archive)["items"]} == {name: name for name in names}
    job = await _job_of_thread(stack, thread["id"])
    store = stack.rt.backends.store
    async for item in stack.rt.ledger.iter_items(job.id):  # each output sits where its own input sat
        assert item.inputs.source_name is not None
        assert archive.read(item.inputs.source_name) == await store.get_bytes(item.output_key)


# ---- groups ----------------------------------------------------------------------------------------------------


async def ephemeral_answer(driver: Driver, name: str, options: dict[str, object], *, channel: str) -> Message:
    before = len(driver.messages(channel))
    await driver.slash(name, options, channel=channel)
    return await plan_message(driver, before, channel=channel)


@pytest.mark.timeout(60)
async def test_group_download_zips_the_threads_images_when_asked(stack: PeelStack, http: aiohttp.ClientSession) -> None:
    alice = stack.driver("alice")
    answer = await ephemeral_answer(alice, "group download", {}, channel=shared["thread"])
    assert "195 images" in answer.content
    archive = await fetch_zip(http, answer)
    assert len(pngs(archive)) == 195
    doc = manifest(archive)
    assert doc["counts"]["ok"] == 195 and {i["file"] for i in doc["items"]} == set(pngs(archive))


def _read_export(root: Path) -> tuple[list[str], list[str]]:
    [folder] = list(root.rglob("manifest.json"))
    names = sorted(p.name for p in folder.parent.iterdir())
    return names, [i["file"] for i in json.loads(folder.read_text())["items"]]


@pytest.mark.timeout(60)
async def test_group_export_copies_images_and_manifest_when_destination_is_a_file_store(stack: PeelStack) -> None:
    admin = stack.driver("admin")
    answer = await ephemeral_answer(
        admin, "group export", {"bucket": "files", "prefix": "runs/one"}, channel=shared["thread"]
    )
    await admin.wait_until(lambda: "Exported" in admin._message(answer.id).content, timeout=30)
    assert "195 images" in admin._message(answer.id).content
    root = stack.settings.export_destinations["files"].removeprefix("file://")
    names, files = await asyncio.to_thread(_read_export, Path(root) / "runs" / "one")
    assert "manifest.csv" in names and "manifest.json" in names
    assert sorted(files) == sorted(n for n in names if n.endswith(".png")) and len(files) == 195


@pytest.mark.timeout(60)
async def test_group_export_copies_images_and_manifest_when_destination_is_s3(
    stack: PeelStack, moto_s3: MotoS3, s3_bucket_name: str
) -> None:
    admin = stack.driver("admin")
    answer = await ephemeral_answer(admin, "group export", {"bucket": "s3"}, channel=shared["thread"])
    await admin.wait_until(lambda: "Exported" in admin._message(answer.id).content, timeout=30)

    def listing() -> tuple[list[str], dict[str, Any]]:
        client = moto_s3.client()
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket_name, Prefix="peel/")["Contents"]]
        [doc_key] = [k for k in keys if k.endswith("manifest.json")]
        doc = json.loads(client.get_object(Bucket=s3_bucket_name, Key=doc_key)["Body"].read())
        return keys, doc

    keys, doc = await asyncio.to_thread(listing)
    assert len([k for k in keys if k.endswith(".png")]) == 195
    assert any(k.endswith("manifest.csv") for k in keys)
    assert {k.rsplit("/", 1)[-1] for k in keys if k.endswith(".png")} == {i["file"] for i in doc["items"]}


@pytest.mark.timeout(60)
async def test_group_export_is_refused_when_user_has_no_export_role(stack: PeelStack) -> None:
    alice = stack.driver("alice")
    answer = await ephemeral_answer(alice, "group export", {"bucket": "files"}, channel=shared["thread"])
    assert "export roles" in answer.embeds[0]["description"]


@pytest.mark.timeout(60)
async def test_group_new_list_and_rename_track_threads_when_used(stack: PeelStack) -> None:
    alice = stack.driver("alice")
    known = {t["id"] for t in alice.threads()}
    opened = await ephemeral_answer(alice, "group new", {"name": "moodboard"}, channel="general")
    assert "Opened" in opened.content
    thread = next(t for t in alice.threads() if t["id"] not in known)
    assert thread["name"] == "moodboard"
    listed = await ephemeral_answer(alice, "group list", {}, channel="general")
    assert "**moodboard**" in listed.content and "195 images" in listed.content
    renamed = await ephemeral_answer(alice, "group rename", {"name": "mood board"}, channel=thread["id"])
    assert "Renamed" in renamed.content
    await alice.wait_until(lambda: stack.pg.state.channels[thread["id"]]["name"] == "mood board")
    listed = await ephemeral_answer(alice, "group list", {}, channel="general")
    assert "**mood board**" in listed.content

    # Discord takes two thread renames in 10 minutes: the third renames the group only, and says so at once
    # instead of waiting out a 429 of several minutes.
    await ephemeral_answer(alice, "group rename", {"name": "mood board 2"}, channel=thread["id"])
    await alice.wait_until(lambda: stack.pg.state.channels[thread["id"]]["name"] == "mood board 2")
    third = await ephemeral_answer(alice, "group rename", {"name": "mood board 3"}, channel=thread["id"])
    assert "Renamed to **mood board 3**" in third.content and "keeps its name" in third.content
    assert stack.pg.state.channels[thread["id"]]["name"] == "mood board 2"
    listed = await ephemeral_answer(alice, "group list", {}, channel="general")
    assert "**mood board 3**" in listed.content


@pytest.mark.timeout(60)
async def test_attachment_is_streamed_to_disk_not_read_into_memory(
    stack: PeelStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_whole(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("Attachment.read() holds the whole attachment in memory")

    monkeypatch.setattr(discord.Attachment, "read", read_whole)
    plan = await open_plan(stack.driver("alice"), "streamed", 3)
    assert [b["label"] for b in plan.buttons()][:1] == ["Start"], plan


# ---- a thread deleted mid-batch ------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_summary_goes_to_the_channel_and_edits_stop_when_the_thread_is_deleted_mid_batch(
    stack: PeelStack, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    alice = stack.driver("alice")
    caplog.set_level(logging.WARNING)
    await set_faults(stack, http, latency=0.5)  # 100 images at 10 at a time: about 5 s, a few progress intervals
    try:
        data = await asyncio.to_thread(make_zip, 100)
        _, thread, _ = await start_batch(alice, {"prompt": "lose my thread", "zip": Upload("lost.zip", data)})
        job = await _job_of_thread(stack, thread["id"])
        edit_path = f"/channels/{thread['id']}/messages/"
        await alice.delete_channel(thread["id"])
        edits_before = sum(1 for r in stack.pg.state.requests if r.startswith("PATCH") and edit_path in r)
        running = await stack.rt.ledger.get_job(job.id)
        assert running is not None and not running.status.is_final  # the thread went while the batch ran

        summary = await alice.wait_for_message(
            lambda m: "Download the ZIP" in m.content and "lose my thread" in m.content, channel="general", timeout=60
        )
    finally:
        await set_faults(stack, http, latency=0)

    assert "thread was deleted or is out of reach" in summary.content
    assert "✅ 100 made" in summary.content, summary.content
    assert len(pngs(await fetch_zip(http, summary))) == 100
    assert [b["label"] for b in summary.buttons()] == [
        "New link",
        "Download ZIP",
        "Gallery",
    ]  # the gallery outlives its thread
    # One edit found the thread gone (404, 10003 Unknown Channel); none after it.
    edits = [r for r in stack.pg.state.requests if r.startswith("PATCH") and edit_path in r]
    assert len(edits) - edits_before == 1 and edits[-1].endswith("-> 404"), edits
    records = [r for r in caplog.records if r.name.startswith("bot.")]
    assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR], [r.getMessage() for r in records]
    gone = [r for r in records if r.levelno == logging.WARNING and "refused its progress message" in r.getMessage()]
    assert len(gone) == 1, [r.getMessage() for r in records]


@pytest.mark.timeout(120)
async def test_summary_is_sent_by_dm_when_the_thread_and_its_channel_are_deleted_mid_batch(
    stack: PeelStack, http: aiohttp.ClientSession
) -> None:
    alice = stack.driver("alice")
    await set_faults(stack, http, latency=0.5)
    try:
        data = await asyncio.to_thread(make_zip, 60)
        before = len(alice.messages("batch"))
        await alice.slash("batch", {"prompt": "lose my channel", "zip": Upload("gone.zip", data)}, channel="batch")
        plan = await plan_message(alice, before, channel="batch")
        known = {t["id"] for t in alice.threads()}
        await alice.click(plan, label="Start")
        thread = await new_thread(alice, known)
        await alice.wait_for_message(lambda m: "remaining" in m.content, channel=thread["id"], timeout=10)
        await alice.delete_channel("batch")  # the channel, and its thread with it

        def dm() -> str | None:
            return next(
                (
                    c["id"]
                    for c in stack.pg.state.channels.values()
                    if c["type"] == 1 and c["recipients"][0]["id"] == alice.user_id
                ),
                None,
            )

        dm_id = await alice.wait_until(dm, timeout=60)
        assert dm_id is not None  # wait_until only returns truthy results
        summary = await alice.wait_for_message(lambda m: "Download the ZIP" in m.content, channel=dm_id, timeout=30)
    finally:
        await set_faults(stack, http, latency=0)

    assert "lose my channel" in summary.content and "thread was deleted" in summary.content
    assert len(pngs(await fetch_zip(http, summary))) == 60


# ---- one batch flow: the CLI and /batch ----------------------------------------------------------------------------


def _rows(archive: zipfile.ZipFile) -> list[dict[str, str]]:
    """manifest.csv's rows without the seed (each run draws its own) and in index order."""
    rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode("utf-8-sig"))))
    return sorted(({k: v for k, v in row.items() if k != "seed"} for row in rows), key=lambda r: int(r["index"]))


@pytest.mark.timeout(180)
async def test_cli_and_discord_write_the_same_manifest_when_given_the_same_zip_and_prompt(
    stack: PeelStack, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    extras = {"notes/readme.txt": b"not an image", "../escape.png": tiny_png(99), "photos/broken.png": b"\x89PNG"}
    data = await asyncio.to_thread(make_zip, 5, extras=extras)
    alice = stack.driver("alice")
    _, thread, _ = await start_batch(alice, {"prompt": "one flow", "zip": Upload("same.zip", data)})
    from_discord = await fetch_zip(http, await summaries(alice, thread["id"], 1))

    source, out = tmp_path / "same.zip", tmp_path / "out.zip"
    await asyncio.to_thread(source.write_bytes, data)
    data_dir = str(tmp_path / "cli-data")
    args = ["batch", str(source), "--prompt", "one flow", "--data", data_dir, "--out", str(out), "--yes"]
    run = await asyncio.to_thread(run_cli, args, cwd=tmp_path, env=base_env(), timeout_s=150)
    assert run.returncode == 0, run.stderr
    from_cli = zipfile.ZipFile(io.BytesIO(await asyncio.to_thread(out.read_bytes)))

    rows = _rows(from_discord)
    assert rows == _rows(from_cli)
    assert [r["status"] for r in rows].count("ok") == 5 and any(r["status"] == "skipped" for r in rows), rows
    assert sorted(pngs(from_discord)) == sorted(pngs(from_cli))


@pytest.mark.timeout(120)
async def test_try_on_4_shows_the_trial_then_start_the_rest_makes_only_the_others(
    stack: PeelStack, http: aiohttp.ClientSession
) -> None:
    alice = stack.driver("alice")

    async def gemini_requests() -> int:
        async with http.get(f"{stack.rt.backends.gemini_url}/stats") as resp:
            return int((await resp.json())["requests"])

    data = await asyncio.to_thread(make_zip, 30)
    before = len(alice.messages())
    await alice.slash("batch", {"prompt": "try me first", "zip": Upload("trial.zip", data)})
    plan = await plan_message(alice, before)
    known = {t["id"] for t in alice.threads()}
    calls_before = await gemini_requests()
    await alice.click(plan, label="Try on 4")
    thread = await new_thread(alice, known)
    trial = await alice.wait_for_message(lambda m: "Trial" in m.content, channel=thread["id"], timeout=30)
    job = await _job_of_thread(stack, thread["id"])
    held = await stack.rt.ledger.get_job(job.id)
    calls_after_trial = await gemini_requests()
    await alice.wait_for_message(  # the progress message says what it waits for, not just "paused"
        lambda m: "(trial done · waiting for Start the rest)" in m.content, channel=thread["id"], timeout=10
    )

    await alice.click(trial, label="Start the rest (26)")
    summary = await summaries(alice, thread["id"], 1)
    calls_in_all = await gemini_requests()
    trial_after = next(m for m in alice.messages(thread["id"]) if m.id == trial.id)

    assert trial_after.buttons() == []  # the offer is taken: Start the rest cannot be pressed twice
    assert "4 made of the first 4" in trial.content and "other 26 images" in trial.content, trial.content
    assert held is not None and held.status is JobStatus.PAUSED and held.ok == 4
    assert calls_after_trial - calls_before == 4
    assert calls_in_all - calls_before == 30  # 4 + (30 - 4), not 30 + 4
    assert "✅ 30 made · ❌ 0 failed" in summary.content, summary.content
    assert len(pngs(await fetch_zip(http, summary))) == 30


async def test_retry_failed_changed_makes_only_the_failed_images_with_the_new_prompt_and_model_in_the_same_thread(
    stack: PeelStack, http: aiohttp.ClientSession
) -> None:
    alice = stack.driver("alice")
    blocked = (1, 4)
    await set_faults(stack, http, block_image_sha256=[sha256_of(i) for i in blocked])
    try:
        _plan, thread, _progress = await start_batch(
            alice, {"prompt": "paint a fox", "zip": Upload("fox.zip", await asyncio.to_thread(make_zip, 6))}
        )
        first = await summaries(alice, thread["id"], 1)
        original = await _job_of_thread(stack, thread["id"])
    finally:
        await set_faults(stack, http, block_image_sha256=[])  # what the new prompt and model changed
    threads = {t["id"] for t in alice.threads()}
    seen = (await stack.gemini_stats())["requests"]

    opened = await alice.click(first, label="Retry failed, changed…")
    await opened.wait_ack()
    modal = opened.modal
    before = len(alice.messages(thread["id"]))
    await alice.submit_modal(opened, {"prompt": "paint a friendly fox", "model": "pro"})
    plan = await plan_message(alice, before, channel=thread["id"])
    planned = plan.content  # Start replaces it with "Started: …"
    await alice.click(plan, label="Start")
    second = await summaries(alice, thread["id"], 2)
    made = (await stack.gemini_stats())["requests"] - seen
    async with http.get(f"{stack.rt.backends.gemini_url}/admin/requests") as resp:
        sent = (await resp.json())[-made:]  # the log keeps the last requests only
    unchanged = await stack.rt.ledger.get_job(original.id)

    assert "✅ 4 made · ❌ 0 failed · 🚫 2 blocked" in first.content, first.content
    assert modal is not None and "paint a fox" in json.dumps(modal)
    assert "↩️ Retry of the 2 failed image(s)" in planned and "**2** images" in planned, planned
    assert {t["id"] for t in alice.threads()} == threads  # no new thread: the retry runs in the batch's
    assert "✅ 2 made · ❌ 0 failed · 🚫 0 blocked" in second.content, second.content
    assert (
        sorted((r["model"], r["prompt"]) for r in sent) == [("gemini-3-pro-image-preview", "paint a friendly fox")] * 2
    )
    assert unchanged is not None and unchanged.failed == 2  # the original batch's manifest still says failed
    archive = await fetch_zip(http, second)
    assert sorted(pngs(archive)) == [f"photos/img-{i:05d}.png" for i in blocked]  # the same names as the inputs


async def test_shared_references_attached_to_batch_go_with_every_image(
    stack: PeelStack, http: aiohttp.ClientSession
) -> None:
    alice = stack.driver("alice")
    style = tiny_png(950)
    zipped = await asyncio.to_thread(make_zip, 3)
    seen = (await stack.gemini_stats())["requests"]

    _plan, thread, _progress = await start_batch(
        alice, {"prompt": "in this style", "zip": Upload("s.zip", zipped), "ref1": Upload("style.png", style)}
    )
    summary = await summaries(alice, thread["id"], 1)
    made = (await stack.gemini_stats())["requests"] - seen
    async with http.get(f"{stack.rt.backends.gemini_url}/admin/requests") as resp:
        sent = (await resp.json())[-made:]

    assert "✅ 3 made" in summary.content, summary.content
    assert made == 3 and all(r["images"] == 2 for r in sent)  # each image's own input, then the shared one
    assert all(r["image_sha256"][1] == hashlib.sha256(style).hexdigest() for r in sent)


# ---- a prompt per image: prompts.csv through /batch and the CLI ---------------------------------------------------

ROW_COUNT = 60
BAD_ROWS = {  # line → (where the plan and manifest say it is, its code)
    12: ("prompts.csv line 12 (photos/absent.png)", "row_missing_file"),
    23: ("prompts.csv line 23 (photos/img-00004.png)", "row_bad_value"),
    34: ("prompts.csv line 34 (photos/img-00007.png)", "row_duplicate"),
}


def _row_prompt(i: int) -> str:
    return f"row {i}: a paper lantern, é {i * 7}"


def _prompts_csv() -> bytes:
    rows = [[f"photos/img-{i:05d}.png", _row_prompt(i), ""] for i in range(ROW_COUNT)]
    rows.insert(10, ["photos/absent.png", "no such image", ""])
    rows.insert(21, ["photos/img-00004.png", "an impossible shape", "7:3"])
    rows.insert(32, ["photos/img-00007.png", "a second row for one image", ""])
    out = io.StringIO()
    csv.writer(out).writerows([["file", "prompt", "aspect_ratio"], *rows])  # quotes the prompts' commas
    return out.getvalue().encode()


def _embedded_prompts(archive: zipfile.ZipFile) -> dict[str, str]:
    """Return each output's embedded prompt (its PNG text chunk) by the source image the manifest names."""
    rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode("utf-8-sig"))))
    found = {}
    for row in rows:
        if row["status"] == "ok":
            with Image.open(io.BytesIO(archive.read(row["file"]))) as image:
                found[row["source"]] = image.text["prompt"]  # type: ignore[attr-defined]  # PngImageFile.text
    return found


def _skipped(archive: zipfile.ZipFile) -> dict[str, str]:
    rows = csv.DictReader(io.StringIO(archive.read("manifest.csv").decode("utf-8-sig")))
    return {row["source"]: row["error_code"] for row in rows if row["status"] == "skipped"}


@pytest.mark.timeout(240)
async def test_a_prompts_csv_gives_each_of_60_images_its_rows_prompt_through_discord_and_the_cli(
    stack: PeelStack, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = await asyncio.to_thread(make_zip, ROW_COUNT, extras={"prompts.csv": _prompts_csv()})
    expected = {f"photos/img-{i:05d}.png": _row_prompt(i) for i in range(ROW_COUNT)}
    bad = dict(BAD_ROWS.values())
    alice = stack.driver("alice")

    plan, thread, _ = await start_batch(alice, {"zip": Upload("rows.zip", data)})  # no prompt: the rows give them
    assert "Prompts: prompts.csv: 63 rows" in plan.content, plan.content
    assert all(where in plan.content for where in bad), plan.content
    from_discord = await fetch_zip(http, await summaries(alice, thread["id"], 1))
    assert _embedded_prompts(from_discord) == expected
    assert _skipped(from_discord) == bad

    source, out = tmp_path / "rows.zip", tmp_path / "out.zip"
    await asyncio.to_thread(source.write_bytes, data)
    args = ["batch", str(source), "--data", str(tmp_path / "cli-data"), "--out", str(out), "--yes"]
    run = await asyncio.to_thread(run_cli, args, cwd=tmp_path, env=base_env(), timeout_s=200)
    assert run.returncode == 0, run.stderr
    assert all(where in run.stderr for where in bad), run.stderr
    from_cli = zipfile.ZipFile(io.BytesIO(await asyncio.to_thread(out.read_bytes)))
    assert _embedded_prompts(from_cli) == expected
    assert _skipped(from_cli) == bad
