"""Budgets through the local Discord: money caps of a guild and a user, role gates, and a restart over all of it.

One stack serves the module (its tests run in file order and build on each other's spend): the guild's daily cap
is `GUILD_DAILY` (settings), the flash model's 1K images are estimated at `FLASH_1K` each, and the local Gemini
reports realistic `usageMetadata`, from which each item's cost is recorded. Every bound on what was spent reads the
recorded spend (`Ledger.spent`); it holds whether the caps count recorded costs or the price table's estimate of
what was made, as both stay within the cap plus the calls in flight when it was reached.
"""

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from bot.core.budgets import Period, ScopeKind, micros, next_reset, period_start, usd_text
from bot.core.models import ItemStatus, Job, JobId, JobKind, JobStatus
from bot.core.pricing import cost_of
from bot.settings import RoleBudget
from local.discord.driver import Driver, InteractionHandle, Message
from local.discord.state import Upload
from tests.e2e.bot._batchzips import make_zip
from tests.e2e.discord.conftest import WAIT_S, ephemeral_embed, set_faults
from tests.fakes.peel_stack import PeelStack, peel_stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

FLASH_1K = micros("0.039")  # the catalogue's estimate of one gemini-2.5-flash-image 1K image
PRO_1K = micros("0.134")  # and of one gemini-3-pro-image 1K image
GUILD_DAILY = Decimal("0.50")  # one batch of BOB_IMAGES fits, and not another of ALICE_IMAGES beside it
BOB_IMAGES = 10  # $0.39 estimated
ALICE_IMAGES = 4  # $0.156 estimated: $0.546 with bob's, over the cap
UTC_ZONE = ZoneInfo("UTC")
# "This server's daily budget is $0.50; $0.39 is spent or reserved, and this would cost $0.156. It resets at …."
REFUSAL = re.compile(
    r"(?P<whose>Your|Your role's|This server's) (?P<period>daily|monthly) budget is (?P<cap>\$[\d.,]+); "
    r"(?P<spent>\$[\d.,]+) is spent or reserved, and this would cost (?P<cost>\$[\d.,]+)\. "
    r"It resets at (?P<resets>[\d-]+ [\d:]+ \w+)\."
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PeelStack]:
    async with peel_stack(
        tmp_path_factory.mktemp("budgets"),
        worker_env={"LOCAL_GEMINI_DRAW_PX": "32"},
        budget_guild_daily_usd=GUILD_DAILY,
        gemini_concurrency=2,  # chunks of a few calls, so that a cap can be met between them
        batch_progress_interval_s=1.0,
        progress_edit_interval_s=0.5,
    ) as s:
        yield s


# ---- helpers ----------------------------------------------------------------------------------------------------


def guild_id(stack: PeelStack) -> int:
    return int(stack.pg.state.guild_id)


def user_id(stack: PeelStack, name: str) -> int:
    return int(stack.pg.state.user_named(name)["id"])


def today() -> datetime:
    return period_start(datetime.now(UTC), Period.DAY, UTC_ZONE)


def resets_text() -> str:
    """Return how a refusal names the next daily reset (midnight UTC, the default `BUDGET_TIMEZONE`)."""
    return next_reset(datetime.now(UTC), Period.DAY, UTC_ZONE).strftime("%Y-%m-%d %H:%M %Z")


def text_of(message: Message) -> str:
    return f"{message.content} {ephemeral_embed(message)}"


async def newest_answer(driver: Driver, before: int, *, channel: str = "general") -> Message:
    """Wait for the first answer (a plan or an error) posted after `before` messages of the channel."""
    found = await driver.wait_for(
        lambda ms: [m for m in ms[before:] if not m.is_loading and (m.content or m.embeds)],
        channel=channel,
        timeout=WAIT_S,
    )
    return found[0]


async def plan(stack: PeelStack, user: str, prompt: str, images: int) -> Message:
    """Run /batch with a ZIP of `images` images as `user`; return what it answered (a plan, or a refusal)."""
    driver = stack.driver(user)
    data = await asyncio.to_thread(make_zip, images)
    before = len(driver.messages())
    await driver.slash("batch", {"prompt": prompt, "zip": Upload("set.zip", data)})
    return await newest_answer(driver, before)


async def start(driver: Driver, planned: Message) -> tuple[str, Message]:
    """Press Start on a plan; return the new thread's id and its progress message."""
    known = {t["id"] for t in driver.threads()}
    await driver.click(planned, label="Start")
    found = await driver.wait_until(lambda: [t for t in driver.threads() if t["id"] not in known], timeout=WAIT_S)
    thread = str(found[0]["id"])
    progress = await driver.wait_for_message(lambda m: "remaining" in m.content, channel=thread, timeout=WAIT_S)
    return thread, progress


async def answer_of(driver: Driver, run: InteractionHandle) -> str:
    """Wait for what the bot answered an interaction with: its response, or the follow-up after "thinking…"."""

    def answered() -> list[Message]:
        shown = [m for m in (run.response(), *run.followups()) if m is not None]
        return [m for m in shown if not m.is_loading and (m.content or m.embeds)]

    return text_of((await driver.wait_until(answered, timeout=WAIT_S))[0])


async def finished(stack: PeelStack, job_id: JobId) -> None:
    """Wait until a job is final and its reservation settled (the dispatcher's next pass after it ended)."""

    async def settled() -> bool:
        job = await stack.rt.ledger.get_job(job_id)
        found = await stack.rt.ledger.reservation(job_id)
        return job is not None and job.status.is_final and found is not None and found[0].settled_at is not None

    for _ in range(int(WAIT_S / 0.1)):
        if await settled():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end with its reservation settled")


async def batch_of(stack: PeelStack, owner: str) -> JobId:
    """Return the id of `owner`'s latest batch."""
    jobs = [
        j for j in await stack.rt.ledger.list_jobs() if j.kind is JobKind.BATCH and j.owner_id == user_id(stack, owner)
    ]
    return max(jobs, key=lambda j: j.created_at).id


async def guild_spent(stack: PeelStack) -> float:
    return await stack.rt.ledger.spent(guild_id=guild_id(stack), since=today())


async def most_one_item_cost(stack: PeelStack) -> float:
    """Return the most any one item was recorded to cost (the price of one call in flight)."""
    costs = [
        item.cost_usd
        for job in await stack.rt.ledger.list_jobs()
        for item in await stack.rt.ledger.items(job.id)
        if item.cost_usd is not None
    ]
    return max(costs, default=0.0)


async def watch(stack: PeelStack, job_id: JobId) -> tuple[Job, int]:
    """Follow a batch until it ends or is paused with nothing out; return it and the most items it had in flight.

    The most in flight at once is at least what was in flight when a cap was reached.
    """
    in_flight = 0
    for _ in range(int(WAIT_S / 0.05)):
        in_flight = max(in_flight, await stack.rt.ledger.items_in_flight(job_id))
        job = await stack.rt.ledger.get_job(job_id)
        assert job is not None
        if job.status.is_final or (job.status is JobStatus.PAUSED and await stack.rt.dispatcher.pausing(job_id) == 0):
            return job, in_flight
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} neither ended nor paused")


def refusal(text: str) -> dict[str, Any]:
    found = REFUSAL.search(text)
    assert found is not None, text
    return found.groupdict()


# ---- a guild's daily cap, two users ----------------------------------------------------------------------------

shared: dict[str, JobId] = {}


async def test_second_users_batch_is_refused_at_the_guilds_daily_cap_when_the_first_reserved_it(stack: PeelStack):
    alice, bob = stack.driver("alice"), stack.driver("bob")
    alices = await plan(stack, "alice", "make it teal", ALICE_IMAGES)  # alone it fits: $0.156 of $0.50
    assert "Batch ready" in alices.content, text_of(alices)

    bobs = await plan(stack, "bob", "make it gold", BOB_IMAGES)
    assert "Batch ready" in bobs.content, text_of(bobs)
    thread, _ = await start(bob, bobs)
    bob_job = await batch_of(stack, "bob")
    shared["bob_job"] = bob_job

    # Alice's plan was priced before bob started; her Start is checked again against his reservation now.
    before = len(alice.messages())
    await alice.click(alices, label="Start")
    refused_start = await alice.wait_for(
        lambda ms: [m for m in ms[before:] if m.is_ephemeral and "budget" in ephemeral_embed(m)], timeout=WAIT_S
    )
    at_start = refusal(text_of(refused_start[0]))
    # And a new plan is refused at once, before anything is uploaded to Gemini or queued.
    at_plan = refusal(text_of(await plan(stack, "alice", "make it teal", ALICE_IMAGES)))
    for said in (at_start, at_plan):
        assert said["whose"] == "This server's" and said["period"] == "daily"
        assert said["cap"] == usd_text(micros(GUILD_DAILY)) and said["cost"] == usd_text(ALICE_IMAGES * FLASH_1K)
        assert said["resets"] == resets_text()
        # bob's batch counts, reserved or recorded: between what its images really cost and his reservation
        spent = micros(said["spent"].lstrip("$"))
        assert BOB_IMAGES * FLASH_1K * 0.9 <= spent <= BOB_IMAGES * FLASH_1K, said
    assert not [j for j in await stack.rt.ledger.list_jobs() if j.owner_id == user_id(stack, "alice")]

    await bob.wait_for_message(lambda m: "Download the ZIP" in m.content, channel=thread, timeout=60)
    await finished(stack, bob_job)
    made = await stack.rt.ledger.items(bob_job, statuses=[ItemStatus.OK])
    assert len(made) == BOB_IMAGES
    # Nothing was in flight past the cap (it was never reached): the recorded total is within it.
    assert await guild_spent(stack) <= float(GUILD_DAILY)


async def test_each_items_recorded_cost_is_the_price_table_applied_to_the_usage_gemini_reported(stack: PeelStack):
    items = await stack.rt.ledger.items(shared["bob_job"])
    job = await stack.rt.ledger.get_job(shared["bob_job"])
    assert job is not None and len(items) == BOB_IMAGES
    for item in items:
        assert item.usage is not None and item.usage.image_output_tokens == 1290, item  # a 1K flash image
        assert item.usage.prompt_tokens > 0  # the prompt and the item's reference image
        assert item.cost_usd == pytest.approx(cost_of(job.params.model, item.usage, batch=False)), item
    spent = await stack.rt.ledger.spent(owner_id=user_id(stack, "bob"), since=today())
    runpod = (await stack.rt.ledger.job_cost(job.id) or 0.0) - sum(i.cost_usd or 0.0 for i in items)
    # Each recorded cost (an item's, a chunk's RunPod time) counts rounded to a whole micro-dollar.
    costs = len(items) + len(await stack.rt.ledger.chunks(job_id=job.id))
    assert spent == pytest.approx(sum(i.cost_usd or 0.0 for i in items) + runpod, abs=costs * 0.5e-6)


# ---- a user's daily cap on /imagine ------------------------------------------------------------------------------


async def test_imagine_is_refused_at_once_at_a_users_daily_cap_naming_cap_spend_cost_and_reset(stack: PeelStack):
    assert stack.bot is not None
    admin = user_id(stack, "admin")
    await stack.bot.services.budgets.set_cap(
        ScopeKind.USER, user_id(stack, "alice"), Period.DAY, Decimal("0.05"), by=admin, is_admin=True
    )
    jobs = len(await stack.rt.ledger.list_jobs())
    requests = (await stack.gemini_stats())["requests"]

    alice = stack.driver("alice")
    said = refusal(await answer_of(alice, await alice.slash("imagine", {"prompt": "a costly fox"})))

    assert said == {
        "whose": "Your",
        "period": "daily",
        "cap": "$0.05",
        "spent": "$0.00",
        "cost": usd_text(4 * FLASH_1K),  # a grid of four
        "resets": resets_text(),
    }
    assert len(await stack.rt.ledger.list_jobs()) == jobs  # nothing queued
    assert (await stack.gemini_stats())["requests"] == requests


# ---- a restart keeps every counter ----------------------------------------------------------------------------


@pytest.mark.allow_blocking  # restart_bot starts worker subprocesses (path lookups on the loop)
async def test_restart_keeps_spend_reservations_and_caps_and_refuses_the_same_request_alike(stack: PeelStack):
    assert stack.bot is not None
    await stack.bot.services.budgets.set_cap(
        ScopeKind.USER, user_id(stack, "bob"), Period.MONTH, Decimal("7.5"), by=user_id(stack, "admin"), is_admin=True
    )
    jobs = await stack.rt.ledger.list_jobs()

    async def counters() -> tuple[object, ...]:
        ledger = stack.rt.ledger  # the restarted bot's
        return (
            await guild_spent(stack),
            await ledger.spent(owner_id=user_id(stack, "bob")),
            [await ledger.reservation(j.id) for j in jobs],
            await ledger.budget_caps(),
            await ledger.budget_changes(),
        )

    before = await counters()
    spent, _, _, caps, _ = before
    assert spent and caps  # spend recorded; alice's and bob's caps
    refused_before = refusal(text_of(await plan(stack, "alice", "make it teal", ALICE_IMAGES)))

    await stack.restart_bot()

    assert await counters() == before
    refused_after = refusal(text_of(await plan(stack, "alice", "make it teal", ALICE_IMAGES)))
    assert refused_after == refused_before
    imagine = stack.driver("alice")
    assert refusal(await answer_of(imagine, await imagine.slash("imagine", {"prompt": "a costly fox"})))["cap"] == (
        "$0.05"
    )


# ---- a batch that costs more than estimated pauses at its cap -------------------------------------------------

PRO_IMAGES = 8  # estimated at $1.072; Gemini reports more (thoughts, the reference image), about $0.137 each


@pytest.mark.allow_blocking  # restart_bot starts worker subprocesses (path lookups on the loop)
async def test_a_batch_costing_more_than_estimated_pauses_at_its_cap_saying_which_and_when_it_resets(stack: PeelStack):
    assert stack.bot is not None
    budgets, admin, alice_id = stack.bot.services.budgets, user_id(stack, "admin"), user_id(stack, "alice")
    await budgets.set_cap(ScopeKind.GUILD, guild_id(stack), Period.DAY, Decimal(100), by=admin, is_admin=True)
    cap = PRO_IMAGES * PRO_1K  # alice's whole day: exactly her batch's estimate, so it is admitted
    await budgets.set_cap(ScopeKind.USER, alice_id, Period.DAY, Decimal(cap) / 1_000_000, by=admin, is_admin=True)
    alice = stack.driver("alice")
    await set_faults(stack, {"latency": 0.3})  # chunks of a few calls, so the cap is met between them
    try:
        planned = await plan(stack, "alice", "make it grand --model pro", PRO_IMAGES)
        assert "Batch ready" in planned.content, text_of(planned)
        _, progress = await start(alice, planned)
        job_id = await batch_of(stack, "alice")
        job, in_flight = await watch(stack, job_id)
    finally:
        await set_faults(stack, {"latency": 0.05})
    assert job.status is JobStatus.PAUSED and job.remaining > 0, job

    line = f"⛔ Paused at your daily budget of {usd_text(cap)}"

    def paused_text() -> str | None:
        content = alice._message(progress.id).content
        return content if line in content else None

    said = await alice.wait_until(paused_text, timeout=WAIT_S)
    assert f"It resets at {resets_text()}" in str(said)
    # An edit notifies nobody: the owner is pinged once in the batch's thread.
    thread = alice._message(progress.id).channel_id
    pings = [m for m in alice.messages(thread) if m.content.startswith(f"<@{alice_id}> {line}")]
    assert len(pings) == 1
    items = await stack.rt.ledger.items(job_id)
    runpod = (await stack.rt.ledger.job_cost(job_id) or 0.0) - sum(i.cost_usd or 0.0 for i in items)
    spent = await stack.rt.ledger.spent(owner_id=alice_id, since=today())
    assert spent > cap / 1_000_000 - PRO_1K / 1_000_000  # it went as far as the cap allowed
    assert spent <= cap / 1_000_000 + in_flight * await most_one_item_cost(stack) + runpod

    # A restart keeps the pause, its reason and the spend.
    await stack.restart_bot()
    assert stack.bot is not None
    snapshot = await stack.bot.services.batches.snapshot(job_id)
    assert snapshot is not None and snapshot.job.status is JobStatus.PAUSED
    assert snapshot.progress.budget_line is not None and line in snapshot.progress.budget_line
    assert await stack.rt.ledger.spent(owner_id=alice_id, since=today()) == spent


# ---- role gates -------------------------------------------------------------------------------------------------


@pytest.mark.allow_blocking  # restart_bot starts worker subprocesses (path lookups on the loop)
async def test_a_roles_batch_and_4k_gates_refuse_its_members_but_not_others_nor_a_peel_admin(stack: PeelStack):
    state = stack.pg.state
    member = str(state.roles["Member"]["id"])
    gates = RoleBudget(batch=False, allow_4k=False)
    stack.settings = stack.settings.model_copy(update={"budget_roles": {int(member): gates}})  # BUDGET_ROLES
    await stack.restart_bot()
    bob, admin = str(user_id(stack, "bob")), state.owner_id
    saved = {uid: list(state.member_roles[uid]) for uid in (bob, admin)}
    state.member_roles[bob] = []  # bob without the role; the admin (a Peel admin) with it
    state.member_roles[admin] = [*saved[admin], member]
    try:
        gated = await plan(stack, "alice", "not for members", 1)
        assert "Not allowed here" in text_of(gated) and "Your roles don't allow /batch here" in text_of(gated)
        alice = stack.driver("alice")
        big = await answer_of(alice, await alice.slash("imagine", {"prompt": "a vast fox --model pro --size 4K"}))
        assert "Your roles don't allow 4K images here" in big
        for user in ("bob", "admin"):
            passed = await plan(stack, user, "for everyone else", 1)
            assert "Batch ready" in passed.content, (user, text_of(passed))
    finally:
        state.member_roles.update(saved)
