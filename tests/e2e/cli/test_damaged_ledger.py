"""`python -m bot` and `python -m bot batch` on a damaged ledger: a clear paragraph and exit status 3, no traceback."""

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tests.e2e.cli.conftest import base_env, make_zip, run_cli
from tests.fakes.damage import DAMAGES, make_ledger_file

pytestmark = [pytest.mark.e2e]

EXIT_LEDGER_DAMAGED = 3


async def damaged_data_dir(tmp_path: Path, damage: str) -> Path:
    data = tmp_path / "data"
    await asyncio.to_thread(data.mkdir)
    ledger = data / "peel.sqlite3"
    await make_ledger_file(ledger)
    await asyncio.to_thread(DAMAGES[damage], ledger)
    return ledger


def assert_refused_with_advice(stderr: str, ledger: Path) -> None:
    assert "Traceback" not in stderr, stderr
    assert f"the job ledger {ledger} is damaged" in stderr, stderr
    assert f"mv {ledger} {ledger}.damaged" in stderr
    assert '".recover"' in stderr and "start fresh" in stderr


@pytest.mark.parametrize("damage", sorted(DAMAGES))
async def test_bot_exits_with_restore_advice_and_no_traceback_when_ledger_is_damaged(
    tmp_path: Path, damage: str
) -> None:
    ledger = await damaged_data_dir(tmp_path, damage)
    env = base_env(DATA_DIR=str(ledger.parent))

    run = await asyncio.to_thread(run_cli, [], cwd=tmp_path, env=env, timeout_s=60)

    assert run.returncode == EXIT_LEDGER_DAMAGED, run.stderr
    assert_refused_with_advice(run.stderr, ledger)
    assert " CRITICAL bot: Peel will not start" in run.stderr
    assert "running on the local playground" not in run.stdout  # it stopped before starting anything


async def test_batch_cli_exits_with_restore_advice_and_no_traceback_when_ledger_is_damaged(tmp_path: Path) -> None:
    ledger = await damaged_data_dir(tmp_path, "middle_page")
    source = await asyncio.to_thread(make_zip, tmp_path / "in.zip", 2)
    args = ["batch", str(source), "--prompt", "make it blue", "--data", str(ledger.parent), "--out", "out.zip", "--yes"]

    run = await asyncio.to_thread(run_cli, args, cwd=tmp_path, env=base_env(), timeout_s=60)

    assert run.returncode == EXIT_LEDGER_DAMAGED, run.stderr
    assert_refused_with_advice(run.stderr, ledger)
    assert not await asyncio.to_thread((tmp_path / "out.zip").exists)


async def test_bot_exits_with_advice_and_no_traceback_when_a_newer_peel_wrote_the_ledger(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await asyncio.to_thread(data.mkdir)
    ledger = data / "peel.sqlite3"
    await make_ledger_file(ledger)

    def bump() -> None:
        with sqlite3.connect(ledger) as db:
            db.execute("PRAGMA user_version = 99")

    await asyncio.to_thread(bump)

    run = await asyncio.to_thread(run_cli, [], cwd=tmp_path, env=base_env(DATA_DIR=str(data)), timeout_s=60)

    assert run.returncode == EXIT_LEDGER_DAMAGED, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    assert f"the job ledger {ledger} has schema version 99" in run.stderr
    assert "restore a copy of the ledger from before the upgrade" in run.stderr
