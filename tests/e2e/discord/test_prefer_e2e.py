"""/prefer suffix, /prefer option set|list, /show and /help through the local Discord with the real discord.py and
the embedded back ends."""

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.core.models import JobKind
from local.discord.driver import Message
from tests.e2e.discord.conftest import WAIT_S, ephemeral_embed, imagine, labels, result_of
from tests.fakes.peel_stack import PeelStack, peel_stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(90)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PeelStack]:
    async with peel_stack(tmp_path_factory.mktemp("prefer"), progress_edit_interval_s=0.5) as s:
        yield s


async def answer(stack: PeelStack, command: str, options: dict[str, object], *, user: str = "alice") -> Message:
    """Run a command answered at once and ephemerally; return its answer."""
    run = await stack.driver(user).slash(command, options)
    assert await run.wait_ack() == 4
    response = run.response()
    assert response is not None and response.is_ephemeral
    return response


def text_of(message: Message) -> str:
    return message.content + " " + ephemeral_embed(message)


async def latest_job(stack: PeelStack):
    return (await stack.rt.ledger.list_jobs())[-1]


async def test_the_suffix_is_added_to_every_imagine_when_saved_and_goes_when_cleared(stack: PeelStack):
    d = stack.driver()
    saved = await answer(stack, "prefer suffix", {"value": "in watercolor --ar 3:2"})
    assert "in watercolor" in saved.content
    try:
        await imagine(stack, "a lighthouse --seed 5")
        await d.wait_for_message(result_of("a lighthouse in watercolor --seed 5 --ar 3:2"), timeout=WAIT_S)
        job = await latest_job(stack)
        assert "a lighthouse in watercolor" in job.prompt
        assert (job.params.aspect_ratio, job.params.seed) == ("3:2", 5)
        await imagine(stack, "a harbour --ar 1:1")  # the prompt's own parameter wins over the suffix's
        await d.wait_for_message(result_of("a harbour in watercolor --ar 1:1"), timeout=WAIT_S)
        assert (await latest_job(stack)).params.aspect_ratio == "1:1"
    finally:
        cleared = await answer(stack, "prefer suffix", {})
    assert "removed" in cleared.content
    await imagine(stack, "a plain lighthouse")
    await d.wait_for_message(result_of("a plain lighthouse"), timeout=WAIT_S)
    assert "watercolor" not in (await latest_job(stack)).prompt


async def test_a_suffix_is_refused_when_its_parameters_do_not_parse(stack: PeelStack):
    refused = await answer(stack, "prefer suffix", {"value": "at dusk --ar banana"})
    assert "Invalid suffix" in text_of(refused) and "--ar banana" in text_of(refused)


async def test_an_option_set_changes_the_jobs_params_when_used_as_a_name(stack: PeelStack):
    d = stack.driver()
    saved = await answer(stack, "prefer option set", {"name": "wide", "value": "--ar 16:9 --model pro"})
    assert "`--wide`" in saved.content
    listed = await answer(stack, "prefer option list", {})
    assert "--wide" in text_of(listed) and "--ar 16:9 --model pro" in text_of(listed)
    await imagine(stack, "a bridge --wide")
    await d.wait_for_message(result_of("a bridge --ar 16:9 --model pro"), timeout=WAIT_S)
    job = await latest_job(stack)
    assert (job.params.aspect_ratio, job.params.model) == ("16:9", "gemini-3-pro-image-preview")
    # Another user's prompt does not know alice's sets.
    await imagine(stack, "bob's bridge --wide", user="bob")
    await stack.driver("bob").wait_for_message(lambda m: "--wide" in ephemeral_embed(m), timeout=WAIT_S)
    deleted = await answer(stack, "prefer option set", {"name": "wide"})
    assert "deleted" in deleted.content
    assert "no option sets" in text_of(await answer(stack, "prefer option list", {}))


async def test_an_unknown_name_is_left_to_the_prompt_parser_when_no_set_has_it(stack: PeelStack):
    d = stack.driver()
    await answer(stack, "prefer option set", {"name": "wide", "value": "--ar 16:9"})
    try:
        await imagine(stack, "a tower --tall")
        said = await d.wait_for_message(lambda m: "--tall" in ephemeral_embed(m), timeout=WAIT_S)
        assert "16:9" not in ephemeral_embed(said)
    finally:
        await answer(stack, "prefer option set", {"name": "wide"})


async def test_a_set_is_refused_when_its_name_is_a_parameter(stack: PeelStack):
    refused = await answer(stack, "prefer option set", {"name": "ar", "value": "--ar 16:9"})
    assert "is a parameter" in text_of(refused)
    assert "no option sets" in text_of(await answer(stack, "prefer option list", {}))


async def shown_grid(stack: PeelStack, prompt: str) -> tuple[str, Message]:
    """Make a grid of alice's, then /show it; return its job id and the shown message."""
    d = stack.driver()
    await imagine(stack, prompt)
    grid = await d.wait_for_message(result_of(prompt), timeout=WAIT_S)
    job = await latest_job(stack)
    run = await d.slash("show", {"job_id": job.id})
    assert await run.wait_ack() == 5
    await d.wait_until(lambda: (r := run.response()) is not None and bool(r.attachments), timeout=WAIT_S)
    shown = run.response()
    assert shown is not None and not shown.is_ephemeral and shown.id != grid.id
    return job.id, shown


async def test_show_brings_a_grid_back_with_buttons_that_work_when_its_owner_asks(stack: PeelStack):
    d = stack.driver()
    _job_id, shown = await shown_grid(stack, "shown fox")
    assert shown.content.startswith("**shown fox** - ")
    assert labels(shown) == ["U1", "U2", "U3", "U4", "🔄", "V1", "V2", "V3", "V4"]
    await d.click(shown, label="U1")
    single = await d.wait_for_message(lambda m: m.content.startswith("**shown fox** - Image #1"), timeout=WAIT_S)
    assert "Upscale 2K" in labels(single) and single.attachments
    await d.click(single, label="Upscale 2K")
    await d.wait_for_message(
        lambda m: m.content.startswith("**shown fox** - Upscaled (2K)") and m.attachments, timeout=WAIT_S
    )
    upscale = await latest_job(stack)
    assert upscale.kind is JobKind.UPSCALE
    # A single image's job shows as that image with its tools.
    run = await d.slash("show", {"job_id": upscale.id})
    assert await run.wait_ack() == 5, text_of(run.response())  # type: ignore[arg-type]
    await d.wait_until(lambda: (r := run.response()) is not None and bool(r.attachments), timeout=WAIT_S)
    again = run.response()
    assert again is not None and "Upscale 2K" in labels(again) and f"peel:up2:{upscale.id}:0" in again.custom_ids()


@pytest.mark.allow_blocking  # restart_bot starts worker subprocesses (path lookups on the loop)
async def test_a_shown_grids_buttons_work_when_clicked_after_the_bot_restarted(stack: PeelStack):
    d = stack.driver()
    _job_id, shown = await shown_grid(stack, "restarted shown fox")
    await stack.restart_bot()
    await d.click(shown, label="U2")
    await d.wait_for_message(lambda m: m.content.startswith("**restarted shown fox** - Image #2"), timeout=WAIT_S)


async def test_show_answers_as_for_a_missing_job_when_the_job_is_someone_elses(stack: PeelStack):
    bob = stack.driver("bob")
    await imagine(stack, "bob's secret fox", user="bob")
    await bob.wait_for_message(result_of("bob's secret fox"), timeout=WAIT_S)
    bobs = await latest_job(stack)
    before = len([m for m in stack.driver().messages() if not m.is_ephemeral])
    other = text_of(await answer(stack, "show", {"job_id": bobs.id}))
    missing = text_of(await answer(stack, "show", {"job_id": "j_nosuchjob"}))
    assert "Peel knows no job" in other
    assert other.replace(bobs.id, "ID") == missing.replace("j_nosuchjob", "ID")
    assert len([m for m in stack.driver().messages() if not m.is_ephemeral]) == before  # nothing public posted
    # An admin may show anyone's job.
    run = await stack.driver("admin").slash("show", {"job_id": bobs.id})
    assert await run.wait_ack() == 5


async def test_help_lists_every_command_when_asked(stack: PeelStack):
    reply = await answer(stack, "help", {})
    text = text_of(reply)
    commands = [c for c in stack.pg.state.commands.values() if c.get("type", 1) == 1]
    assert {c["name"] for c in commands} >= {"imagine", "prefer", "show", "help", "settings", "batch"}
    for command in commands:
        subs = [o for o in command.get("options", []) if o["type"] in (1, 2)]
        if not subs:
            assert f"/{command['name']}" in text, command["name"]
        for sub in subs:
            leaves = [o["name"] for o in sub.get("options", []) if o["type"] == 1] if sub["type"] == 2 else [""]
            for leaf in leaves:
                name = " ".join(part for part in (f"/{command['name']}", sub["name"], leaf) if part)
                assert name in text, name
    assert "For Midjourney users" in text and "--stylize" in text


async def test_settings_and_info_show_the_suffix_when_one_is_saved(stack: PeelStack):
    d = stack.driver("admin")
    await answer(stack, "prefer suffix", {"value": "at golden hour"}, user="admin")
    await answer(stack, "prefer option set", {"name": "tall", "value": "--ar 9:16"}, user="admin")
    try:
        await d.slash("settings")
        await d.wait_for_message(
            lambda m: m.is_ephemeral and "Your Peel settings" in m.content and "Suffix: `at golden hour`" in m.content,
            timeout=WAIT_S,
        )
        await d.slash("info")
        info = await d.wait_for_message(lambda m: "Your Peel info" in ephemeral_embed(m), timeout=WAIT_S)
        fields = {f["name"]: f["value"] for f in info.embeds[0]["fields"]}
        assert fields["Suffix"].startswith("`at golden hour`") and "1 option set" in fields["Suffix"]
    finally:
        await answer(stack, "prefer suffix", {}, user="admin")
        await answer(stack, "prefer option set", {"name": "tall"}, user="admin")
