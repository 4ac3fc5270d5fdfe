"""`/budget set|show`, `/usage` and `/info`'s spend through real discord.py against the local Discord on 127.0.0.1.

One Peel stack for the module (the playground, the runtime on its embedded back ends, PeelBot); the playground's
"admin" is the Peel admin, "alice" and "bob" are members with the role "Member".
"""

import asyncio
import csv
import io
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.core.budgets import Period, ScopeKind, micros, usd_text
from local.discord.driver import Driver, InteractionHandle, Message
from local.discord.state import Upload
from tests.e2e.bot._batchzips import make_zip
from tests.fakes.peel_stack import PeelStack, peel_stack

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(90)]

WAIT_S = 30.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PeelStack]:
    async with peel_stack(tmp_path_factory.mktemp("budgets"), budget_user_daily_usd="5") as s:
        yield s


async def answer_of(d: Driver, run: InteractionHandle) -> Message:
    """Wait for what the bot answered: the follow-up that replaced "thinking…"."""

    def answered() -> list[Message]:
        shown = [m for m in (run.response(), *run.followups()) if m is not None]
        return [m for m in shown if not m.is_loading and (m.content or m.embeds)]

    return (await d.wait_until(answered, timeout=WAIT_S))[0]


def text_of(message: Message) -> str:
    parts = [message.content]
    for embed in message.embeds:
        parts += [str(embed.get("title", "")), str(embed.get("description", ""))]
        parts += [f"{f['name']}: {f['value']}" for f in embed.get("fields", [])]
    return "\n".join(parts)


async def ask(stack: PeelStack, user: str, command: str, options: dict[str, object] | None = None) -> Message:
    d = stack.driver(user)
    return await answer_of(d, await d.slash(command, options or {}))


def user_id(stack: PeelStack, name: str) -> int:
    return int(stack.pg.state.user_named(name)["id"])


def role_id(stack: PeelStack, name: str) -> int:
    return int(stack.pg.state.roles[name]["id"])


async def test_an_admin_sets_a_members_cap_and_the_change_is_recorded(stack: PeelStack) -> None:
    answer = await ask(stack, "admin", "budget set", {"period": "day", "amount": "$2.50", "target": "alice"})
    alice, admin = user_id(stack, "alice"), user_id(stack, "admin")
    assert answer.is_ephemeral and "Budget changed" in text_of(answer)
    assert f"<@{admin}>: daily cap default → $2.50" in text_of(answer)
    [entry] = await stack.rt.ledger.budget_audit(scope=ScopeKind.USER, scope_id=alice)
    assert (entry.what, entry.new, entry.by) == (Period.DAY.value, str(micros("2.5")), admin)

    shown = text_of(await ask(stack, "admin", "budget show", {"target": "alice"}))
    assert f"Daily: **$2.50** · set by <@{admin}>" in shown
    assert "Monthly: **no cap** · settings default" in shown
    assert "$0.00 of $2.50 today" in shown and "Left: **$2.50** under your daily cap" in shown

    back = text_of(await ask(stack, "admin", "budget set", {"period": "day", "amount": "default", "target": "alice"}))
    assert "daily cap $2.50 → default" in back
    assert "Daily: **$5.00** · settings default" in text_of(
        await ask(stack, "admin", "budget show", {"target": "alice"})
    )


async def test_a_member_cannot_set_budgets_nor_see_anyone_elses(stack: PeelStack) -> None:
    before = await stack.rt.ledger.budget_audit(limit=100)
    refused = text_of(await ask(stack, "alice", "budget set", {"period": "day", "amount": "100", "target": "alice"}))
    assert "Only Peel admins can change budgets." in refused
    assert await stack.rt.ledger.budget_audit(limit=100) == before
    assert "only Peel admins see others'" in text_of(await ask(stack, "alice", "budget show", {"target": "bob"}))
    assert "only Peel admins see others'" in text_of(await ask(stack, "alice", "budget show", {"target": "Member"}))
    own = text_of(await ask(stack, "alice", "budget show"))
    assert f"For <@{user_id(stack, 'alice')}>" in own and "Daily: **$5.00** · settings default" in own


async def test_a_bad_amount_is_refused_and_nothing_changes(stack: PeelStack) -> None:
    before = await stack.rt.ledger.budget_audit(limit=100)
    for amount in ("five", "-3", "1e3"):
        answer = text_of(await ask(stack, "admin", "budget set", {"period": "month", "amount": amount}))
        assert "Invalid amount" in answer and "isn't an amount" in answer
    gates_on_a_user = text_of(await ask(stack, "admin", "budget set", {"target": "bob", "batch": False}))
    assert "Gates are set per role" in gates_on_a_user
    assert await stack.rt.ledger.budget_audit(limit=100) == before


async def test_an_admin_sets_a_roles_gates_and_a_server_cap(stack: PeelStack) -> None:
    member, admin = role_id(stack, "Member"), user_id(stack, "admin")
    options = {"target": "Member", "batch": False, "models": "flash", "allow_4k": False, "max_batch_items": 20}
    changed = text_of(await ask(stack, "admin", "budget set", options))
    assert "/batch default → not allowed" in changed and "max batch default → 20 images" in changed
    shown = text_of(await ask(stack, "admin", "budget show", {"target": "Member"}))
    assert "/batch: not allowed · models: gemini-2.5-flash-image · 4K: not allowed · max batch: 20 images" in shown
    assert f"<@{admin}>: 4K default → not allowed" in shown
    assert stack.bot is not None
    rule = (await stack.bot.services.budgets.config()).roles[member]
    assert (rule.batch, rule.allow_4k, rule.max_batch_items) == (False, False, 20)

    server = text_of(await ask(stack, "admin", "budget set", {"period": "month", "amount": "none"}))
    assert "For this server" in server and "monthly cap default → no cap" in server
    open_again = text_of(await ask(stack, "admin", "budget set", {"target": "Member", "batch": True}))
    assert "/batch not allowed → allowed" in open_again


async def test_info_shows_spend_and_usage_attaches_a_csv_of_what_the_ledger_counts(stack: PeelStack) -> None:
    d = stack.driver("alice")
    await d.slash("imagine", {"prompt": "a red fox"})
    await d.wait_for_message(lambda m: m.content.startswith("**a red fox**") and bool(m.attachments), timeout=WAIT_S)
    assert stack.bot is not None
    ledger, service = stack.rt.ledger, stack.bot.services.budgets
    since, until = service.window("today")
    counted = await ledger.budget_spent(since=since, until=until)
    assert counted > 0

    info = text_of(await ask(stack, "alice", "info"))
    spent = await ledger.budget_spent(owner_id=user_id(stack, "alice"), since=since, until=until)
    assert f"Spend: {usd_text(spent)} of $5.00 today · resets <t:" in info
    assert f"{usd_text(spent)} this month · no cap" in info

    refused = text_of(await ask(stack, "alice", "usage"))
    assert "Only Peel admins can see everyone's usage" in refused
    answer = await ask(stack, "admin", "usage", {"period": "today"})
    [attachment] = answer.attachments
    assert str(attachment["filename"]).startswith("peel-usage-") and str(attachment["filename"]).endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(stack.driver("admin").attachment_bytes(attachment).decode())))
    assert sum(micros(r["usd"]) for r in rows) == counted
    assert [int(r["user_id"]) for r in rows] == [user_id(stack, "alice")]
    shown = text_of(answer)
    assert f"<@{user_id(stack, 'alice')}>" in shown and "Peel Playground" in shown


async def test_the_batch_plan_shows_its_cost_against_what_remains(stack: PeelStack) -> None:
    data = await asyncio.to_thread(make_zip, 3)
    answer = await ask(stack, "bob", "batch", {"prompt": "make it blue", "zip": Upload("set.zip", data)})
    assert "Batch ready" in answer.content
    assert "🧾 $5.00 left of your daily cap · $4.88 after this batch" in answer.content  # 3 × $0.039 of bob's $5 a day
    assert "Start" in [str(b.get("label")) for b in answer.buttons()]
