"""Access through the local Discord: the guild allow-list comes first for everyone, a guild's Administrator is no
Peel admin unless a setting says so, and nobody acts on someone else's job, image or group."""

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.exts._access import AccessPolicy
from local.discord.driver import Driver, InteractionHandle, Message
from tests.e2e.discord.conftest import WAIT_S, action_id, ephemeral_embed, imagine, labels, set_faults
from tests.fakes.peel_stack import PeelStack, peel_stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(90)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PeelStack]:
    async with peel_stack(tmp_path_factory.mktemp("access"), progress_edit_interval_s=0.5) as s:
        yield s


@pytest_asyncio.fixture(loop_scope="module")
async def policy(stack: PeelStack) -> AsyncIterator[None]:
    """Put the bot's access policy back after a test that swaps it."""
    assert stack.bot is not None
    saved = stack.bot.access
    yield
    stack.bot.access = saved


async def answer_of(d: Driver, run: InteractionHandle) -> Message:
    """Wait for what the bot answered: the response, or the follow-up that replaced "thinking…"."""

    def answered() -> list[Message]:
        shown = [m for m in (run.response(), *run.followups()) if m is not None]
        return [m for m in shown if not m.is_loading and (m.content or m.embeds)]

    return (await d.wait_until(answered, timeout=WAIT_S))[0]


async def ask(stack: PeelStack, user: str, command: str, options: dict[str, object] | None = None, **kw: str) -> str:
    d = stack.driver(user)
    message = await answer_of(d, await d.slash(command, options or {}, **kw))
    return f"{message.content} {ephemeral_embed(message)}"


def guild_id(stack: PeelStack) -> int:
    return int(stack.pg.state.guild_id)


# ---- finding 2: admins ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("policy")
async def test_guild_administrator_is_refused_when_the_guild_is_not_allowed(stack: PeelStack):
    assert stack.bot is not None
    before = len(await stack.rt.ledger.list_jobs())
    stack.bot.access = AccessPolicy(allowed_guild_ids=frozenset({guild_id(stack) + 1}))

    assert "No access" in await ask(stack, "admin", "imagine", {"prompt": "an intruder's fox"})
    assert "No access" in await ask(stack, "admin", "queue")
    assert len(await stack.rt.ledger.list_jobs()) == before


@pytest.mark.usefixtures("policy")
async def test_configured_admin_is_refused_when_the_guild_is_not_allowed(stack: PeelStack):
    assert stack.bot is not None
    admin_id = int(stack.pg.state.owner_id)
    stack.bot.access = AccessPolicy(
        allowed_guild_ids=frozenset({guild_id(stack) + 1}), admin_user_ids=frozenset({admin_id})
    )

    assert "No access" in await ask(stack, "admin", "queue")


@pytest.mark.usefixtures("policy")
async def test_guild_administrator_sees_only_their_own_queue_unless_the_setting_makes_them_admin(stack: PeelStack):
    assert stack.bot is not None
    await set_faults(stack, {"latency": 20})
    try:
        await imagine(stack, "alice's secret fox")
        await stack.driver().wait_for_message(lambda m: "secret fox" in m.content and "generating" in m.content)
        stack.bot.access = AccessPolicy()  # no Peel admins configured

        own = await ask(stack, "admin", "queue")
        assert "Your queue" in own and "secret fox" not in own

        stack.bot.access = AccessPolicy(guild_admins_are_peel_admins=True)
        everyone = await ask(stack, "admin", "queue")
        assert "Peel's queue" in everyone and "secret fox" in everyone
    finally:
        await set_faults(stack, {"latency": 0.05})
        for job in await stack.rt.ledger.unfinished_jobs():
            await stack.rt.dispatcher.cancel(job.id, job.owner_id)


# ---- finding 12: /cancel ---------------------------------------------------------------------------------------


async def test_cancel_of_someone_elses_job_answers_as_for_a_missing_job(stack: PeelStack):
    await set_faults(stack, {"latency": 20})
    try:
        await imagine(stack, "alice's slow fox")
        await stack.driver().wait_for_message(lambda m: "slow fox" in m.content and "generating" in m.content)
        [job] = await stack.rt.ledger.unfinished_jobs()

        theirs = await ask(stack, "bob", "cancel", {"job": job.id})
        missing = await ask(stack, "bob", "cancel", {"job": "j_0123456789abcdef"})

        assert theirs.replace(job.id, "ID") == missing.replace("j_0123456789abcdef", "ID")
        assert "No such job" in theirs
        assert not (await stack.rt.ledger.get_job(job.id) or job).status.is_final  # still running
    finally:
        await set_faults(stack, {"latency": 0.05})
        for unfinished in await stack.rt.ledger.unfinished_jobs():
            await stack.rt.dispatcher.cancel(unfinished.id, unfinished.owner_id)


# ---- finding 5 and every action on someone else's group or image ----------------------------------------------


async def alices_group(stack: PeelStack, name: str) -> str:
    alice = stack.driver()
    known = {t["id"] for t in alice.threads()}
    assert "Opened" in await ask(stack, "alice", "group new", {"name": name})
    found = await alice.wait_until(lambda: [t for t in alice.threads() if t["id"] not in known])
    return str(found[0]["id"])


async def test_group_rename_of_someone_elses_thread_is_refused(stack: PeelStack):
    thread = await alices_group(stack, "alice's board")

    refused = await ask(stack, "bob", "group rename", {"name": "bob was here"}, channel=thread)

    assert "Not your group" in refused
    assert stack.pg.state.channels[thread]["name"] == "alice's board"
    assert "Renamed" in await ask(stack, "alice", "group rename", {"name": "alice's moodboard"}, channel=thread)
    assert "Renamed" in await ask(stack, "admin", "group rename", {"name": "tidied"}, channel=thread)


async def test_group_download_of_someone_elses_thread_is_refused(stack: PeelStack):
    thread = await alices_group(stack, "alice's downloads")

    assert "Not your group" in await ask(stack, "bob", "group download", channel=thread)
    assert "Not your group" not in await ask(stack, "alice", "group download", channel=thread)


@pytest.mark.usefixtures("policy")
async def test_group_export_of_someone_elses_thread_is_refused_even_with_an_export_role(stack: PeelStack):
    assert stack.bot is not None
    thread = await alices_group(stack, "alice's exports")
    member_role = int(stack.pg.state.roles["Member"]["id"])
    stack.bot.access = AccessPolicy(export_role_ids=frozenset({member_role}))

    assert "Not your group" in await ask(stack, "bob", "group export", {"bucket": "nowhere"}, channel=thread)


async def test_favourite_of_someone_elses_image_is_refused(stack: PeelStack):
    alice, bob = stack.driver(), stack.driver("bob")
    await imagine(stack, "alice's favourite fox --n 1")
    single = await alice.wait_for_message(
        lambda m: "favourite fox" in m.content and bool(m.attachments) and "❤️" in labels(m), timeout=WAIT_S
    )

    await bob.click(single, action_id(single, "fav"))

    refusal = await bob.wait_for_message(lambda m: "Not your image" in ephemeral_embed(m), timeout=WAIT_S)
    assert "owner or a Peel admin" in ephemeral_embed(refusal)
