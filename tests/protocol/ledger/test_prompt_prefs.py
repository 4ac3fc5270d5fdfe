"""`/prefer suffix` and `/prefer option set` in the SQLite ledger: saved, replaced, deleted, capped, kept."""

from pathlib import Path

from bot.core.models import UserId
from bot.core.prefer import PromptPrefs
from bot.ledger import Ledger
from tests.fakes.clock import FakeClock

ALICE, BOB = UserId(1), UserId(2)


async def test_suffix_and_sets_are_kept_when_the_ledger_is_reopened(db_path: Path, clock: FakeClock) -> None:
    async with await Ledger.open(db_path) as first:
        await first.set_prompt_suffix(ALICE, "in watercolor --ar 3:2", now=clock.now())
        assert await first.set_option_set(ALICE, "wide", "--ar 16:9", now=clock.now(), max_sets=20)
        assert await first.set_option_set(ALICE, "pro", "--model pro", now=clock.now(), max_sets=20)
    async with await Ledger.open(db_path) as second:
        kept = await second.prompt_prefs(ALICE)
        sets = {"pro": "--model pro", "wide": "--ar 16:9"}
        assert kept == PromptPrefs(suffix="in watercolor --ar 3:2", option_sets=sets)
        assert (await second.prompt_prefs(BOB)).empty


async def test_a_set_is_replaced_or_deleted_and_the_suffix_cleared_when_saved_again(
    ledger: Ledger, clock: FakeClock
) -> None:
    await ledger.set_prompt_suffix(ALICE, "at dusk", now=clock.now())
    await ledger.set_prompt_suffix(ALICE, "at dawn", now=clock.now())
    await ledger.set_option_set(ALICE, "wide", "--ar 16:9", now=clock.now(), max_sets=20)
    await ledger.set_option_set(ALICE, "wide", "--ar 21:9", now=clock.now(), max_sets=20)
    assert await ledger.prompt_prefs(ALICE) == PromptPrefs(suffix="at dawn", option_sets={"wide": "--ar 21:9"})
    await ledger.set_prompt_suffix(ALICE, None, now=clock.now())
    assert await ledger.set_option_set(ALICE, "wide", None, now=clock.now(), max_sets=20)
    assert (await ledger.prompt_prefs(ALICE)).empty


async def test_a_new_set_is_refused_when_the_user_has_the_most_but_a_saved_one_may_change(
    ledger: Ledger, clock: FakeClock
) -> None:
    for n in range(3):
        assert await ledger.set_option_set(ALICE, f"s{n}", "--n 1", now=clock.now(), max_sets=3)
    assert not await ledger.set_option_set(ALICE, "s3", "--n 1", now=clock.now(), max_sets=3)
    assert await ledger.set_option_set(ALICE, "s0", "--n 2", now=clock.now(), max_sets=3)
    assert await ledger.set_option_set(BOB, "s3", "--n 1", now=clock.now(), max_sets=3)  # per user
    sets = (await ledger.prompt_prefs(ALICE)).option_sets
    assert sets == {"s0": "--n 2", "s1": "--n 1", "s2": "--n 1"}
